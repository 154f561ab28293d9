#include "tools/store_commands.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>
#include <vector>

#include "store/error.h"
#include "store/status_json.h"
#include "store/store.h"
#include "store/store_config.h"

namespace casfs::cli {
namespace {

namespace fs = std::filesystem;

// The line sha256sum prints for one file, so `casfs store add` output can be
// compared with (and checked by) the coreutils tool: names containing a backslash,
// a newline or a carriage return are escaped and the line starts with a backslash,
// as coreutils 9 does.
std::string checksum_line(const ObjectId& id, const std::string& name) {
  std::string escaped;
  bool needs_escape = false;
  for (char c : name) {
    switch (c) {
      case '\\':
        escaped += "\\\\";
        needs_escape = true;
        break;
      case '\n':
        escaped += "\\n";
        needs_escape = true;
        break;
      case '\r':
        escaped += "\\r";
        needs_escape = true;
        break;
      default:
        escaped += c;
    }
  }
  return (needs_escape ? "\\" : "") + id.hex() + "  " + escaped;
}

std::size_t read_stdin(std::span<std::byte> buf) {
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) {
      throw CommandError(std::string("cannot read standard input: ") + std::strerror(errno));
    }
  }
}

// Store messages usually name the file already; add the path when they do not, so
// every error line says which argument it is about.
std::string about_path(const std::string& path, const std::string& message) {
  if (message.find(path) != std::string::npos) return message;
  return path + ": " + message;
}

int store_add(const std::string& dir, const std::vector<std::string>& paths) {
  auto store = Store::open(dir);
  // With stdout on the terminal the checksum lines already show progress, and a
  // progress line on the same screen would only garble them.
  Progress progress("adding", ::isatty(STDOUT_FILENO) != 1);
  std::uint64_t files = 0, new_objects = 0, new_bytes = 0, total_bytes = 0, failed = 0;
  std::size_t finished = 0;
  auto report = [&](const std::string& path, const InsertResult* result, const char* error) {
    if (result != nullptr) {
      std::cout << checksum_line(result->id, path) << '\n' << std::flush;
      ++files;
      total_bytes += result->size;
      if (result->added) {
        ++new_objects;
        new_bytes += result->size;
      }
    } else {
      progress.clear();
      print_error(error);
      ++failed;
    }
    progress.update(++finished, paths.size());
  };
  // Runs of file paths go to the store together, so it can batch their syncs and
  // index commits; "-" (standard input) is streamed on its own.
  for (std::size_t i = 0; i < paths.size();) {
    if (paths[i] == "-") {
      try {
        InsertResult result = store->insert_stream(read_stdin);
        report("-", &result, nullptr);
      } catch (const StoreError& e) {
        report("-", nullptr, about_path("-", e.what()).c_str());
      }
      ++i;
      continue;
    }
    std::vector<fs::path> run;
    for (; i < paths.size() && paths[i] != "-"; ++i) run.emplace_back(paths[i]);
    store->insert_files(
        run, [&](std::size_t k, const InsertResult* result, const StoreError* error) {
          const std::string path = run[k].string();
          if (error != nullptr && error->code() == EISDIR) {
            report(path, nullptr, (path + ": is a directory").c_str());
          } else {
            report(path, result, error ? about_path(path, error->what()).c_str() : nullptr);
          }
        });
  }
  progress.clear();
  // One file added from a script stays as quiet as sha256sum; batches get a summary.
  if (paths.size() > 1 || stderr_is_terminal()) {
    std::cerr << "added " << files << (files == 1 ? " file" : " files") << " ("
              << format_bytes(total_bytes) << "): " << new_objects << " new ("
              << format_bytes(new_bytes) << "), " << (files - new_objects) << " already stored";
    if (failed > 0) std::cerr << ", " << failed << " failed";
    std::cerr << '\n';
  }
  return failed == 0 ? kExitOk : kExitFailure;
}

