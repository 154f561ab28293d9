// What the daemon does for each control request (fs/control_protocol.h): status,
// flush, and the maintenance jobs, run through a JobTable. The socket side lives in
// control_server.cc; this file knows nothing of sockets.
//
// Deadlocks: requests run on the control server's threads and on job threads, none
// of which holds anything the commit queue's thread needs. The store's maintenance
// jobs wait for LMDB's writer lock while the commit queue keeps a transaction open
// (at most a commit interval), and for each other through the store's maintenance
// lock; flush waits for the commit queue. None of them holds the loose gate, a file
// lock or the live-inode table while it waits, so no cycle can form.
#pragma once

#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "fs/filesystem.h"
#include "fs/jobs.h"
#include "fs/object_users.h"
#include "store/background_packer.h"
#include "store/store.h"

namespace casfs {

// One request line checked for the protocol's shape (a JSON object with a string
// "cmd"): on success `error` is empty. Separate from ControlRequests so that
// tests/fuzz can feed it arbitrary bytes without a store.
struct ParsedControlRequest {
  nlohmann::ordered_json request;
  std::string cmd;
  std::string error;
};
ParsedControlRequest parse_control_request(std::string_view line);

class ControlRequests {
 public:
  // Opens the tables verify's report reads: call at start-up.
  ControlRequests(Store& store, Filesystem& fs, BackgroundPacker& packer, std::string mountpoint);
  // Stops the jobs still running (at their next batch) and waits for them.
  ~ControlRequests() = default;
  ControlRequests(const ControlRequests&) = delete;
  ControlRequests& operator=(const ControlRequests&) = delete;

  // Answers one request line. `send` writes one reply line and returns false once
  // the client has gone (a waiting request then stops waiting; its job goes on).
  void handle(std::string_view line,
              const std::function<bool(const nlohmann::ordered_json&)>& send);

  // Jobs stop at their next batch; waiting requests get their final line soon after.
  void request_stop() { jobs_.request_stop(); }

  // Replies for failures, shared with the server.
  static nlohmann::ordered_json error_reply(const std::string& message);

 private:
  nlohmann::ordered_json status();
  nlohmann::ordered_json packer_status();
  JobTable::Body job_body(const std::string& kind, const nlohmann::ordered_json& request);
  nlohmann::ordered_json verify_result(const VerifyReport& report);
  // Starts (or joins) a job; with "wait", streams progress until it ends.
  void run_job(const std::string& kind, const nlohmann::ordered_json& request,
               const std::function<bool(const nlohmann::ordered_json&)>& send);
  void wait_for_job(std::uint64_t id,
                    const std::function<bool(const nlohmann::ordered_json&)>& send);

  Store& store_;
  Filesystem& fs_;
  BackgroundPacker& packer_;
  const std::string mountpoint_;
  // Absolute now: the daemon leaves its working directory once the mount is up.
  const std::string store_dir_;
  ObjectUsers users_;
  std::mutex status_mutex_;  // one index walk at a time, however many clients ask
  JobTable jobs_;            // last: its destructor waits for jobs that use the rest
};

}  // namespace casfs
