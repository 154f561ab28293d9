// Request lines as read from the control socket (fs/control_protocol.h): whatever a
// client sends, parsing either yields an object with a string "cmd" or a one-line
// error to send back, and a reply built from it can always be written out.
#include <nlohmann/json.hpp>
#include <string_view>

#include "fs/control_requests.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace casfs;
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  ParsedControlRequest parsed = parse_control_request(line);
  if (parsed.error.empty()) {
    FUZZ_CHECK(parsed.request.is_object());
    FUZZ_CHECK(parsed.request.at("cmd").get<std::string>() == parsed.cmd);
  } else {
    FUZZ_CHECK(parsed.error.find('\n') == std::string::npos);
  }
  // The daemon quotes unknown commands back; the reply must serialize whatever the
  // bytes were (control_server.cc replaces bad UTF-8).
  auto reply = ControlRequests::error_reply("unknown command \"" + parsed.cmd + "\"");
  std::string out = reply.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  FUZZ_CHECK(out.find('\n') == std::string::npos);
  return 0;
}
