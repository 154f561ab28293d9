#include "store/failpoint.h"

#include <atomic>

namespace casfs {

namespace {
std::function<void(std::string_view)>& hook_storage() {
  static std::function<void(std::string_view)> hook;
  return hook;
}
std::atomic<bool> hook_installed{false};
}  // namespace

void failpoint(std::string_view name) {
  if (hook_installed.load(std::memory_order_acquire)) hook_storage()(name);
}

void set_failpoint_hook(std::function<void(std::string_view)> hook) {
  hook_installed.store(false, std::memory_order_release);
  hook_storage() = std::move(hook);
  if (hook_storage()) hook_installed.store(true, std::memory_order_release);
}

}  // namespace casfs
