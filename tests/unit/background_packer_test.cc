// The background packer on a real store: it packs once a threshold is passed and not
// before, at low priority (inherited by pack()'s helper threads), and stops cleanly.
#include "store/background_packer.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <future>
#include <thread>

#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using namespace std::chrono_literals;
using testing::random_bytes;

// <linux/ioprio.h> is not C++: IOPRIO_WHO_PROCESS, and best effort level 7.
constexpr int kWhoProcess = 1;
constexpr int kBestEffort7 = 2 << 13 | 7;

struct Priority {
  int nice = 0;
  int ioprio = 0;
};

Priority own_priority() {
  return Priority{::getpriority(PRIO_PROCESS, 0),
                  static_cast<int>(::syscall(SYS_ioprio_get, kWhoProcess, 0))};
}

class BackgroundPackerTest : public testing::FreshStoreTest {
 protected:
  void add(int n, std::size_t size = 4096) {
    std::mt19937_64 rng(seed_++);
    for (int i = 0; i < n; ++i) store_->insert(random_bytes(rng, size));
  }
  // Waits up to 20 s for `done`.
  template <typename F>
  bool eventually(F done) {
    for (int i = 0; i < 200; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(100ms);
    }
    return done();
  }

  std::uint64_t seed_ = 1;
};

TEST(LowerThreadPriorityTest, AppliesToTheThreadAndTheThreadsItStarts) {
  const Priority before = own_priority();
  Priority lowered, helper;
  std::thread([&] {
    lower_thread_priority();
    lowered = own_priority();
    // As pack() starts its compression and unlink helpers.
    helper = std::async(std::launch::async, own_priority).get();
  }).join();
  EXPECT_EQ(lowered.nice, 19);
  EXPECT_EQ(lowered.ioprio, kBestEffort7);
  EXPECT_EQ(helper.nice, lowered.nice);
  EXPECT_EQ(helper.ioprio, lowered.ioprio);
  // Per thread: the rest of the process keeps its priority.
  EXPECT_EQ(own_priority().nice, before.nice);
  EXPECT_EQ(own_priority().ioprio, before.ioprio);
}

TEST_F(BackgroundPackerTest, DisabledMeansNoThreadAndPhaseOff) {
  PackerOptions options;
  options.enabled = false;
  add(5);
  BackgroundPacker packer(*store_, options);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(packer.state().phase, PackerState::Phase::kOff);
  EXPECT_EQ(store_->status().loose_objects, 5u);
}

TEST_F(BackgroundPackerTest, WaitsBelowThresholdsThenPacksOnCount) {
  PackerOptions options;
  options.loose_objects = 20;
  options.age = std::chrono::hours(1);
  BackgroundPacker packer(*store_, options);
  add(10);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(store_->status().loose_objects, 10u);
  EXPECT_EQ(packer.state().runs, 0u);
  EXPECT_EQ(packer.state().loose_objects, 10u);  // the estimate follows inserts

  add(10);
  ASSERT_TRUE(eventually([&] { return store_->status().loose_objects == 0; }));
  EXPECT_EQ(store_->status().packed_objects, 20u);
  ASSERT_TRUE(eventually([&] { return packer.state().runs >= 1; }));
  const PackerState state = packer.state();
  EXPECT_EQ(state.objects_packed, 20u);
  EXPECT_TRUE(state.last_error.empty());
  EXPECT_TRUE(state.last_start.has_value());
}

TEST_F(BackgroundPackerTest, PacksOnBytes) {
  PackerOptions options;
  options.loose_objects = 1'000'000;
  options.loose_bytes = 1 << 20;
  options.age = std::chrono::hours(1);
  BackgroundPacker packer(*store_, options);
  add(3, 256 << 10);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(store_->status().loose_objects, 3u);
  add(2, 256 << 10);
  EXPECT_TRUE(eventually([&] { return store_->status().loose_objects == 0; }));
}

TEST_F(BackgroundPackerTest, PacksOnAgeWhatWasLooseAtStart) {
  add(3);  // loose before the packer starts: counted by its first walk
  PackerOptions options;
  options.age = 300ms;
  BackgroundPacker packer(*store_, options);
  ASSERT_TRUE(eventually([&] { return store_->status().loose_objects == 0; }));
  add(1);
  EXPECT_TRUE(eventually([&] { return store_->status().loose_objects == 0; }));
  EXPECT_EQ(store_->status().packed_objects, 4u);
  // The index flips before the run ends (loose files are unlinked after it), so the
  // phase goes back to idle a moment after the objects show as packed.
  EXPECT_TRUE(eventually([&] { return packer.state().phase == PackerState::Phase::kIdle; }));
}

TEST_F(BackgroundPackerTest, DamagedLooseObjectsDoNotSetOffRunAfterRun) {
  PackerOptions options;
  options.age = 200ms;
  auto packer = std::make_unique<BackgroundPacker>(*store_, options);
  add(2);
  ASSERT_TRUE(eventually([&] { return store_->status().loose_objects == 0; }));
  packer.reset();
  // A loose object whose file is damaged: pack() skips it and leaves it loose.
  add(1);
  ObjectInfo loose;
  store_->list([&](const ObjectInfo& info) {
    if (info.tier == Tier::kLoose) loose = info;
  });
  const std::string hex = loose.id.hex();
  const auto file = dir_.path() / "s" / "loose" / hex.substr(0, 2) / hex.substr(2);
  std::filesystem::permissions(file, std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
  std::filesystem::resize_file(file, 10);

  packer = std::make_unique<BackgroundPacker>(*store_, options);
  ASSERT_TRUE(eventually([&] { return packer->state().runs >= 1; }));
  std::this_thread::sleep_for(1500ms);  // many ages: it must not run again
  EXPECT_EQ(packer->state().runs, 1u);
  EXPECT_EQ(store_->status().loose_objects, 1u);
}

TEST_F(BackgroundPackerTest, StopsPromptly) {
  PackerOptions options;
  options.age = 100ms;
  add(50);
  const auto start = std::chrono::steady_clock::now();
  { BackgroundPacker packer(*store_, options); }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

}  // namespace
}  // namespace casfs