int store_cat(const std::string& dir, const std::string& hash) {
  ObjectId id = parse_object_id(hash);
  auto store = Store::open(dir);
  store->extract(id, [](std::span<const std::byte> bytes) { write_stdout(bytes); });
  return kExitOk;
}

int store_ls(const std::string& dir) {
  auto store = Store::open(dir);
  store->list([](const ObjectInfo& info) { std::cout << info.id.hex() << '\n'; });
  return kExitOk;
}

int store_rm(const std::string& dir, const std::vector<std::string>& hashes) {
  // Check every argument before touching the store, so a typo changes nothing.
  std::vector<ObjectId> ids;
  ids.reserve(hashes.size());
  for (const auto& hash : hashes) ids.push_back(parse_object_id(hash));
  auto store = Store::open(dir);
  int code = kExitOk;
  for (const auto& id : ids) {
    try {
      store->release(id);
    } catch (const StoreError& e) {
      print_error(e.what());
      code = kExitFailure;
    }
  }
  return code;
}

int store_status(const std::string& dir, bool json) {
  auto store = Store::open(dir);
  StoreStatus s = store->status();
  if (json) {
    auto j = status_json(fs::absolute(store->dir()).lexically_normal().string(), s);
    std::cout << j.dump(2) << '\n';
    return kExitOk;
  }
  auto ratio = [](std::uint64_t part, std::uint64_t whole) {
    if (whole == 0) return std::string("-");
    char buf[16];
    std::snprintf(buf, sizeof buf, "%.1f%%",
                  100.0 * static_cast<double>(part) / static_cast<double>(whole));
    return std::string(buf);
  };
  std::cout << "store:      " << store->dir().string() << '\n'
            << "io engine:  " << s.io_engine << '\n'
            << "objects:    " << s.objects() << " (" << s.loose_objects << " loose, "
            << s.intake_objects << " intake, " << s.packed_objects << " packed, "
            << s.unreferenced_objects << " unreferenced)\n"
            << "data:       " << format_bytes(s.raw_bytes()) << " raw, "
            << format_bytes(s.stored_bytes()) << " stored ("
            << ratio(s.stored_bytes(), s.raw_bytes()) << ")\n"
            << "loose:      " << format_bytes(s.loose_bytes) << '\n'
            << "intake:     " << format_bytes(s.intake_bytes) << " in " << s.intake_packs
            << " intake packs (raw until packed)\n";
  if (s.packs == 0) {
    std::cout << "packs:      none\n";
  } else {
    std::cout << "packs:      " << s.packs << " (" << format_bytes(s.pack_file_bytes)
              << " on disk, " << format_bytes(s.dead_bytes) << " dead, "
              << ratio(s.dead_bytes, s.pack_file_bytes) << ")\n";
  }
  return kExitOk;
}

int store_pack(const std::string& dir) {
  auto store = Store::open(dir);
  Progress progress("packing");
  PackReport r = store->pack(progress.callback());
  progress.clear();
  if (r.objects == 0) {
    std::cout << "nothing to pack\n";
  } else {
    std::cout << "packed " << r.objects << (r.objects == 1 ? " object, " : " objects, ")
              << format_bytes(r.raw_bytes) << " → " << format_bytes(r.stored_bytes) << '\n';
  }
  return kExitOk;
}

int store_gc(const std::string& dir) {
  auto store = Store::open(dir);
  Progress progress("collecting");
  GcReport r = store->gc(progress.callback());
  progress.clear();
  std::cout << "gc: removed " << r.loose_removed << " loose objects, dropped " << r.packed_dropped
            << " packed objects, " << format_bytes(r.bytes_freed) << " freed";
  // Dropped packed objects free nothing until repack rewrites their packs.
  if (r.packed_dropped > 0) std::cout << " (run repack to reclaim pack space)";
  std::cout << '\n';
  return kExitOk;
}

