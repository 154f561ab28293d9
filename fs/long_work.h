// A thread that serves FUSE requests may run at the idle scheduling policy while its
// work is quick (fuse_ring.cc says why). Preempted in the middle of long work at that
// policy, it would hold up whoever waits for it, for as long as other threads keep
// its CPU busy. So the filesystem says where a request stops being quick: before it
// writes a file out, waits for a commit, or waits for a lock that another thread
// holds. The serving thread registers what to do then (take the normal policy);
// on other threads this does nothing.
#pragma once

#include <mutex>

namespace casfs {

using LongWorkHook = void (*)(void* context);

// Sets the calling thread's hook (nullptr: none).
void set_long_work_hook(LongWorkHook hook, void* context);
// Calls the calling thread's hook, if it has one.
void before_long_work();

// Locks `mutex`. When another thread holds it the wait may be long, and is announced
// first; an uncontended lock costs no call.
template <typename Mutex>
std::unique_lock<Mutex> lock_announcing_wait(Mutex& mutex) {
  std::unique_lock lock(mutex, std::try_to_lock);
  if (!lock.owns_lock()) {
    before_long_work();
    lock.lock();
  }
  return lock;
}

}  // namespace casfs
