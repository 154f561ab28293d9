#include "tools/fsck_command.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fs/fsck.h"
#include "store/error.h"

namespace casfs::cli {

namespace {

// fsck(8)'s exit codes, which scripts and boot tools expect of any fsck.
constexpr int kFsckClean = 0;
constexpr int kFsckCorrected = 1;
constexpr int kFsckUncorrected = 4;
constexpr int kFsckOperational = 8;
constexpr int kFsckUsage = 16;

struct FsckRequest {
  std::string store;
  bool repair = false;
  bool json = false;
};

int exit_code(const FsckReport& r) {
  if (r.errors() > r.errors_repaired()) return kFsckUncorrected;
  if (r.errors_repaired() > 0) return kFsckCorrected;
  return kFsckClean;
}

// The pid the store lock file records, for the "mounted" message; empty if unknown.
std::string lock_holder(const std::string& store) {
  std::ifstream in(std::filesystem::path(store) / "run" / "lock");
  std::string pid;
  std::getline(in, pid);
  for (char c : pid) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return {};
  }
  return pid;
}

std::string problem_line(const FsckProblem& p) {
  std::string line = std::string(fsck_kind_name(p.kind)) + ": " + p.what;
  if (p.repaired) {
    line += " (fixed: " + p.fix + ")";
  } else if (!p.fix.empty()) {
    line += " (--repair: " + p.fix + ")";
  } else if (fsck_kind_is_error(p.kind)) {
    line += " (not fixable)";
  }
  return line;
}

std::string count(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string summary_line(const std::string& store, const FsckReport& r, bool repair) {
  const auto& c = r.counts;
  std::string line = store + ": ";
  const std::uint64_t errors = r.errors();
  const std::uint64_t fixed = r.errors_repaired();
  if (errors == 0) {
    line += "clean";
  } else if (fixed == errors) {
    line += count(errors, "error", "errors") + (errors == 1 ? ", fixed" : ", all fixed");
  } else {
    line += count(errors, "error", "errors");
    if (repair) line += ", " + std::to_string(fixed) + " fixed";
    line += ", " + std::to_string(errors - fixed) + " left";
  }
  if (r.no_filesystem) {
    line += "; no filesystem (never mounted)";
  } else {
    line += "; " + count(c.inodes, "inode", "inodes") + " (" +
            count(c.directories, "directory", "directories") + ", " +
            count(c.files, "file", "files") + ", " + count(c.symlinks, "symlink", "symlinks") +
            "), " + count(c.extents, "extent", "extents");
  }
  line += ", " + count(c.objects, "object", "objects") + " (" + format_bytes(c.bytes_verified) +
          " verified)";
  if (r.files_lost > 0) line += "; data lost in " + count(r.files_lost, "file", "files");
  if (!r.unreferenced.empty()) {
    line += "; " + count(r.unreferenced.size(), "unreferenced object", "unreferenced objects") +
            " (" + format_bytes(r.unreferenced_bytes) + ")";
    line += r.gc ? ", removed by gc" : ", which --repair collects";
  }
  return line;
}

nlohmann::ordered_json to_json(const std::string& store, const FsckReport& r, bool repair,
                               int code) {
  nlohmann::ordered_json j;
  j["store"] = std::filesystem::absolute(store).lexically_normal().string();
  j["repair"] = repair;
  j["exit_code"] = code;
  j["clean"] = r.clean();
  j["errors"] = r.errors();
  j["errors_repaired"] = r.errors_repaired();
  j["no_filesystem"] = r.no_filesystem;
  j["index_rebuilt"] = r.index_rebuilt;
  auto problems = nlohmann::ordered_json::array();
  for (const auto& p : r.problems) {
    problems.push_back({{"kind", fsck_kind_name(p.kind)},
                        {"error", fsck_kind_is_error(p.kind)},
                        {"what", p.what},
                        {"fix", p.fix},
                        {"repaired", p.repaired}});
  }
  j["problems"] = problems;
  j["lost_files"] = r.lost_files;
  j["files_lost"] = r.files_lost;
  const auto& c = r.counts;
  j["counts"] = {{"inodes", c.inodes},
                 {"directories", c.directories},
                 {"files", c.files},
                 {"symlinks", c.symlinks},
                 {"extents", c.extents},
                 {"objects", c.objects},
                 {"bytes_verified", c.bytes_verified}};
  j["unreferenced"] = {{"objects", r.unreferenced.size()}, {"bytes", r.unreferenced_bytes}};
  if (r.gc) {
    j["gc"] = {{"loose_removed", r.gc->loose_removed},
               {"packed_dropped", r.gc->packed_dropped},
               {"bytes_freed", r.gc->bytes_freed}};
  } else {
    j["gc"] = nullptr;
  }
  return j;
}

int run_fsck_command(const FsckRequest& request) {
  FsckReport report;
  try {
    Progress progress(request.repair ? "checking and repairing" : "checking");
    report = run_fsck(request.store, FsckOptions{request.repair, progress.callback()});
  } catch (const StoreError& e) {
    if (e.code() == EBUSY) {
      std::string pid = lock_holder(request.store);
      print_error(request.store + " is mounted; unmount it first" +
                  (pid.empty() ? "" : " (casfs process " + pid + " holds it)"));
    } else {
      print_error(e.what());
    }
    return kFsckOperational;
  } catch (const std::exception& e) {
    print_error(e.what());
    return kFsckOperational;
  }
  const int code = exit_code(report);
  if (request.json) {
    // Names are escaped already; replace anything that is still not UTF-8.
    std::cout << to_json(request.store, report, request.repair, code)
                     .dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
              << '\n';
    return code;
  }
  for (const auto& p : report.problems) std::cout << problem_line(p) << '\n';
  for (const auto& path : report.lost_files) std::cout << "lost: " << path << '\n';
  std::cout << summary_line(request.store, report, request.repair) << '\n';
  return code;
}

}  // namespace

void add_fsck_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "fsck", "Check a store and its filesystem while it is not mounted (exit codes as fsck(8))");
  auto request = std::make_shared<FsckRequest>();
  cmd->add_option("STORE", request->store, "The store to check");
  cmd->add_flag("--repair", request->repair,
                "Repair what can be repaired (refcounts, orphans, names, the index, ...)");
  cmd->add_flag("--json", request->json, "Machine-readable output");
  // fsck(8) reports usage errors with 16, not the 2 other commands use: take what
  // CLI11 would reject and refuse it here.
  cmd->allow_extras();
  cmd->callback([&action, cmd, request] {
    std::vector<std::string> extra = cmd->remaining();
    if (request->store.empty() || !extra.empty()) {
      std::string why = request->store.empty() ? "fsck needs a STORE argument"
                                               : "unexpected argument '" + extra.front() + "'";
      action = [why] {
        print_error(why + " (see casfs fsck --help)");
        return kFsckUsage;
      };
      return;
    }
    action = [request] { return run_fsck_command(*request); };
  });
}

}  // namespace casfs::cli
