// `casfs mount STORE MNT [-f] [-o OPTS]`: serves a store as a filesystem.
#pragma once

#include <CLI/CLI.hpp>

#include "tools/cli.h"

namespace casfs::cli {

void add_mount_command(CLI::App& app, Action& action);

}  // namespace casfs::cli