int store_repack(const std::string& dir, double threshold_pct, bool merge_small) {
  auto store = Store::open(dir);
  RepackOptions options;
  options.dead_threshold = threshold_pct / 100.0;
  options.merge_small = merge_small;
  Progress progress("repacking");
  RepackReport r = store->repack(options, progress.callback());
  progress.clear();
  if (r.packs_rewritten == 0 && r.packs_removed == 0) {
    std::cout << "nothing to repack\n";
  } else {
    std::cout << "repacked " << r.packs_rewritten << " packs (" << r.packs_removed << " removed), "
              << format_bytes(r.bytes_before) << " → " << format_bytes(r.bytes_after) << '\n';
  }
  return kExitOk;
}

int store_verify(const std::string& dir) {
  auto store = Store::open(dir);
  Progress progress("verifying");
  VerifyReport r = store->verify(progress.callback());
  progress.clear();
  for (const auto& problem : r.problems) {
    std::cout << problem.id.hex() << "  " << problem.what << '\n';
  }
  if (r.clean()) {
    std::cout << "verified " << r.objects_checked << " objects (" << format_bytes(r.bytes_checked)
              << "): all good\n";
    return kExitOk;
  }
  std::cout << "verify: " << r.problems.size()
            << (r.problems.size() == 1 ? " problem" : " problems") << " in " << r.objects_checked
            << " objects checked\n";
  return kExitFailure;
}

int store_rebuild_index(const std::string& dir) {
  // The index may be gone or damaged: that is what this command is for.
  OpenOptions options;
  options.allow_missing_index = true;
  auto store = Store::open(dir, options);
  Progress progress("rebuilding index");
  RebuildReport r = store->rebuild_index(progress.callback());
  progress.clear();
  std::cout << "rebuilt index: " << r.loose_objects << " loose and " << r.packed_objects
            << " packed objects";
  if (r.torn_bytes > 0) {
    std::cout << ", " << format_bytes(r.torn_bytes) << " of torn pack tails ignored";
  }
  if (r.damaged_bytes > 0) {
    std::cout << ", " << format_bytes(r.damaged_bytes) << " of damaged pack records skipped";
  }
  if (r.bad_loose_files > 0) {
    std::cout << ", " << r.bad_loose_files
              << " loose files whose content does not match their name (left alone)";
  }
  std::cout << '\n';
  for (const auto& id : r.lost_objects) {
    std::cerr << "casfs: object " << id.hex() << " is referenced but no intact copy was found\n";
  }
  return r.lost_objects.empty() ? kExitOk : kExitFailure;
}

int store_upgrade(const std::string& dir) {
  auto store = Store::open(dir);
  Progress progress("upgrading");
  const int from = store->upgrade(progress.callback());
  progress.clear();
  if (from == kStoreFormatVersion) {
    std::cout << "store " << dir << " is at format version " << from << " already\n";
  } else {
    std::cout << "upgraded store " << dir << " from format version " << from << " to "
              << kStoreFormatVersion << " (casfs older than this one can no longer open it)\n";
  }
  return kExitOk;
}

// A subcommand whose only argument is the store directory.
void add_simple(CLI::App& store_app, Action& action, const char* name, const char* help,
                int (*run)(const std::string&)) {
  auto* cmd = store_app.add_subcommand(name, help);
  auto dir = std::make_shared<std::string>();
  cmd->add_option("STORE", *dir, "Store directory")->required();
  cmd->callback([&action, dir, run] { action = [dir, run] { return run(*dir); }; });
}

}  // namespace

int store_init(const fs::path& dir) {
  Store::init(dir);
  std::cout << "created store " << dir.string() << '\n';
  return kExitOk;
}

