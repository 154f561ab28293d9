// The CPUs a thread may run on, and its scheduling policy, taken from one thread and
// given to threads it starts. A new thread inherits its creator's binding and policy:
// a thread bound to one CPU would otherwise pass that binding on to workers meant to
// run side by side, and a thread that waits at the idle policy (as the mount daemon's
// FUSE queue threads do) would leave workers that run at it for good.
#pragma once

#include <sched.h>

namespace casfs {

class CpuAffinity {
 public:
  // The calling thread's CPUs; none known if the kernel will not say.
  static CpuAffinity of_this_thread() {
    CpuAffinity a;
    if (::sched_getaffinity(0, sizeof a.cpus_, &a.cpus_) != 0) CPU_ZERO(&a.cpus_);
    return a;
  }
  // Lets the calling thread run on those CPUs; does nothing when none are known.
  void apply_to_this_thread() const {
    if (CPU_COUNT(&cpus_) > 0) (void)::sched_setaffinity(0, sizeof cpus_, &cpus_);
  }

 private:
  CpuAffinity() = default;
  cpu_set_t cpus_;
};

class SchedulingPolicy {
 public:
  static SchedulingPolicy of_this_thread() {
    SchedulingPolicy p;
    p.policy_ = ::sched_getscheduler(0);
    if (p.policy_ < 0 || ::sched_getparam(0, &p.param_) != 0) p.policy_ = -1;
    return p;
  }
  // Gives the calling thread that policy, if it has another and may change it.
  void apply_to_this_thread() const {
    if (policy_ >= 0 && ::sched_getscheduler(0) != policy_)
      (void)::sched_setscheduler(0, policy_, &param_);
  }

 private:
  SchedulingPolicy() = default;
  int policy_ = -1;
  sched_param param_{};
};

}  // namespace casfs
