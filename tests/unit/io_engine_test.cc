#include "store/io_engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "store/error.h"
#include "store/unique_fd.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::byte>;
using ::casfs::testing::random_bytes;
using ::casfs::testing::TempDir;
using ::casfs::testing::test_seed;

void put_file(const fs::path& path, const Bytes& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

Bytes get_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Bytes out(s.size());
  if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
  return out;
}

UniqueFd open_or_die(const fs::path& path, int flags) {
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC, 0644));
  EXPECT_TRUE(fd) << path << ": " << std::strerror(errno);
  return fd;
}

// The bytes a read of [offset, offset+len) of `file` should return.
Bytes expected_range(const Bytes& file, std::uint64_t offset, std::size_t len) {
  if (offset >= file.size()) return {};
  std::size_t n = std::min<std::size_t>(len, file.size() - offset);
  return Bytes(file.begin() + static_cast<std::ptrdiff_t>(offset),
               file.begin() + static_cast<std::ptrdiff_t>(offset + n));
}

Bytes prefix(std::span<const std::byte> buf, std::int64_t n) {
  return Bytes(buf.begin(), buf.begin() + n);
}

struct EngineParam {
  const char* name;
  std::function<std::unique_ptr<IoEngine>(unsigned depth)> make;
};

void PrintTo(const EngineParam& param, std::ostream* os) {
  *os << param.name;
}

class IoEngineTest : public ::testing::TestWithParam<EngineParam> {
 protected:
  void SetUp() override { engine_ = GetParam().make(64); }
  std::unique_ptr<IoEngine> engine_;
  TempDir dir_;
};

TEST_P(IoEngineTest, ReportsItsKind) {
  if (std::string(GetParam().name) == "uring") {
    EXPECT_EQ(engine_->kind(), IoEngineKind::kUring);
    EXPECT_STREQ(engine_->name(), "io_uring");
    EXPECT_EQ(engine_->queue_depth(), 64u);
  } else {
    EXPECT_EQ(engine_->kind(), IoEngineKind::kSync);
    EXPECT_STREQ(engine_->name(), "sync");
    EXPECT_GE(engine_->queue_depth(), 1u);
  }
}

