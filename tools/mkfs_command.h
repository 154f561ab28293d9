// `casfs mkfs STORE`: creates the store a filesystem will live in.
#pragma once

#include "tools/cli.h"

namespace CLI {
class App;
}

namespace casfs::cli {

void add_mkfs_command(CLI::App& app, Action& action);

}  // namespace casfs::cli
