// `casfs fsck STORE [--repair] [--json]`: checks a store and the filesystem in it
// while it is not mounted, and repairs what can be repaired. Exit codes follow
// fsck(8): 0 clean, 1 errors corrected, 4 errors left uncorrected, 8 operational
// error (no store, store mounted), 16 usage error.
#pragma once

#include "tools/cli.h"

namespace CLI {
class App;
}

namespace casfs::cli {

void add_fsck_command(CLI::App& app, Action& action);

}  // namespace casfs::cli
