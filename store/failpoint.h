// Named points inside multi-step maintenance jobs (pack, repack, gc) where crash
// tests stop the process, to prove that the store is consistent after a crash at
// every step; and before an insert writes objects, where a hook may throw to test
// the callers' error paths. In normal runs no hook is installed and a failpoint
// costs one load.
#pragma once

#include <functional>
#include <string_view>

namespace casfs {

// Calls the installed hook with `name`; does nothing when none is installed.
void failpoint(std::string_view name);

// Installs (or, with an empty function, removes) the hook. Not thread-safe with
// respect to running jobs: install it before starting the job under test.
void set_failpoint_hook(std::function<void(std::string_view)> hook);

}  // namespace casfs
