// A store's status as JSON: the keys of `casfs store status --json`, which
// `casfsctl status --json` also starts with. One function, so the two outputs
// cannot drift apart.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "store/store.h"

namespace casfs {

// "store", "io_engine", "objects", "bytes" and "packs", in that order.
nlohmann::ordered_json status_json(const std::string& store_dir, const StoreStatus& s);

}  // namespace casfs
