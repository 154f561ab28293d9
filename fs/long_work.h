// A thread that serves FUSE requests may run at the idle scheduling policy while its
// work is quick (fuse_ring.cc says why). Preempted in the middle of long work at that
// policy, it would hold up whoever waits for it, for as long as other threads keep
// its CPU busy. So the filesystem says where a request stops being quick: before it
// writes a file out, waits for a commit, or waits for a lock that another thread
// holds. The serving thread registers what to do then (take the normal policy);
// on other threads this does nothing.
#pragma once

namespace casfs {

using LongWorkHook = void (*)(void* context);

// Sets the calling thread's hook (nullptr: none).
void set_long_work_hook(LongWorkHook hook, void* context);
// Calls the calling thread's hook, if it has one.
void before_long_work();

}  // namespace casfs
