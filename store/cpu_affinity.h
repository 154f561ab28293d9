// The CPUs a thread may run on, taken from one thread and given to threads it
// starts. A new thread inherits its creator's binding: a thread bound to one CPU
// would otherwise pass that binding on to workers meant to run side by side.
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

}  // namespace casfs
