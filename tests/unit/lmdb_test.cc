// The LMDB environment as the store and the filesystem open it.
#include "store/lmdb.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

// The VmFlags line of this process's mapping of `file`, from /proc/self/smaps ("" if
// the file is not mapped).
std::string mapping_flags(const std::filesystem::path& file) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_mapping = false;
  while (std::getline(smaps, line)) {
    // A mapping's header line: "start-end perms offset dev inode path".
    std::istringstream fields(line);
    std::string range, perms, offset, device, inode, path;
    if (fields >> range >> perms >> offset >> device >> inode &&
        range.find('-') != std::string::npos && range.find(':') == std::string::npos) {
      fields >> path;
      in_mapping = path == file.string();
      continue;
    }
    if (in_mapping && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

// A cold walk of a tree faults in the index's pages in order; with readahead they come
// in clusters. Random-read advice (VmFlags "rr", what MDB_NORDAHEAD sets) is for an
// index larger than half the memory, which a test's is not.
TEST(LmdbEnvTest, AnIndexThatFitsInMemoryIsReadAhead) {
  testing::TempDir dir;
  LmdbEnv env(dir.path() / "meta", true);
  const MDB_dbi dbi = env.open_db("t");
  {
    LmdbTxn txn = LmdbTxn::write(env);
    const std::string value(100, 'v');
    for (int i = 0; i < 1000; ++i) {
      const std::string key = "key" + std::to_string(i);
      MDB_val k{key.size(), const_cast<char*>(key.data())};
      MDB_val v{value.size(), const_cast<char*>(value.data())};
      ASSERT_EQ(mdb_put(txn.get(), dbi, &k, &v, 0), 0);
    }
    txn.commit();
  }
  const std::string flags =
      mapping_flags(std::filesystem::canonical(dir.path() / "meta" / "data.mdb"));
  ASSERT_FALSE(flags.empty()) << "data.mdb is not mapped";
  EXPECT_EQ(flags.find(" rr"), std::string::npos) << flags;
}

}  // namespace
}  // namespace casfs
