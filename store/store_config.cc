#include "store/store_config.h"

#include <fcntl.h>
#include <sys/random.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>

#include "store/error.h"
#include "store/unique_fd.h"

namespace casfs {

namespace {

std::string random_uuid() {
  std::array<unsigned char, 16> b{};
  if (::getrandom(b.data(), b.size(), 0) != static_cast<ssize_t>(b.size())) {
    throw_errno("getrandom");
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  char out[37];
  std::snprintf(out, sizeof(out),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

}  // namespace

StoreConfig StoreConfig::create(const StoreSettings& settings) {
  StoreConfig config;
  config.uuid = random_uuid();
  config.settings = settings;
  return config;
}

StoreConfig StoreConfig::load(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    throw StoreError(ENOENT, "store " + dir.string() +
                                 " does not exist; create it with `casfs store init " +
                                 dir.string() + "`");
  }
  if (!std::filesystem::is_directory(dir, ec)) {
    throw StoreError(ENOTDIR, dir.string() + " is not a directory, so not a casfs store");
  }
  auto file = dir / "casfs.json";
  std::ifstream in(file);
  if (!in) {
    throw StoreError(EINVAL, dir.string() + " is not a casfs store (no readable casfs.json); " +
                                 "create one with `casfs store init`");
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw StoreError(EIO, "cannot read " + file.string());
  return parse(text, dir);
}

namespace {

// nlohmann's get<T>() casts any number it finds, so a float, a negative or a number
// too large for T gives undefined behaviour or a silently wrong setting. A setting is
// a whole number in T's range, or the store's settings are refused.
template <typename T>
T integer_setting(const nlohmann::json& value, const std::string& name,
                  const std::filesystem::path& file) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (std::in_range<T>(v)) return static_cast<T>(v);
  } else if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if (std::in_range<T>(v)) return static_cast<T>(v);
  }
  throw StoreError(EINVAL, file.string() + ": " + name + " must be a whole number from " +
                               std::to_string(std::numeric_limits<T>::min()) + " to " +
                               std::to_string(std::numeric_limits<T>::max()) + ", not " +
                               value.dump() + "; restore casfs.json from a backup");
}

}  // namespace

StoreConfig StoreConfig::parse(std::string_view text, const std::filesystem::path& dir) {
  const auto file = dir / "casfs.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    throw StoreError(EINVAL, file.string() + " is not valid JSON; the store's settings are lost " +
                                 "and must be restored from a backup");
  }
  StoreConfig config;
  try {
    if (j.at("format").get<std::string>() != "casfs-store") {
      throw StoreError(EINVAL, dir.string() + " is not a casfs store (casfs.json has format " +
                                   j.at("format").dump() + ")");
    }
    config.version = integer_setting<int>(j.at("version"), "version", file);
    if (config.version > kStoreFormatVersion) {
      throw StoreError(EPROTONOSUPPORT,
                       "store " + dir.string() + " has format version " +
                           std::to_string(config.version) + ", newer than this casfs supports (" +
                           std::to_string(kStoreFormatVersion) + "); upgrade casfs");
    }
    if (config.version < 1) {
      throw StoreError(EINVAL, file.string() + " has an invalid format version " +
                                   std::to_string(config.version));
    }
    config.uuid = j.at("uuid").get<std::string>();
    const auto& c = j.at("compression");
    config.settings.compression_level =
        integer_setting<int>(c.at("level"), "compression.level", file);
    config.settings.pack_target_bytes = integer_setting<std::uint64_t>(
        j.at("packs").at("target_bytes"), "packs.target_bytes", file);
    const auto& ch = j.at("chunking");
    config.settings.chunk_min = integer_setting<std::uint32_t>(ch.at("min"), "chunking.min", file);
    config.settings.chunk_avg = integer_setting<std::uint32_t>(ch.at("avg"), "chunking.avg", file);
    config.settings.chunk_max = integer_setting<std::uint32_t>(ch.at("max"), "chunking.max", file);
  } catch (const nlohmann::json::exception& e) {
    throw StoreError(EINVAL, file.string() +
                                 " is missing a setting or has one of the wrong type (" +
                                 std::string(e.what()) + ")");
  }
  return config;
}

void StoreConfig::save(const std::filesystem::path& dir) const {
  nlohmann::json j = {
      {"format", "casfs-store"},
      {"version", version},
      {"uuid", uuid},
      {"compression", {{"codec", "zstd"}, {"level", settings.compression_level}}},
      {"packs", {{"target_bytes", settings.pack_target_bytes}}},
      {"chunking",
       {{"algorithm", "fastcdc"},
        {"min", settings.chunk_min},
        {"avg", settings.chunk_avg},
        {"max", settings.chunk_max}}},
  };
  std::string text = j.dump(2) + "\n";
  auto tmp = dir / "casfs.json.tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) throw_errno("cannot write " + tmp.string());
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fsync(fd.get()) != 0) {
    throw_errno("cannot write " + tmp.string());
  }
  fd.reset();
  std::filesystem::rename(tmp, dir / "casfs.json");
  // The rename itself must be durable too: until casfs.json is there, the directory
  // is not a store.
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd || ::fsync(dir_fd.get()) != 0) throw_errno("cannot sync " + dir.string());
}

}  // namespace casfs
