// The casfsctl subcommands: each asks the mount daemon over its control socket
// (tools/control_client.h) and prints the answer for people or, with --json, for
// scripts.
#pragma once

#include <CLI/CLI.hpp>

#include "tools/cli.h"

namespace casfs::cli {

void add_ctl_commands(CLI::App& app, Action& action);

// Runs `action` as run_action does, with "casfsctl: " before error messages.
int run_ctl_action(const Action& action);

}  // namespace casfs::cli