// Many random ranges of one file, some running past EOF, some starting at or beyond it.
void check_random_reads(IoEngine& engine, const fs::path& dir, std::size_t count) {
  std::mt19937_64 rng(test_seed());
  Bytes file = random_bytes(rng, 1'000'003);
  put_file(dir / "data", file);
  UniqueFd fd = open_or_die(dir / "data", O_RDONLY);

  std::vector<ReadOp> ops(count);
  std::vector<Bytes> bufs(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::uint64_t offset;
    std::size_t len = std::uniform_int_distribution<std::size_t>(0, 70'000)(rng);
    switch (i % 10) {
      case 0:
        offset = file.size();  // exactly at EOF
        break;
      case 1:
        offset = file.size() + rng() % 5000;  // beyond EOF
        break;
      case 2:
        offset = file.size() - rng() % 1000 - 1;  // runs past EOF
        len = 2000;
        break;
      default:
        offset = rng() % file.size();
    }
    bufs[i].assign(len, std::byte{0xEE});
    ops[i] = ReadOp{.fd = fd.get(), .offset = offset, .buf = bufs[i], .result = 12345};
  }
  engine.read(ops);
  for (std::size_t i = 0; i < count; ++i) {
    Bytes want = expected_range(file, ops[i].offset, bufs[i].size());
    ASSERT_EQ(ops[i].result, static_cast<std::int64_t>(want.size()))
        << "op " << i << " offset " << ops[i].offset << " len " << bufs[i].size();
    ASSERT_EQ(prefix(bufs[i], ops[i].result), want) << "op " << i;
  }
}

TEST_P(IoEngineTest, ReadsManyRandomRanges) {
  check_random_reads(*engine_, dir_.path(), 500);
}

TEST_P(IoEngineTest, BatchLargerThanQueueDepth) {
  auto small = GetParam().make(8);
  check_random_reads(*small, dir_.path(), 1000);
}

// A thread that polls for its reads (ReadPolling) gets the same bytes, whether the
// reads complete within the budget or it runs out (1 µs) and the thread sleeps.
TEST_P(IoEngineTest, ReadsWhilePollingForCompletions) {
  for (const auto budget : {std::chrono::microseconds{200}, std::chrono::microseconds{1}}) {
    SCOPED_TRACE(::testing::Message() << "budget " << budget.count() << " us");
    const ReadPolling polling(budget);
    check_random_reads(*engine_, dir_.path(), 300);
    std::mt19937_64 rng(test_seed());
    std::vector<Bytes> contents(40);
    std::vector<std::string> names(40);
    std::vector<Bytes> bufs(40);
    std::vector<ReadFileOp> ops(40);
    for (std::size_t i = 0; i < ops.size(); ++i) {
      names[i] = (dir_.path() / ("p" + std::to_string(i))).string();
      contents[i] = random_bytes(rng, rng() % 20'000);
      put_file(names[i], contents[i]);
      bufs[i].assign(contents[i].size() + 100, std::byte{0xEE});
      ops[i] = {.path = names[i].c_str(), .buf = bufs[i]};
    }
    engine_->read_files(ops);
    for (std::size_t i = 0; i < ops.size(); ++i) {
      ASSERT_EQ(ops[i].result, static_cast<std::int64_t>(contents[i].size())) << names[i];
      ASSERT_EQ(prefix(bufs[i], ops[i].result), contents[i]) << names[i];
    }
  }
}

TEST(ReadPolling, IsScopedToItsThreadAndNests) {
  using std::chrono::microseconds;
  EXPECT_EQ(ReadPolling::budget(), microseconds{0});
  {
    const ReadPolling outer(microseconds{200});
    EXPECT_EQ(ReadPolling::budget(), microseconds{200});
    {
      const ReadPolling inner(microseconds{5});
      EXPECT_EQ(ReadPolling::budget(), microseconds{5});
    }
    EXPECT_EQ(ReadPolling::budget(), microseconds{200});
    microseconds elsewhere{-1};
    std::thread([&] { elsewhere = ReadPolling::budget(); }).join();
    EXPECT_EQ(elsewhere, microseconds{0});
  }
  EXPECT_EQ(ReadPolling::budget(), microseconds{0});
}

// Depth 1 leaves a single direct-descriptor slot for all the open→…→close chains.
TEST_P(IoEngineTest, DepthOneStillCompletesEverything) {
  std::mt19937_64 rng(test_seed());
  auto one = GetParam().make(1);
  std::vector<Bytes> data(20);
  std::vector<std::string> names(20);
  std::vector<WriteFileOp> writes(20);
  for (int i = 0; i < 20; ++i) {
    data[i] = random_bytes(rng, rng() % 3000);
    names[i] = (dir_.path() / ("d" + std::to_string(i))).string();
    writes[i] = {.path = names[i].c_str(), .data = data[i], .sync = i % 2 == 0};
  }
  one->write_files(writes);
  std::vector<Bytes> back(20, Bytes(4000));
  std::vector<ReadFileOp> reads(20);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(writes[i].result, static_cast<std::int64_t>(data[i].size()));
    reads[i] = {.path = names[i].c_str(), .buf = back[i]};
  }
  one->read_files(reads);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(reads[i].result, static_cast<std::int64_t>(data[i].size()));
    EXPECT_EQ(prefix(back[i], reads[i].result), data[i]);
  }
}

TEST_P(IoEngineTest, EmptyBatchesAreFine) {
  engine_->read({});
  engine_->write({});
  engine_->read_files({});
  engine_->write_files({});
  engine_->sync({}, true, {});
}

