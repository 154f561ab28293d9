#include "fs/long_work.h"

namespace casfs {

namespace {
thread_local LongWorkHook current_hook = nullptr;
thread_local void* current_context = nullptr;
}  // namespace

void set_long_work_hook(LongWorkHook hook, void* context) {
  current_hook = hook;
  current_context = context;
}

void before_long_work() {
  if (current_hook != nullptr) current_hook(current_context);
}

}  // namespace casfs
