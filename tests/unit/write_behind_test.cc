// Write-behind on a real store, through Filesystem (no FUSE): with a small dirty
// limit, writers on several threads keep writing one file while its earlier bytes
// are written out without the file's lock, as the kernel's writeback does to a
// large file being copied in. Readers, fsync, SEEK_DATA and a remount must see
// every byte as last written; a failed write-out must lose nothing.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "fs/filesystem.h"
#include "fs/fs_error.h"
#include "fs/long_work.h"
#include "store/error.h"
#include "store/failpoint.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

constexpr std::size_t kBlock = 16 << 10;
constexpr std::size_t kBlocks = 192;  // 3 MiB
constexpr unsigned kWriters = 4;
constexpr unsigned kRounds = 3;

// The content of `block` as written in `round` (0 = never written: zeros). Blocks
// differ from each other and from round to round, and compress poorly.
std::vector<std::byte> content(std::size_t block, unsigned round) {
  std::vector<std::byte> out(kBlock);
  if (round == 0) return out;
  std::mt19937_64 rng(block * 1000 + round);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

// Checks that `ino` holds `blocks` blocks, block b as written in round_of(b).
template <typename RoundOf>
void expect_blocks(Filesystem& fs, std::uint64_t ino, std::size_t blocks, RoundOf round_of,
                   const char* when) {
  EXPECT_EQ(fs.getattr(ino).size, blocks * kBlock) << when;
  std::vector<std::byte> got(kBlock);
  for (std::size_t b = 0; b < blocks; ++b) {
    ASSERT_EQ(fs.read(ino, b * kBlock, got), kBlock) << "block " << b << " " << when;
    ASSERT_EQ(got, content(b, round_of(b))) << "block " << b << " " << when;
  }
}

// Checks that `ino` holds all kBlocks blocks, each as written in round 1.
void expect_written_once(Filesystem& fs, std::uint64_t ino, const char* when) {
  expect_blocks(
      fs, ino, kBlocks, [](std::size_t) { return 1u; }, when);
}

FsOptions small_limits() {
  FsOptions options;
  options.dirty_file_limit = 256 << 10;  // a write-out every 16 blocks
  options.dirty_total_limit = 64ull << 20;
  return options;
}

using WriteBehindTest = testing::FreshStoreTest;

TEST_F(WriteBehindTest, ConcurrentWritersAndReadersSeeEveryByteAsLastWritten) {
  const Caller me{::getuid(), ::getgid(), 0};
  std::uint64_t ino;
  {
    Filesystem fs(*store_, small_limits());
    ino = fs.make_node(kRootIno, "big", S_IFREG | 0644, 0, me).ino;
    fs.open(ino, false);
    // Each writer owns the blocks b with b % kWriters == its number, and writes all
    // of them once per round, in its own random order; what a block holds is known
    // to be one of two rounds at any moment.
    std::vector<std::atomic<unsigned>> done(kBlocks);  // last round finished
    std::atomic<bool> writing{true};
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (unsigned w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        std::mt19937 rng(w + 1);
        std::vector<std::size_t> mine;
        for (std::size_t b = w; b < kBlocks; b += kWriters) mine.push_back(b);
        for (unsigned round = 1; round <= kRounds; ++round) {
          std::shuffle(mine.begin(), mine.end(), rng);
          for (std::size_t b : mine) {
            fs.write(ino, b * kBlock, content(b, round));
            done[b] = round;
          }
        }
      });
    }
    threads.emplace_back([&] {
      std::mt19937 rng(99);
      std::vector<std::byte> got(kBlock);
      while (writing) {
        const std::size_t b = rng() % kBlocks;
        const unsigned before = done[b];
        const std::size_t n = fs.read(ino, b * kBlock, got);
        const unsigned after = done[b];
        bool ok = false;
        // A block read while being rewritten is whole: the round before or after.
        for (unsigned r = before; r <= std::min(after + 1, kRounds) && !ok; ++r) {
          const auto want = content(b, r);
          ok = (n == kBlock && got == want) || (r == 0 && n < kBlock);
        }
        if (!ok) ++mismatches;
      }
    });
    threads.emplace_back([&] {
      while (writing) {
        fs.fsync(ino);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    for (unsigned w = 0; w < kWriters; ++w) threads[w].join();
    writing = false;
    for (std::size_t t = kWriters; t < threads.size(); ++t) threads[t].join();
    EXPECT_EQ(mismatches.load(), 0);

    expect_blocks(
        fs, ino, kBlocks, [](std::size_t) { return kRounds; }, "before the remount");
    EXPECT_EQ(fs.seek_data_hole(ino, 0, SEEK_DATA), 0u);
    EXPECT_EQ(fs.seek_data_hole(ino, 0, SEEK_HOLE), kBlocks * kBlock);
    fs.release(ino);
  }
  Filesystem fs(*store_, FsOptions{});
  expect_blocks(
      fs, ino, kBlocks, [](std::size_t) { return kRounds; }, "after the remount");
}

// Writers appending to a file, as the kernel's writeback does to a file being copied
// in, with readers and fsync beside them: each write-out leaves its last unfinished
// chunk to the next, which may cut its bytes while the one before still commits.
TEST_F(WriteBehindTest, AppendingWritersSeeEveryByteWhileWriteOutsOverlap) {
  const Caller me{::getuid(), ::getgid(), 0};
  std::uint64_t ino;
  {
    Filesystem fs(*store_, small_limits());
    ino = fs.make_node(kRootIno, "grows", S_IFREG | 0644, 0, me).ino;
    fs.open(ino, false);
    std::atomic<std::size_t> next{0};
    std::vector<std::atomic<bool>> done(kBlocks);
    std::atomic<bool> writing{true};
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (unsigned w = 0; w < kWriters; ++w) {
      threads.emplace_back([&] {
        for (std::size_t b; (b = next++) < kBlocks;) {
          fs.write(ino, b * kBlock, content(b, 1));
          done[b] = true;
        }
      });
    }
    threads.emplace_back([&] {
      std::mt19937 rng(7);
      std::vector<std::byte> got(kBlock);
      while (writing) {
        const std::size_t b = rng() % kBlocks;
        if (!done[b]) continue;
        if (fs.read(ino, b * kBlock, got) != kBlock || got != content(b, 1)) ++mismatches;
      }
    });
    threads.emplace_back([&] {
      while (writing) {
        fs.fsync(ino);
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
      }
    });
    for (unsigned w = 0; w < kWriters; ++w) threads[w].join();
    writing = false;
    for (std::size_t t = kWriters; t < threads.size(); ++t) threads[t].join();
    EXPECT_EQ(mismatches.load(), 0);
    expect_written_once(fs, ino, "before the remount");
    fs.release(ino);
  }
  Filesystem fs(*store_, FsOptions{});
  expect_written_once(fs, ino, "after the remount");
}

// A file written in order is stored in the chunks that one write-out of all of it
// gives: no write-out stores a last chunk that the next replaces, so no object is
// left unreferenced.
TEST_F(WriteBehindTest, SequentialWriteOutsReplaceNoChunk) {
  const Caller me{::getuid(), ::getgid(), 0};
  Filesystem fs(*store_, small_limits());
  const std::uint64_t ino = fs.make_node(kRootIno, "seq", S_IFREG | 0644, 0, me).ino;
  fs.open(ino, false);
  for (std::size_t b = 0; b < kBlocks; ++b) fs.write(ino, b * kBlock, content(b, 1));
  fs.fsync(ino);
  fs.release(ino);
  std::size_t objects = 0;
  store_->list([&](const ObjectInfo& info) {
    ++objects;
    EXPECT_GT(info.refcount, 0u) << "unreferenced object " << info.id.hex();
  });
  EXPECT_GT(objects, kBlocks * kBlock / (256 << 10));
  expect_written_once(fs, ino, "after fsync");
}

// A write-out that fails (here: the store refuses to write objects) puts its bytes
// back under those written since; once the cause is gone, all of them are stored.
TEST_F(WriteBehindTest, FailedWriteOutLosesNothing) {
  const Caller me{::getuid(), ::getgid(), 0};
  std::uint64_t ino;
  std::size_t written = 0;
  auto round_of = [](std::size_t b) { return b == 3 ? 2u : 1u; };
  {
    Filesystem fs(*store_, small_limits());
    ino = fs.make_node(kRootIno, "f", S_IFREG | 0644, 0, me).ino;
    fs.open(ino, false);
    for (; written < 8; ++written) fs.write(ino, written * kBlock, content(written, 1));
    set_failpoint_hook([](std::string_view name) {
      if (name == "insert.write_objects") throw StoreError(EIO, "refused by the test");
    });
    bool failed = false;
    while (written < 40 && !failed) {
      try {
        fs.write(ino, written * kBlock, content(written, 1));
      } catch (const std::exception&) {
        failed = true;
      }
      ++written;  // a write that fails to write out still holds its bytes
    }
    set_failpoint_hook({});
    EXPECT_TRUE(failed) << "no write-out failed while the store refused objects";
    // Written over after the failure: the newer bytes win.
    fs.write(ino, 3 * kBlock, content(3, 2));
    expect_blocks(fs, ino, written, round_of, "after the failure");
    fs.fsync(ino);
    fs.release(ino);
  }
  Filesystem fs(*store_, FsOptions{});
  expect_blocks(fs, ino, written, round_of, "after the remount");
}

// A write-out that fails while the next one already cuts its bytes: that one gives up
// too, both put their bytes back, and nothing is lost.
TEST_F(WriteBehindTest, FailureWithAWriteOutBehindLosesNothing) {
  const Caller me{::getuid(), ::getgid(), 0};
  std::uint64_t ino;
  {
    Filesystem fs(*store_, small_limits());
    ino = fs.make_node(kRootIno, "f", S_IFREG | 0644, 0, me).ino;
    fs.open(ino, false);
    static std::atomic<int> stages{0};
    stages = 0;
    // The first write-out's objects are refused after a while, in which the writers
    // fill the buffer again and the next write-out starts.
    set_failpoint_hook([](std::string_view name) {
      if (name != "insert.write_objects" || stages++ != 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      throw StoreError(EIO, "refused by the test");
    });
    std::atomic<std::size_t> next{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> writers;
    for (unsigned w = 0; w < kWriters; ++w) {
      writers.emplace_back([&] {
        for (std::size_t b; (b = next++) < kBlocks;) {
          try {
            fs.write(ino, b * kBlock, content(b, 1));
          } catch (const std::exception&) {
            ++failures;  // the bytes stay buffered
          }
        }
      });
    }
    for (auto& t : writers) t.join();
    set_failpoint_hook({});
    EXPECT_GE(failures.load(), 1);
    expect_written_once(fs, ino, "after the failure");
    fs.fsync(ino);
    fs.release(ino);
  }
  Filesystem fs(*store_, FsOptions{});
  expect_written_once(fs, ino, "after the remount");
}

// Files written out together lie in their intake pack in the order they were created,
// which is the order readdir lists them in: reading a tree back then reads the pack
// forwards, and the kernel's readahead merges the reads.
TEST_F(WriteBehindTest, FilesWrittenOutTogetherLieInCreationOrder) {
  const Caller me{::getuid(), ::getgid(), 0};
  FsOptions options;
  options.commit_interval = std::chrono::hours(1);  // the flusher leaves open files alone
  Filesystem fs(*store_, options);
  constexpr int kFiles = 40;
  std::vector<std::uint64_t> inos;
  std::vector<ObjectId> ids;
  for (int i = 0; i < kFiles; ++i) {
    const std::uint64_t ino =
        fs.make_node(kRootIno, "f" + std::to_string(i), S_IFREG | 0644, 0, me).ino;
    fs.open(ino, false);
    // One chunk each (below the smallest cut), different from every other file's.
    std::vector<std::byte> bytes = content(static_cast<std::size_t>(i), 1);
    bytes.resize(5000);
    fs.write(ino, 0, bytes);
    inos.push_back(ino);
    ids.push_back(Sha256::of(bytes));
  }
  fs.sync_all();
  std::optional<ObjectInfo> before;
  for (int i = 0; i < kFiles; ++i) {
    const std::optional<ObjectInfo> info = store_->stat(ids[i]);
    ASSERT_TRUE(info) << "file " << i;
    ASSERT_EQ(info->tier, Tier::kPacked) << "file " << i << " is not in an intake pack";
    if (before) {
      ASSERT_EQ(info->pack_id, before->pack_id) << "file " << i;
      EXPECT_GT(info->offset, before->offset) << "file " << i << " lies before file " << i - 1;
    }
    before = info;
  }
  for (std::uint64_t ino : inos) fs.release(ino);
}

// A thread serving FUSE requests at the idle policy must hear before the filesystem
// does long work on its behalf (long_work.h): a write-out past the file's dirty
// limit, and an fsync.
TEST_F(WriteBehindTest, LongWorkIsAnnouncedToTheWritingThread) {
  const Caller me{::getuid(), ::getgid(), 0};
  Filesystem fs(*store_, small_limits());
  const std::uint64_t ino = fs.make_node(kRootIno, "f", S_IFREG | 0644, 0, me).ino;
  fs.open(ino, false);
  int announced = 0;
  set_long_work_hook([](void* count) { ++*static_cast<int*>(count); }, &announced);
  // small_limits() writes out every 16 blocks.
  for (std::size_t b = 0; b < 20; ++b) fs.write(ino, b * kBlock, content(b, 1));
  const int after_write_out = announced;
  EXPECT_GT(after_write_out, 0) << "the write-out was not announced";
  fs.write(ino, 20 * kBlock, content(20, 1));
  fs.fsync(ino);
  EXPECT_GT(announced, after_write_out) << "the fsync was not announced";
  set_long_work_hook(nullptr, nullptr);
  fs.release(ino);
}

}  // namespace
}  // namespace casfs