TEST_P(IoEngineTest, BadFdGivesNegativeErrnoPerOp) {
  Bytes file = {std::byte{1}, std::byte{2}, std::byte{3}};
  put_file(dir_.path() / "f", file);
  UniqueFd fd = open_or_die(dir_.path() / "f", O_RDONLY);
  Bytes a(3), b(3), c(3);
  std::vector<ReadOp> reads = {{.fd = fd.get(), .offset = 0, .buf = a},
                               {.fd = -1, .offset = 0, .buf = b},
                               {.fd = 999'999, .offset = 0, .buf = c}};
  engine_->read(reads);
  EXPECT_EQ(reads[0].result, 3);
  EXPECT_EQ(a, file);
  EXPECT_EQ(reads[1].result, -EBADF);
  EXPECT_EQ(reads[2].result, -EBADF);

  // Writing to a read-only descriptor fails without affecting the file.
  std::vector<WriteOp> writes = {{.fd = fd.get(), .offset = 0, .data = a},
                                 {.fd = -1, .offset = 0, .data = a}};
  engine_->write(writes);
  EXPECT_EQ(writes[0].result, -EBADF);
  EXPECT_EQ(writes[1].result, -EBADF);
  EXPECT_EQ(get_file(dir_.path() / "f"), file);
}

TEST_P(IoEngineTest, WriteThenReadBack) {
  std::mt19937_64 rng(test_seed());
  UniqueFd fd = open_or_die(dir_.path() / "w", O_RDWR | O_CREAT | O_TRUNC);
  // 300 chunks of varying size laid end to end, written out of order in one batch.
  std::vector<Bytes> chunks;
  std::vector<std::uint64_t> offsets;
  Bytes whole;
  for (int i = 0; i < 300; ++i) {
    offsets.push_back(whole.size());
    chunks.push_back(random_bytes(rng, rng() % 20'000));
    whole.insert(whole.end(), chunks.back().begin(), chunks.back().end());
  }
  std::vector<WriteOp> writes;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    writes.push_back({.fd = fd.get(), .offset = offsets[i], .data = chunks[i], .result = -1});
  }
  std::shuffle(writes.begin(), writes.end(), rng);
  engine_->write(writes);
  for (const WriteOp& w : writes) ASSERT_EQ(w.result, static_cast<std::int64_t>(w.data.size()));
  EXPECT_EQ(get_file(dir_.path() / "w"), whole);

  std::vector<Bytes> back(chunks.size());
  std::vector<ReadOp> reads;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    back[i].resize(chunks[i].size());
    reads.push_back({.fd = fd.get(), .offset = offsets[i], .buf = back[i]});
  }
  engine_->read(reads);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    ASSERT_EQ(reads[i].result, static_cast<std::int64_t>(chunks[i].size()));
    ASSERT_EQ(back[i], chunks[i]) << "chunk " << i;
  }
}

TEST_P(IoEngineTest, LargeWriteAndReadInOneOp) {
  std::mt19937_64 rng(test_seed());
  Bytes big = random_bytes(rng, 24 << 20);
  UniqueFd fd = open_or_die(dir_.path() / "big", O_RDWR | O_CREAT | O_TRUNC);
  std::vector<WriteOp> w = {{.fd = fd.get(), .offset = 4096, .data = big}};
  engine_->write(w);
  ASSERT_EQ(w[0].result, static_cast<std::int64_t>(big.size()));
  Bytes back(big.size() + 100);
  std::vector<ReadOp> r = {{.fd = fd.get(), .offset = 4096, .buf = back}};
  engine_->read(r);
  ASSERT_EQ(r[0].result, static_cast<std::int64_t>(big.size()));
  EXPECT_TRUE(std::equal(big.begin(), big.end(), back.begin()));
}

TEST_P(IoEngineTest, ReadFilesManyWithOneMissing) {
  std::mt19937_64 rng(test_seed());
  constexpr int kFiles = 300;  // several times the queue depth
  UniqueFd dir_fd = open_or_die(dir_.path(), O_RDONLY | O_DIRECTORY);
  std::vector<Bytes> contents(kFiles);
  std::vector<std::string> names(kFiles);
  for (int i = 0; i < kFiles; ++i) {
    names[i] = "obj-" + std::to_string(i);
    contents[i] = random_bytes(rng, i % 7 == 0 ? 0 : rng() % 100'000);
    if (i != 137) put_file(dir_.path() / names[i], contents[i]);
  }
  std::string abs_path = (dir_.path() / names[5]).string();
  std::vector<Bytes> bufs(kFiles);
  std::vector<ReadFileOp> ops(kFiles);
  for (int i = 0; i < kFiles; ++i) {
    // Mix of exact sizes, generous buffers (short result at EOF), small prefixes and
    // reads from an offset.
    std::size_t size = contents[i].size();
    std::uint64_t offset = 0;
    switch (i % 4) {
      case 1:
        size += 1000;
        break;
      case 2:
        size /= 2;
        break;
      case 3:
        offset = contents[i].size() / 3;
        break;
    }
    bufs[i].assign(size, std::byte{0xEE});
    ops[i] = {.dir_fd = dir_fd.get(), .path = names[i].c_str(), .offset = offset, .buf = bufs[i]};
  }
  ops[5].dir_fd = ReadFileOp::AT_FDCWD_VALUE;
  ops[5].path = abs_path.c_str();
  engine_->read_files(ops);
  for (int i = 0; i < kFiles; ++i) {
    if (i == 137) {
      EXPECT_EQ(ops[i].result, -ENOENT);
      continue;
    }
    Bytes want = expected_range(contents[i], ops[i].offset, bufs[i].size());
    ASSERT_EQ(ops[i].result, static_cast<std::int64_t>(want.size())) << names[i];
    ASSERT_EQ(prefix(bufs[i], ops[i].result), want) << names[i];
  }

  // Slots and descriptors were all released: the same engine can do it again.
  std::vector<ReadFileOp> again(ops.begin(), ops.begin() + 10);
  for (auto& op : again) op.result = 4242;
  engine_->read_files(again);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(again[i].result, ops[i].result);
}

TEST_P(IoEngineTest, ReadFilesDirectoryAndBadDirFd) {
  Bytes buf(10);
  std::string sub = (dir_.path() / "sub").string();
  fs::create_directory(sub);
  std::vector<ReadFileOp> ops = {{.path = sub.c_str(), .buf = buf},
                                 {.dir_fd = 999'999, .path = "x", .buf = buf},
                                 {.path = "/nonexistent-dir/x", .buf = buf}};
  engine_->read_files(ops);
  EXPECT_EQ(ops[0].result, -EISDIR);
  EXPECT_EQ(ops[1].result, -EBADF);
  EXPECT_EQ(ops[2].result, -ENOENT);
}

void expect_final_file(const fs::path& path, const Bytes& want) {
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
  EXPECT_EQ(st.st_mode & 07777, 0444u) << path;
  EXPECT_EQ(get_file(path), want) << path;
}

TEST_P(IoEngineTest, WriteFilesWithAndWithoutRenameAndSync) {
  std::mt19937_64 rng(test_seed());
  fs::path tmp = dir_.path() / "tmp";
  fs::path objects = dir_.path() / "objects";
  fs::create_directory(tmp);
  fs::create_directory(objects);
  UniqueFd tmp_fd = open_or_die(tmp, O_RDONLY | O_DIRECTORY);
  UniqueFd objects_fd = open_or_die(objects, O_RDONLY | O_DIRECTORY);

  constexpr int kFiles = 200;
  std::vector<Bytes> data(kFiles);
  std::vector<std::string> names(kFiles), finals(kFiles);
  std::vector<WriteFileOp> ops(kFiles);
  for (int i = 0; i < kFiles; ++i) {
    // A few files beyond 1 MiB exercise the path the io_uring engine does by syscalls.
    std::size_t size = i % 50 == 3 ? (1 << 20) + rng() % 300'000 : rng() % 40'000;
    if (i % 17 == 0) size = 0;
    data[i] = random_bytes(rng, size);
    names[i] = "t" + std::to_string(i);
    finals[i] = "o" + std::to_string(i);
    ops[i] = {.dir_fd = tmp_fd.get(), .path = names[i].c_str(), .data = data[i]};
    ops[i].sync = i % 3 == 0;
    if (i % 2 == 0) {
      ops[i].rename_dir_fd = objects_fd.get();
      ops[i].rename_path = finals[i].c_str();
    }
    ops[i].result = -99;
  }
  engine_->write_files(ops);
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_EQ(ops[i].result, static_cast<std::int64_t>(data[i].size())) << i;
    if (i % 2 == 0) {
      EXPECT_FALSE(fs::exists(tmp / names[i])) << names[i];
      expect_final_file(objects / finals[i], data[i]);
    } else {
      expect_final_file(tmp / names[i], data[i]);
    }
  }
}

TEST_P(IoEngineTest, WriteFilesExclusiveCreateKeepsExistingFile) {
  std::mt19937_64 rng(test_seed());
  Bytes old_data = random_bytes(rng, 5000);
  Bytes new_data = random_bytes(rng, 7000);
  put_file(dir_.path() / "existing", old_data);
  std::string existing = (dir_.path() / "existing").string();
  std::string fresh = (dir_.path() / "fresh").string();
  std::vector<WriteFileOp> ops = {
      {.path = existing.c_str(), .data = new_data, .sync = true},
      {.path = fresh.c_str(), .data = new_data},
  };
  engine_->write_files(ops);
  EXPECT_EQ(ops[0].result, -EEXIST);
  EXPECT_EQ(get_file(existing), old_data);
  EXPECT_EQ(ops[1].result, 7000);
  expect_final_file(fresh, new_data);
}

TEST_P(IoEngineTest, WriteFilesFailedRenameRemovesTheFile) {
  Bytes data(100, std::byte{7});
  std::string path = (dir_.path() / "t").string();
  std::string target = (dir_.path() / "no-such-dir" / "o").string();
  std::string bad_dir = (dir_.path() / "no-such-dir" / "t").string();
  std::vector<WriteFileOp> ops = {
      {.path = path.c_str(), .data = data, .rename_path = target.c_str()},
      {.path = bad_dir.c_str(), .data = data},
  };
  engine_->write_files(ops);
  EXPECT_EQ(ops[0].result, -ENOENT);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(ops[1].result, -ENOENT);
}

TEST_P(IoEngineTest, RemoveFilesManyWithOneMissing) {
  const fs::path& dir = dir_.path();
  std::vector<std::string> names;
  for (int i = 0; i < 300; ++i) {
    names.push_back("f" + std::to_string(i));
    put_file(dir / names.back(), Bytes(10, std::byte{1}));
  }
  names.push_back("missing");
  put_file(dir / "kept", Bytes(3, std::byte{2}));
  UniqueFd dfd = open_or_die(dir, O_RDONLY | O_DIRECTORY);
  std::vector<RemoveFileOp> ops(names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    ops[i].dir_fd = dfd.get();
    ops[i].path = names[i].c_str();
    ops[i].result = 1;
  }
  engine_->remove_files(ops);
  for (std::size_t i = 0; i + 1 < names.size(); ++i) {
    EXPECT_EQ(ops[i].result, 0) << names[i];
    EXPECT_FALSE(fs::exists(dir / names[i])) << names[i];
  }
  EXPECT_EQ(ops.back().result, -ENOENT);
  EXPECT_TRUE(fs::exists(dir / "kept"));
}

TEST_P(IoEngineTest, SyncResults) {
  UniqueFd a = open_or_die(dir_.path() / "a", O_RDWR | O_CREAT);
  UniqueFd b = open_or_die(dir_.path() / "b", O_RDWR | O_CREAT);
  ASSERT_EQ(::write(a.get(), "hello", 5), 5);
  for (bool data_only : {true, false}) {
    std::vector<int> fds = {a.get(), -1, b.get(), 999'999};
    std::vector<int> results(fds.size(), 77);
    engine_->sync(fds, data_only, results);
    EXPECT_EQ(results, (std::vector<int>{0, -EBADF, 0, -EBADF})) << "data_only=" << data_only;
  }
  // More fds than the queue depth.
  auto small = GetParam().make(8);
  std::vector<int> fds(100, a.get());
  std::vector<int> results(100, 77);
  small->sync(fds, true, results);
  EXPECT_EQ(results, std::vector<int>(100, 0));
}

TEST_P(IoEngineTest, ConcurrentCallersFromFourThreads) {
  std::mt19937_64 rng(test_seed());
  Bytes file = random_bytes(rng, 300'000);
  put_file(dir_.path() / "shared", file);
  UniqueFd fd = open_or_die(dir_.path() / "shared", O_RDONLY);
  std::vector<std::uint64_t> seeds;
  for (int t = 0; t < 4; ++t) seeds.push_back(rng());

  std::vector<std::string> failures(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 r(seeds[t]);
      for (int round = 0; round < 20 && failures[t].empty(); ++round) {
        // Range reads of the shared file.
        std::vector<Bytes> bufs(50);
        std::vector<ReadOp> reads(50);
        for (int i = 0; i < 50; ++i) {
          bufs[i].resize(r() % 10'000);
          reads[i] = {.fd = fd.get(), .offset = r() % file.size(), .buf = bufs[i]};
        }
        engine_->read(reads);
        for (int i = 0; i < 50; ++i) {
          Bytes want = expected_range(file, reads[i].offset, bufs[i].size());
          if (reads[i].result != static_cast<std::int64_t>(want.size()) ||
              prefix(bufs[i], reads[i].result) != want) {
            failures[t] = "read mismatch";
          }
        }
        // Whole files written and read back under per-thread names.
        std::vector<Bytes> data(10);
        std::vector<std::string> names(10);
        std::vector<WriteFileOp> writes(10);
        for (int i = 0; i < 10; ++i) {
          data[i] = random_bytes(r, r() % 5000);
          names[i] = (dir_.path() / ("c" + std::to_string(t) + "-" + std::to_string(round) + "-" +
                                     std::to_string(i)))
                         .string();
          writes[i] = {.path = names[i].c_str(), .data = data[i]};
        }
        engine_->write_files(writes);
        std::vector<Bytes> back(10, Bytes(6000));
        std::vector<ReadFileOp> file_reads(10);
        for (int i = 0; i < 10; ++i) {
          if (writes[i].result != static_cast<std::int64_t>(data[i].size())) {
            failures[t] = "write_files result " + std::to_string(writes[i].result);
          }
          file_reads[i] = {.path = names[i].c_str(), .buf = back[i]};
        }
        engine_->read_files(file_reads);
        for (int i = 0; i < 10; ++i) {
          if (prefix(back[i], std::max<std::int64_t>(file_reads[i].result, 0)) != data[i]) {
            failures[t] = "read_files mismatch, result " + std::to_string(file_reads[i].result);
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
}

INSTANTIATE_TEST_SUITE_P(
    Engines, IoEngineTest,
    ::testing::Values(EngineParam{"uring", [](unsigned depth) { return make_uring_engine(depth); }},
                      EngineParam{"sync",
                                  [](unsigned depth) {
                                    // A pool smaller than the batch.
                                    return make_sync_engine(std::min(depth, 4u));
                                  }}),
    [](const ::testing::TestParamInfo<EngineParam>& p) { return std::string(p.param.name); });

// Restores CASFS_IO when a test that changes it ends.
class ScopedEnv {
 public:
  explicit ScopedEnv(const char* name) : name_(name) {
    if (const char* v = std::getenv(name)) old_ = v;
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(MakeIoEngine, HonoursCasfsIo) {
  TempDir dir;
  ScopedEnv restore("CASFS_IO");

  ::setenv("CASFS_IO", "sync", 1);
  EXPECT_EQ(make_io_engine(dir.path())->kind(), IoEngineKind::kSync);

  ::setenv("CASFS_IO", "uring", 1);
  auto uring = make_io_engine(dir.path());
  EXPECT_EQ(uring->kind(), IoEngineKind::kUring);
  EXPECT_EQ(uring->queue_depth(), queue_depth_for(dir.path()));

  // Unset: io_uring, which works on this kernel.
  ::unsetenv("CASFS_IO");
  EXPECT_EQ(make_io_engine(dir.path())->kind(), IoEngineKind::kUring);

  ::setenv("CASFS_IO", "bogus", 1);
  EXPECT_THROW(make_io_engine(dir.path()), StoreError);
}

TEST(MakeIoEngine, EngineFromFactoryWorks) {
  TempDir dir;
  auto engine = make_io_engine(dir.path());
  Bytes data = {std::byte{'o'}, std::byte{'k'}};
  std::string path = (dir.path() / "f").string();
  std::vector<WriteFileOp> w = {{.path = path.c_str(), .data = data}};
  engine->write_files(w);
  ASSERT_EQ(w[0].result, 2);
  Bytes back(10);
  std::vector<ReadFileOp> r = {{.path = path.c_str(), .buf = back}};
  engine->read_files(r);
  ASSERT_EQ(r[0].result, 2);
  EXPECT_EQ(prefix(back, 2), data);
}

TEST(QueueDepthFor, RealDiskVirtualFsAndMissingPath) {
  TempDir dir;
  unsigned depth = queue_depth_for(dir.path());
  EXPECT_GE(depth, 8u);
  EXPECT_LE(depth, 128u);
  EXPECT_EQ(queue_depth_for("/proc"), 64u);
  EXPECT_EQ(queue_depth_for(dir.path() / "does-not-exist"), 64u);
}

}  // namespace
}  // namespace casfs