void add_store_commands(CLI::App& app, Action& action) {
  auto* store_app = app.add_subcommand("store", "Work directly on a content-addressed store");
  store_app->require_subcommand(1);

  {
    auto* cmd = store_app->add_subcommand("init", "Create a new, empty store");
    auto dir = std::make_shared<std::string>();
    cmd->add_option("STORE", *dir, "Directory to create (must be missing or empty)")->required();
    cmd->callback([&action, dir] { action = [dir] { return store_init(*dir); }; });
  }
  {
    auto* cmd = store_app->add_subcommand(
        "add", "Add files as objects; prints \"<sha256>  <path>\" per file like sha256sum");
    auto dir = std::make_shared<std::string>();
    auto paths = std::make_shared<std::vector<std::string>>();
    cmd->add_option("STORE", *dir, "Store directory")->required();
    cmd->add_option("PATH", *paths, "Files to add (\"-\" reads standard input)")->required();
    cmd->callback(
        [&action, dir, paths] { action = [dir, paths] { return store_add(*dir, *paths); }; });
  }
  {
    auto* cmd = store_app->add_subcommand("cat", "Write an object's bytes to standard output");
    auto dir = std::make_shared<std::string>();
    auto hash = std::make_shared<std::string>();
    cmd->add_option("STORE", *dir, "Store directory")->required();
    cmd->add_option("HASH", *hash, "Object id (64 hex digits)")->required();
    cmd->callback(
        [&action, dir, hash] { action = [dir, hash] { return store_cat(*dir, *hash); }; });
  }
  add_simple(*store_app, action, "ls", "List object ids, one per line", store_ls);
  {
    auto* cmd = store_app->add_subcommand("rm", "Release one reference to each object");
    auto dir = std::make_shared<std::string>();
    auto hashes = std::make_shared<std::vector<std::string>>();
    cmd->add_option("STORE", *dir, "Store directory")->required();
    cmd->add_option("HASH", *hashes, "Object ids (64 hex digits)")->required();
    cmd->callback(
        [&action, dir, hashes] { action = [dir, hashes] { return store_rm(*dir, *hashes); }; });
  }
  {
    auto* cmd = store_app->add_subcommand("status", "Show object counts and sizes");
    auto dir = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    cmd->add_option("STORE", *dir, "Store directory")->required();
    cmd->add_flag("--json", *json, "Machine-readable output");
    cmd->callback(
        [&action, dir, json] { action = [dir, json] { return store_status(*dir, *json); }; });
  }
  add_simple(*store_app, action, "pack", "Move loose objects into compressed pack files",
             store_pack);
  add_simple(*store_app, action, "gc", "Remove objects that nothing references", store_gc);
  {
    auto* cmd = store_app->add_subcommand("repack", "Rewrite packs to drop dead bytes");
    auto dir = std::make_shared<std::string>();
    auto threshold = std::make_shared<double>(25.0);
    auto no_merge = std::make_shared<bool>(false);
    cmd->add_option("STORE", *dir, "Store directory")->required();
    cmd->add_option("--threshold", *threshold,
                    "Rewrite a pack once this percentage of it is dead (default 25)")
        ->check(CLI::Validator(
            [](std::string& text) {
              std::size_t used = 0;
              double value = -1;
              try {
                value = std::stod(text, &used);
              } catch (const std::exception&) {
              }
              if (used != text.size() || !(value >= 0 && value <= 100)) {
                return std::string("must be a percentage from 0 to 100, got '" + text + "'");
              }
              return std::string();
            },
            "in [0, 100]"))
        ->type_name("PCT");
    cmd->add_flag("--no-merge", *no_merge, "Do not merge small packs");
    cmd->callback([&action, dir, threshold, no_merge] {
      action = [dir, threshold, no_merge] { return store_repack(*dir, *threshold, !*no_merge); };
    });
  }
  add_simple(*store_app, action, "verify",
             "Re-hash every object; exit 1 and list the bad ones if any", store_verify);
  add_simple(*store_app, action, "rebuild-index",
             "Rebuild the index from the pack and loose files alone", store_rebuild_index);
  add_simple(*store_app, action, "upgrade",
             "Raise the store's format version to this casfs's (block sums, intake packs)",
             store_upgrade);
}

}  // namespace casfs::cli
