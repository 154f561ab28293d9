#include "fs/control_requests.h"

#include <chrono>
#include <filesystem>
#include <utility>

#include "store/status_json.h"

namespace casfs {

namespace {

using json = nlohmann::ordered_json;

// How often a waiting request reports progress.
constexpr std::chrono::milliseconds kProgressEvery{250};

json ratio(std::uint64_t part, std::uint64_t whole) {
  if (whole == 0) return nullptr;
  return static_cast<double>(part) / static_cast<double>(whole);
}

bool wants_wait(const json& request) {
  auto it = request.find("wait");
  if (it == request.end()) return false;
  if (!it->is_boolean()) throw std::invalid_argument("\"wait\" must be true or false");
  return it->get<bool>();
}

}  // namespace

ControlRequests::ControlRequests(Store& store, Filesystem& fs, BackgroundPacker& packer,
                                 std::string mountpoint)
    : store_(store),
      fs_(fs),
      packer_(packer),
      mountpoint_(std::move(mountpoint)),
      store_dir_(std::filesystem::absolute(store.dir()).lexically_normal().string()),
      users_(store.env()) {}

json ControlRequests::error_reply(const std::string& message) {
  json j;
  j["ok"] = false;
  j["error"] = message;
  return j;
}

ParsedControlRequest parse_control_request(std::string_view line) {
  ParsedControlRequest parsed;
  try {
    parsed.request = json::parse(line);
  } catch (const json::exception&) {
    parsed.error = "not a JSON request (expected one JSON object per line)";
    return parsed;
  }
  const json& request = parsed.request;
  if (!request.is_object() || !request.contains("cmd") || !request["cmd"].is_string()) {
    parsed.error = "a request is a JSON object with a string \"cmd\"";
    return parsed;
  }
  parsed.cmd = request["cmd"].get<std::string>();
  return parsed;
}

void ControlRequests::handle(std::string_view line, const std::function<bool(const json&)>& send) {
  ParsedControlRequest parsed = parse_control_request(line);
  if (!parsed.error.empty()) {
    send(error_reply(parsed.error));
    return;
  }
  json& request = parsed.request;
  const std::string& cmd = parsed.cmd;
  try {
    if (cmd == "status") {
      json reply;
      reply["ok"] = true;
      reply["status"] = status();
      send(reply);
    } else if (cmd == "flush") {
      fs_.sync_all();
      send(json{{"ok", true}});
    } else if (cmd == "jobs") {
      json list = json::array();
      for (const auto& job : jobs_.list()) list.push_back(job.to_json());
      json reply;
      reply["ok"] = true;
      reply["jobs"] = std::move(list);
      send(reply);
    } else if (cmd == "job") {
      if (!request.contains("id") || !request["id"].is_number_unsigned())
        throw std::invalid_argument("\"job\" needs a numeric \"id\"");
      const auto id = request["id"].get<std::uint64_t>();
      if (!jobs_.get(id)) throw std::invalid_argument("no job " + std::to_string(id));
      if (wants_wait(request)) {
        wait_for_job(id, send);
      } else {
        send(json{{"ok", true}, {"job", jobs_.get(id)->to_json()}});
      }
    } else if (cmd == "pack" || cmd == "gc" || cmd == "repack" || cmd == "verify") {
      run_job(cmd, request, send);
    } else {
      send(error_reply("unknown command \"" + cmd + "\""));
    }
  } catch (const std::exception& e) {
    send(error_reply(e.what()));
  }
}

json ControlRequests::status() {
  StoreStatus s;
  {
    std::lock_guard lock(status_mutex_);
    s = store_.status();
  }
  // The keys of `casfs store status --json` first, then the filesystem's.
  json j = status_json(store_dir_, s);
  j["mountpoint"] = mountpoint_;
  j["logical_bytes"] = s.logical_bytes;
  j["dedup_ratio"] = ratio(s.logical_bytes, s.raw_bytes());
  j["compression_ratio"] = ratio(s.raw_bytes(), s.stored_bytes());
  const ObjectCacheStats cache = store_.cache_stats();
  const std::uint64_t lookups = cache.hits + cache.misses;
  // null: nothing to rate (nothing read yet; a cache that is off counts nothing).
  j["cache_hit_rate"] = lookups == 0
                            ? json(nullptr)
                            : json(static_cast<double>(cache.hits) / static_cast<double>(lookups));
  j["cache"] = {{"capacity", cache.capacity},
                {"bytes", cache.bytes},
                {"hits", cache.hits},
                {"misses", cache.misses}};
  j["packer"] = packer_status();
  j["jobs_running"] = jobs_.running();
  return j;
}

json ControlRequests::packer_status() {
  const PackerState p = packer_.state();
  json j;
  j["enabled"] = p.options.enabled;
  j["state"] = to_string(p.phase);
  j["thresholds"] = {{"loose_objects", p.options.loose_objects},
                     {"loose_bytes", p.options.loose_bytes},
                     {"age_seconds", std::chrono::duration<double>(p.options.age).count()}};
  j["loose_objects_estimate"] = p.loose_objects;
  j["loose_bytes_estimate"] = p.loose_bytes;
  j["runs"] = p.runs;
  j["objects_packed"] = p.objects_packed;
  if (p.phase == PackerState::Phase::kPacking) {
    j["progress"] = {{"done", p.progress_done}, {"total", p.progress_total}};
  }
  if (p.last_start) {
    json last;
    last["started"] = format_utc(*p.last_start);
    last["ended"] = format_utc(*p.last_end);
    last["objects"] = p.last_report.objects;
    last["raw_bytes"] = p.last_report.raw_bytes;
    last["stored_bytes"] = p.last_report.stored_bytes;
    last["error"] = p.last_error.empty() ? json(nullptr) : json(p.last_error);
    j["last_run"] = std::move(last);
  } else {
    j["last_run"] = nullptr;
  }
  return j;
}

json ControlRequests::verify_result(const VerifyReport& report) {
  std::vector<ObjectId> bad;
  for (const auto& problem : report.problems) {
    if (problem.id != ObjectId{}) bad.push_back(problem.id);
  }
  std::map<ObjectId, std::vector<std::string>> paths;
  if (!bad.empty()) {
    // Committed extents are what reads use; a read snapshot needs no writer lock.
    LmdbTxn snapshot = LmdbTxn::read(store_.env());
    paths = users_.paths_using(snapshot, bad);
  }
  json problems = json::array();
  for (const auto& problem : report.problems) {
    json p;
    // A problem with a pack as a whole (missing, short) names no object.
    p["id"] = problem.id == ObjectId{} ? json(nullptr) : json(problem.id.hex());
    p["what"] = problem.what;
    json files = json::array();
    if (auto it = paths.find(problem.id); it != paths.end()) {
      for (const auto& path : it->second) {
        files.push_back(path.starts_with("/") ? mountpoint_ + path : path);
      }
    }
    p["paths"] = std::move(files);
    problems.push_back(std::move(p));
  }
  json j;
  j["clean"] = report.clean();
  j["objects_checked"] = report.objects_checked;
  j["bytes_checked"] = report.bytes_checked;
  j["problems"] = std::move(problems);
  return j;
}

// gc cannot deadlock with the filesystem's writers, and here is why. Inserts hold the
// store's loose gate shared from prepare_insert until their PendingInsert goes away;
// the flusher (and fsync, and a writer over its dirty limit) holds one while it waits
// for the commit queue to commit its extents. gc takes the gate exclusively for each
// batch (InsertGate: first its entry mutex, which holds back new shared lockers, then
// the gate itself) and only then begins its LMDB write transaction.
//   1. gc waits for the gate while holding nothing but the maintenance lock, and
//      nobody who holds the gate shared waits for that lock (inserts never take it).
//   2. A flusher holding the gate shared waits for the commit queue's thread, which
//      needs only LMDB's writer lock: its jobs (commit_insert, extent and namespace
//      updates) never take the gate, nor a file's io lock, nor the live-inode lock
//      while waiting. gc does not hold the writer lock while it waits for the gate
//      (its transaction begins after), so the queue commits and the flusher lets go.
//   3. Once gc holds the gate, it waits for the writer lock, which the queue gives up
//      within a commit interval; new inserts wait on the gate's entry mutex meanwhile,
//      holding a file's io lock perhaps, but the queue's thread needs neither.
// So every wait ends. What would break it: a commit-queue job that inserts into the
// store (it would wait on the gate while holding the writer lock gc needs).
JobTable::Body ControlRequests::job_body(const std::string& kind, const json& request) {
  if (kind == "pack") {
    return [this](const ProgressFn& progress) {
      PackReport r = store_.pack(progress);
      packer_.recount();
      return json{
          {"objects", r.objects}, {"raw_bytes", r.raw_bytes}, {"stored_bytes", r.stored_bytes}};
    };
  }
  if (kind == "gc") {
    return [this](const ProgressFn& progress) {
      GcReport r = store_.gc(progress);
      packer_.recount();
      return json{{"loose_removed", r.loose_removed},
                  {"packed_dropped", r.packed_dropped},
                  {"bytes_freed", r.bytes_freed}};
    };
  }
  if (kind == "repack") {
    RepackOptions options;
    if (auto it = request.find("threshold"); it != request.end()) {
      if (!it->is_number() || it->get<double>() < 0 || it->get<double>() > 100)
        throw std::invalid_argument("\"threshold\" must be a percentage from 0 to 100");
      options.dead_threshold = it->get<double>() / 100.0;
    }
    return [this, options](const ProgressFn& progress) {
      RepackReport r = store_.repack(options, progress);
      return json{{"packs_rewritten", r.packs_rewritten},
                  {"packs_removed", r.packs_removed},
                  {"bytes_before", r.bytes_before},
                  {"bytes_after", r.bytes_after}};
    };
  }
  return [this](const ProgressFn& progress) { return verify_result(store_.verify(progress)); };
}

void ControlRequests::run_job(const std::string& kind, const json& request,
                              const std::function<bool(const json&)>& send) {
  const bool wait = wants_wait(request);
  const std::uint64_t id = jobs_.start(kind, job_body(kind, request));
  if (wait) {
    wait_for_job(id, send);
  } else {
    send(json{{"ok", true}, {"job", jobs_.get(id)->to_json()}});
  }
}

void ControlRequests::wait_for_job(std::uint64_t id, const std::function<bool(const json&)>& send) {
  std::pair<std::uint64_t, std::uint64_t> shown{~0ull, ~0ull};
  for (;;) {
    auto job = jobs_.wait(id, kProgressEvery);
    if (!job) throw std::runtime_error("job " + std::to_string(id) + " was dropped");
    if (job->finished()) {
      send(json{{"ok", true}, {"job", job->to_json()}});
      return;
    }
    if (std::pair(job->done, job->total) != shown) {
      shown = {job->done, job->total};
      json progress;
      progress["progress"] = {{"job", id}, {"done", job->done}, {"total", job->total}};
      if (!send(progress)) return;  // the client went away; the job goes on
    }
  }
}

}  // namespace casfs
