// `casfs store …`: direct access to a content-addressed store (init, add, cat, ls,
// rm, status, pack, gc, repack, verify, rebuild-index), offline, under the store lock.
#pragma once

#include <filesystem>

#include "tools/cli.h"

namespace CLI {
class App;
}

namespace casfs::cli {

// Registers the `store` subcommand and its children on `app`; the one that is
// parsed stores its action in `action`.
void add_store_commands(CLI::App& app, Action& action);

// `casfs store init`, shared with `casfs mkfs`.
int store_init(const std::filesystem::path& dir);

}  // namespace casfs::cli
