#include "tools/ctl_commands.h"

#include <cstdio>
#include <iostream>
#include <memory>
#include <new>
#include <optional>
#include <string>

#include "store/error.h"
#include "tools/control_client.h"

namespace casfs::cli {

namespace {

using Json = ControlClient::Json;

struct CtlArgs {
  std::string mnt;  // empty: the mount containing the current directory
  bool json = false;
  bool wait = false;
  double threshold = 25.0;
};

ControlClient connect(const CtlArgs& args) {
  return ControlClient(resolve_target(args.mnt.empty() ? std::nullopt : std::optional(args.mnt)));
}

std::uint64_t u64(const Json& j, const char* key) {
  return j.at(key).get<std::uint64_t>();
}

std::string times(const Json& ratio) {
  if (ratio.is_null()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", ratio.get<double>());
  return buf;
}

std::string percent(std::uint64_t part, std::uint64_t whole) {
  if (whole == 0) return "-";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f%%",
                100.0 * static_cast<double>(part) / static_cast<double>(whole));
  return buf;
}

std::string packer_line(const Json& p) {
  if (!p.at("enabled").get<bool>()) return "off (mounted with nopacker)";
  std::string line = p.at("state").get<std::string>();
  if (auto progress = p.find("progress"); progress != p.end()) {
    line += " (" + std::to_string(u64(*progress, "done")) + "/" +
            std::to_string(u64(*progress, "total")) + ")";
  }
  line += "; " + std::to_string(u64(p, "runs")) + " runs, " +
          std::to_string(u64(p, "objects_packed")) + " objects packed";
  const Json& last = p.at("last_run");
  if (!last.is_null()) {
    line += "; last run ended " + last.at("ended").get<std::string>();
    if (!last.at("error").is_null())
      line += " with an error: " + last.at("error").get<std::string>();
  }
  line += "; about " + std::to_string(u64(p, "loose_objects_estimate")) + " loose objects (" +
          format_bytes(u64(p, "loose_bytes_estimate")) + ") now";
  return line;
}

std::string cache_line(const Json& s) {
  const Json& c = s.at("cache");
  if (u64(c, "capacity") == 0) return "off (mounted with cache=0)";
  const std::uint64_t lookups = u64(c, "hits") + u64(c, "misses");
  return (lookups == 0 ? std::string("no reads yet")
                       : percent(u64(c, "hits"), lookups) + " hit rate of " +
                             std::to_string(lookups) + " object reads") +
         "; " + format_bytes(u64(c, "bytes")) + " of " + format_bytes(u64(c, "capacity")) + " held";
}

int ctl_status(const CtlArgs& args) {
  ControlClient client = connect(args);
  const Json reply = client.call(Json{{"cmd", "status"}});
  const Json& s = reply.at("status");
  if (args.json) {
    std::cout << s.dump(2) << '\n';
    return kExitOk;
  }
  const Json& objects = s.at("objects");
  const Json& bytes = s.at("bytes");
  std::cout << "mount:      " << s.at("mountpoint").get<std::string>() << '\n'
            << "store:      " << s.at("store").get<std::string>() << '\n'
            << "io engine:  " << s.at("io_engine").get<std::string>() << '\n'
            << "objects:    " << u64(objects, "total") << " (" << u64(objects, "loose")
            << " loose, " << u64(objects, "intake") << " intake, " << u64(objects, "packed")
            << " packed, " << u64(objects, "unreferenced") << " unreferenced)\n"
            << "data:       " << format_bytes(u64(s, "logical_bytes")) << " in files, "
            << format_bytes(u64(bytes, "raw")) << " raw, " << format_bytes(u64(bytes, "stored"))
            << " stored\n"
            << "ratios:     dedup " << times(s.at("dedup_ratio")) << ", compression "
            << times(s.at("compression_ratio")) << '\n'
            << "loose:      " << format_bytes(u64(bytes, "loose")) << '\n'
            << "intake:     " << format_bytes(u64(bytes, "intake")) << " in "
            << u64(s, "intake_packs") << " intake packs (raw until packed)\n";
  if (u64(s, "packs") == 0) {
    std::cout << "packs:      none\n";
  } else {
    std::cout << "packs:      " << u64(s, "packs") << " (" << format_bytes(u64(bytes, "pack_files"))
              << " on disk, " << format_bytes(u64(bytes, "dead")) << " dead, "
              << percent(u64(bytes, "dead"), u64(bytes, "pack_files")) << ")\n";
  }
  std::cout << "packer:     " << packer_line(s.at("packer")) << '\n'
            << "jobs:       " << u64(s, "jobs_running") << " running\n"
            << "cache:      " << cache_line(s) << '\n';
  return kExitOk;
}

// One line on what a finished job did.
std::string summary(const Json& job) {
  const std::string kind = job.at("kind").get<std::string>();
  const std::string state = job.at("state").get<std::string>();
  const Json& r = job.at("result");
  if (state == "running") return "";
  if (state == "failed") return "failed: " + r.value("error", std::string("unknown error"));
  if (kind == "pack") {
    if (u64(r, "objects") == 0) return "nothing to pack";
    return "packed " + std::to_string(u64(r, "objects")) + " objects, " +
           format_bytes(u64(r, "raw_bytes")) + " → " + format_bytes(u64(r, "stored_bytes"));
  }
  if (kind == "gc") {
    std::string line = "removed " + std::to_string(u64(r, "loose_removed")) +
                       " loose objects, dropped " + std::to_string(u64(r, "packed_dropped")) +
                       " packed objects, " + format_bytes(u64(r, "bytes_freed")) + " freed";
    // Dropped packed objects free nothing until repack rewrites their packs.
    if (u64(r, "packed_dropped") > 0) line += " (run repack to reclaim pack space)";
    return line;
  }
  if (kind == "repack") {
    if (u64(r, "packs_rewritten") == 0 && u64(r, "packs_removed") == 0) return "nothing to repack";
    return "repacked " + std::to_string(u64(r, "packs_rewritten")) + " packs (" +
           std::to_string(u64(r, "packs_removed")) + " removed), " +
           format_bytes(u64(r, "bytes_before")) + " → " + format_bytes(u64(r, "bytes_after"));
  }
  if (kind == "verify") {
    const std::size_t problems = r.at("problems").size();
    if (problems == 0) {
      return "verified " + std::to_string(u64(r, "objects_checked")) + " objects (" +
             format_bytes(u64(r, "bytes_checked")) + "): all good";
    }
    return std::to_string(problems) + (problems == 1 ? " problem" : " problems") + " in " +
           std::to_string(u64(r, "objects_checked")) + " objects checked";
  }
  return r.dump();
}

const char* progress_label(const std::string& kind) {
  if (kind == "pack") return "packing";
  if (kind == "gc") return "collecting";
  if (kind == "repack") return "repacking";
  return "verifying";
}

int ctl_job(const std::string& kind, const CtlArgs& args) {
  ControlClient client = connect(args);
  Json request{{"cmd", kind}, {"wait", args.wait}};
  if (kind == "repack") request["threshold"] = args.threshold;
  if (!args.wait) {
    const Json job = client.call(request).at("job");
    std::cout << "job " << u64(job, "id") << ": " << kind << ' '
              << job.at("state").get<std::string>() << '\n';
    return kExitOk;
  }
  Progress progress(progress_label(kind));
  const Json job = client
                       .call(request,
                             [&](const Json& line) {
                               const Json& p = line.at("progress");
                               progress.update(u64(p, "done"), u64(p, "total"));
                             })
                       .at("job");
  progress.clear();
  if (job.at("state") == "failed") throw CommandError(kind + " " + summary(job));
  if (kind == "verify") {
    for (const auto& problem : job.at("result").at("problems")) {
      std::cout << (problem.at("id").is_null() ? std::string("-")
                                               : problem.at("id").get<std::string>())
                << "  " << problem.at("what").get<std::string>() << '\n';
      for (const auto& path : problem.at("paths")) {
        std::cout << "    used by " << path.get<std::string>() << '\n';
      }
    }
    std::cout << (kind + ": ") << summary(job) << '\n';
    return job.at("result").at("problems").empty() ? kExitOk : kExitFailure;
  }
  std::cout << kind << ": " << summary(job) << '\n';
  return kExitOk;
}

int ctl_flush(const CtlArgs& args) {
  ControlClient client = connect(args);
  client.call(Json{{"cmd", "flush"}});
  std::cout << "flushed: everything is written out and committed\n";
  return kExitOk;
}

int ctl_jobs(const CtlArgs& args) {
  ControlClient client = connect(args);
  const Json jobs = client.call(Json{{"cmd", "jobs"}}).at("jobs");
  if (args.json) {
    std::cout << jobs.dump(2) << '\n';
    return kExitOk;
  }
  if (jobs.empty()) {
    std::cout << "no jobs\n";
    return kExitOk;
  }
  std::printf("%-5s %-7s %-8s %-16s %-21s %s\n", "ID", "KIND", "STATE", "PROGRESS", "STARTED",
              "RESULT");
  for (const auto& job : jobs) {
    const Json& p = job.at("progress");
    std::string progress = std::to_string(u64(p, "done")) + "/" + std::to_string(u64(p, "total"));
    if (u64(p, "total") > 0) progress += " " + percent(u64(p, "done"), u64(p, "total"));
    std::printf(
        "%-5llu %-7s %-8s %-16s %-21s %s\n", static_cast<unsigned long long>(u64(job, "id")),
        job.at("kind").get<std::string>().c_str(), job.at("state").get<std::string>().c_str(),
        progress.c_str(), job.at("started").get<std::string>().c_str(), summary(job).c_str());
  }
  std::fflush(stdout);
  return kExitOk;
}

// The arguments every subcommand shares: the mount (optional) and --json where it
// means something.
std::shared_ptr<CtlArgs> add_common(CLI::App* cmd, bool json) {
  auto args = std::make_shared<CtlArgs>();
  cmd->add_option("MNT", args->mnt,
                  "The mount, any path inside it, or its store directory (default: the "
                  "mount containing the current directory)");
  if (json) cmd->add_flag("--json", args->json, "Machine-readable output");
  return args;
}

void add_job_command(CLI::App& app, Action& action, const std::string& kind, const char* help) {
  auto* cmd = app.add_subcommand(kind, help);
  auto args = add_common(cmd, false);
  cmd->add_flag("--wait", args->wait, "Wait for the job, showing progress, and print its result");
  if (kind == "repack") {
    cmd->add_option("--threshold", args->threshold,
                    "Rewrite a pack once this percentage of it is dead (default 25)")
        ->check(CLI::Range(0.0, 100.0))
        ->type_name("PCT");
  }
  cmd->callback([&action, args, kind] { action = [args, kind] { return ctl_job(kind, *args); }; });
}

}  // namespace

int run_ctl_action(const Action& action) {
  auto report = [](const std::string& message) {
    std::string line = message;
    for (char& c : line) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    std::cout.flush();
    std::cerr << "casfsctl: " << line << '\n' << std::flush;
  };
  try {
    int code = action();
    std::cout.flush();
    if (!std::cout) throw CommandError("cannot write to standard output");
    return code;
  } catch (const nlohmann::json::exception& e) {
    // A daemon of another version, or not a daemon at all.
    report(std::string("unexpected reply from the daemon: ") + e.what());
  } catch (const std::bad_alloc&) {
    report("out of memory");
  } catch (const std::exception& e) {
    report(e.what());
  }
  return kExitFailure;
}

void add_ctl_commands(CLI::App& app, Action& action) {
  {
    auto* cmd = app.add_subcommand(
        "status", "Objects, bytes, dedup and compression ratios, packs, packer and jobs");
    auto args = add_common(cmd, true);
    cmd->callback([&action, args] { action = [args] { return ctl_status(*args); }; });
  }
  add_job_command(app, action, "pack", "Move loose objects into packs");
  add_job_command(app, action, "gc", "Drop objects that no file uses");
  add_job_command(app, action, "repack", "Rewrite packs to reclaim dead bytes");
  add_job_command(app, action, "verify",
                  "Re-hash every object; report bad ones and the files that use them");
  {
    auto* cmd = app.add_subcommand("flush", "Write out and commit everything now");
    auto args = add_common(cmd, false);
    cmd->callback([&action, args] { action = [args] { return ctl_flush(*args); }; });
  }
  {
    auto* cmd = app.add_subcommand("jobs", "Running and finished jobs with their progress");
    auto args = add_common(cmd, true);
    cmd->callback([&action, args] { action = [args] { return ctl_jobs(*args); }; });
  }
}

}  // namespace casfs::cli
