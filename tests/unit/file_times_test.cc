// File times come from the kernel's clock for them (CLOCK_REALTIME_COARSE, what
// current_time() reads), not the finer CLOCK_REALTIME: the kernel stamps writes in its
// writeback cache itself, and the two must agree. Through Filesystem (no FUSE), on a
// real store.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include "fs/filesystem.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

Timespec coarse_now() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return Timespec{ts.tv_sec, static_cast<std::uint32_t>(ts.tv_nsec)};
}

bool not_after(const Timespec& a, const Timespec& b) {
  return a.sec < b.sec || (a.sec == b.sec && a.nsec <= b.nsec);
}

// `t` was read from the coarse clock between `before` and `after`. The fine clock
// runs ahead of the coarse one by up to a tick, so a fine reading lands after `after`
// unless a tick passed just then; the loop below retries that case.
bool from_coarse_clock(const Timespec& t, const Timespec& before, const Timespec& after) {
  return not_after(before, t) && not_after(t, after);
}

using FileTimesTest = testing::FreshStoreTest;

TEST_F(FileTimesTest, NewFilesAndTheirDirectoryTakeTheKernelsCoarseClock) {
  const Caller me{::getuid(), ::getgid(), 0};
  Filesystem fs(*store_, FsOptions{});
  // Within one tick, before == after and only a coarse reading can fall between them.
  int within_one_tick = 0;
  int changes_within_one_tick = 0;
  for (int i = 0; i < 50 && within_one_tick < 5; ++i) {
    const std::string name = "f" + std::to_string(i);
    const Timespec before = coarse_now();
    const Inode file = fs.make_node(kRootIno, name, S_IFREG | 0644, 0, me);
    const Inode root = fs.getattr(kRootIno);
    const Timespec after = coarse_now();
    if (!(before == after)) continue;
    ++within_one_tick;
    EXPECT_TRUE(from_coarse_clock(file.mtime, before, after)) << name;
    EXPECT_TRUE(from_coarse_clock(file.ctime, before, after)) << name;
    EXPECT_TRUE(from_coarse_clock(file.atime, before, after)) << name;
    EXPECT_TRUE(from_coarse_clock(root.mtime, before, after)) << name;
    EXPECT_TRUE(from_coarse_clock(root.ctime, before, after)) << name;

    // A change of owner or mode stamps ctime from the same clock.
    AttrChanges changes;
    changes.mode = 0600;
    const Timespec before_change = coarse_now();
    const Inode changed = fs.setattr(file.ino, changes);
    const Timespec after_change = coarse_now();
    if (before_change == after_change) {
      ++changes_within_one_tick;
      EXPECT_TRUE(from_coarse_clock(changed.ctime, before_change, after_change)) << name;
    }
  }
  EXPECT_GT(within_one_tick, 0) << "no file was made within one tick of the coarse clock";
  EXPECT_GT(changes_within_one_tick, 0) << "no change was made within one tick";
}

}  // namespace
}  // namespace casfs
