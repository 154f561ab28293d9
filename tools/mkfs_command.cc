#include "tools/mkfs_command.h"

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "tools/store_commands.h"

namespace casfs::cli {

void add_mkfs_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("mkfs", "Create a new casfs store (same as `casfs store init`)");
  auto dir = std::make_shared<std::string>();
  cmd->add_option("STORE", *dir, "Directory to create (must be missing or empty)")->required();
  // The filesystem's own tables live in the store's LMDB environment and are created
  // on first mount, so for now a filesystem is exactly an initialized store.
  cmd->callback([&action, dir] { action = [dir] { return store_init(*dir); }; });
}

}  // namespace casfs::cli
