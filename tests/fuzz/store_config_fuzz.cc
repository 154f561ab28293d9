// STORE/casfs.json as read back from disk (store/store_config.h): anything that is not
// a store's settings must be refused with StoreError, and settings that are accepted
// must survive a save and a load unchanged.
#include "store/chunker.h"
#include "store/error.h"
#include "store/store_config.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace casfs;
  StoreConfig config;
  try {
    config = StoreConfig::parse(std::string_view(reinterpret_cast<const char*>(data), size),
                                "/fuzz-store");
  } catch (const StoreError&) {
    return 0;
  }
  FUZZ_CHECK(config.version >= 1 && config.version <= kStoreFormatVersion);
  // What the store builds from the settings refuses bad ones on its own.
  try {
    Chunker chunker(ChunkerParams{config.settings.chunk_min, config.settings.chunk_avg,
                                  config.settings.chunk_max});
  } catch (const StoreError&) {
  }
  return 0;
}
