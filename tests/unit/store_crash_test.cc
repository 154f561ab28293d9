// Crash safety and concurrency of the object store's maintenance jobs, on a real disk,
// with whichever io engine CASFS_IO selects (ctest runs this file once per engine).
//
// Crashes are simulated with fork(): the child opens the store, installs a failpoint
// hook that calls _exit() at a named step of pack, gc or repack, and runs the job; the
// parent then opens what the child left behind and checks that no referenced object
// was lost, the index agrees with itself and with the files, and the job can be run
// again to completion.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "store/failpoint.h"
#include "store/index.h"
#include "store/lmdb.h"
#include "store/pack_format.h"
#include "store/store.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

namespace fs = std::filesystem;
using testing::random_bytes;
using testing::TempDir;
using Bytes = std::vector<std::byte>;

constexpr int kNotReached = 0;  // the job finished without reaching it
constexpr int kChildError = 3;  // the child threw before reaching it

constexpr std::size_t kLarge = (8u << 20) + 4096;  // past the in-memory limit: streamed

Bytes compressible(std::mt19937_64& rng, std::size_t size) {
  static const char* words[] = {"alpha ", "beta ", "gamma ", "delta ", "casfs ", "chunk\n"};
  Bytes out;
  out.reserve(size);
  while (out.size() < size) {
    for (const char* c = words[rng() % 6]; *c && out.size() < size; ++c) {
      out.push_back(std::byte(*c));
    }
  }
  return out;
}

// Random or compressible, so both codecs show up in packs.
Bytes some_object(std::mt19937_64& rng, std::size_t max_size) {
  std::size_t size = rng() % (max_size + 1);
  return rng() % 2 ? random_bytes(rng, size) : compressible(rng, size);
}

std::span<const std::byte> as_span(const Bytes& b) {
  return {b.data(), b.size()};
}

// What the test expects of an object: its bytes and how many references it holds.
struct Expected {
  Bytes bytes;
  std::uint64_t refs = 0;
};
using Model = std::map<ObjectId, Expected>;

// Inserts `bytes` with `refs` references and counts them in the model.
ObjectId insert_into(Store& store, Model& model, const Bytes& bytes, std::uint32_t refs = 1) {
  InsertResult r = store.insert(as_span(bytes), refs);
  auto& e = model[r.id];
  e.bytes = bytes;
  e.refs += refs;
  return r.id;
}

std::vector<ObjectId> insert_many_into(Store& store, Model& model,
                                       const std::vector<Bytes>& objects, std::uint32_t refs = 1) {
  std::vector<std::span<const std::byte>> spans;
  for (const auto& o : objects) spans.push_back(as_span(o));
  auto results = store.insert_many(spans, refs);
  std::vector<ObjectId> ids;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    auto& e = model[results[i].id];
    e.bytes = objects[i];
    e.refs += refs;
    ids.push_back(results[i].id);
  }
  return ids;
}

void release_in(Store& store, Model& model, const ObjectId& id, std::uint64_t n = 1) {
  store.release(id, n);
  model[id].refs -= n;
}

// Collects failures seen on worker threads, where gtest assertions cannot stop a test.
class Failures {
 public:
  void add(const std::string& what) {
    std::lock_guard lock(mu_);
    if (first_.size() < 10) first_.push_back(what);
    ++count_;
  }
  std::size_t count() {
    std::lock_guard lock(mu_);
    return count_;
  }
  std::string summary() {
    std::lock_guard lock(mu_);
    std::ostringstream out;
    out << count_ << " failure(s) on worker threads:";
    for (const auto& f : first_) out << "\n  " << f;
    return out.str();
  }

 private:
  std::mutex mu_;
  std::vector<std::string> first_;
  std::size_t count_ = 0;
};

enum class Check { kRefsAndBytes, kRefsOnly };

// Every object the model says is referenced is there with that refcount and (unless
// kRefsOnly) reads back byte-identical; with `dropped_gone`, every object with no
// references is gone (gc ran).
void expect_objects(Store& store, const Model& model, bool dropped_gone = false,
                    Check check = Check::kRefsAndBytes) {
  int bad = 0;
  std::size_t checked = 0;
  for (const auto& [id, e] : model) {
    try {
      auto info = store.stat(id);
      if (e.refs == 0) {
        if (dropped_gone && info) {
          if (bad++ < 5) ADD_FAILURE() << "unreferenced object " << id.hex() << " survived gc";
        } else if (info && info->refcount != 0) {
          if (bad++ < 5) {
            ADD_FAILURE() << "object " << id.hex() << " has refcount " << info->refcount
                          << ", expected 0";
          }
        }
        continue;
      }
      ++checked;
      if (!info) {
        if (bad++ < 5) ADD_FAILURE() << "referenced object " << id.hex() << " was lost";
        continue;
      }
      if (info->refcount != e.refs) {
        if (bad++ < 5) {
          ADD_FAILURE() << "object " << id.hex() << " has refcount " << info->refcount
                        << ", expected " << e.refs;
        }
      }
      if (check == Check::kRefsAndBytes && store.read(id) != e.bytes) {
        if (bad++ < 5) ADD_FAILURE() << "object " << id.hex() << " reads back wrong bytes";
      }
    } catch (const std::exception& ex) {
      if (bad++ < 5) ADD_FAILURE() << "object " << id.hex() << ": " << ex.what();
    }
  }
  EXPECT_EQ(bad, 0) << "of " << checked << " referenced objects checked";
}

// status() agrees with list(), and the pack table's accounting with the objects in it.
void expect_index_consistent(Store& store) {
  StoreStatus s = store.status();
  const std::map<std::uint32_t, PackInfo> packs = testing::pack_table(store);
  StoreStatus counted;
  std::map<std::uint32_t, std::pair<std::uint64_t, std::uint64_t>> live;  // bytes, records
  store.list([&](const ObjectInfo& info) {
    if (info.tier == Tier::kLoose) {
      counted.loose_objects += 1;
      counted.loose_bytes += info.raw_size;
    } else {
      auto it = packs.find(info.pack_id);
      if (it != packs.end() && it->second.intake) {
        counted.intake_objects += 1;
        counted.intake_bytes += info.raw_size;
        EXPECT_EQ(info.codec, Codec::kRaw) << "intake object " << info.id.hex();
      } else {
        counted.packed_objects += 1;
        counted.packed_raw_bytes += info.raw_size;
        counted.packed_stored_bytes += info.stored_size;
      }
      live[info.pack_id].first += kRecordHeaderSize + info.stored_size;
      live[info.pack_id].second += 1;
    }
    if (info.refcount == 0) counted.unreferenced_objects += 1;
  });
  EXPECT_EQ(s.loose_objects, counted.loose_objects);
  EXPECT_EQ(s.loose_bytes, counted.loose_bytes);
  EXPECT_EQ(s.intake_objects, counted.intake_objects);
  EXPECT_EQ(s.intake_bytes, counted.intake_bytes);
  EXPECT_EQ(s.packed_objects, counted.packed_objects);
  EXPECT_EQ(s.packed_raw_bytes, counted.packed_raw_bytes);
  EXPECT_EQ(s.packed_stored_bytes, counted.packed_stored_bytes);
  EXPECT_EQ(s.unreferenced_objects, counted.unreferenced_objects);

  std::uint64_t total = 0, dead = 0;
  for (const auto& [id, p] : packs) {
    total += p.size;
    dead += p.dead_bytes;
    auto it = live.find(id);
    std::uint64_t live_bytes = it == live.end() ? 0 : it->second.first;
    std::uint64_t live_records = it == live.end() ? 0 : it->second.second;
    EXPECT_EQ(p.live_bytes, live_bytes) << "pack " << id;
    EXPECT_EQ(p.live_records, live_records) << "pack " << id;
    EXPECT_EQ(p.size, kPackHeaderSize + p.live_bytes + p.dead_bytes) << "pack " << id;
    std::error_code ec;
    auto on_disk = fs::file_size(store.dir() / "packs" / (std::to_string(id) + ".pack"), ec);
    EXPECT_FALSE(ec) << "pack " << id << " is in the index but has no file";
    if (!ec) {
      EXPECT_GE(on_disk, p.size) << "pack " << id;
    }
  }
  for (const auto& [id, l] : live) {
    EXPECT_TRUE(packs.contains(id))
        << l.second << " objects point at pack " << id << ", which the index does not have";
  }
  EXPECT_EQ(s.packs, packs.size());
  EXPECT_EQ(s.pack_file_bytes, total);
  EXPECT_EQ(s.dead_bytes, dead);
}

// Nothing on disk that the index does not account for: no orphan loose files, no orphan
// pack files, no torn pack tails, nothing left in staging.
void expect_no_orphans(Store& store) {
  StoreStatus s = store.status();
  std::uint64_t loose_files = 0, loose_bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(store.dir() / "loose")) {
    if (e.is_regular_file()) {
      loose_files += 1;
      loose_bytes += e.file_size();
    }
  }
  EXPECT_EQ(loose_files, s.loose_objects) << "loose files vs loose objects in the index";
  EXPECT_EQ(loose_bytes, s.loose_bytes);
  std::uint64_t pack_files = 0, pack_bytes = 0;
  for (const auto& e : fs::directory_iterator(store.dir() / "packs")) {
    if (e.is_regular_file()) {
      pack_files += 1;
      pack_bytes += e.file_size();
    }
  }
  EXPECT_EQ(pack_files, s.packs) << "pack files vs packs in the index";
  EXPECT_EQ(pack_bytes, s.pack_file_bytes) << "pack file bytes vs the index's committed sizes";
  EXPECT_TRUE(fs::is_empty(store.dir() / "staging"));
}

void expect_verify_clean(Store& store) {
  VerifyReport v = store.verify();
  std::ostringstream problems;
  for (std::size_t i = 0; i < v.problems.size() && i < 5; ++i) {
    problems << "\n  " << v.problems[i].id.hex() << ": " << v.problems[i].what;
  }
  EXPECT_TRUE(v.clean()) << v.problems.size() << " problem(s):" << problems.str();
}

// ---------------------------------------------------------------------------------
// 1. A crash at every step of pack, gc and repack

struct CrashCase {
  const char* failpoint;
  int hit;  // crash on this hit of the failpoint (jobs reach most of them once per batch)
};

void PrintTo(const CrashCase& c, std::ostream* os) {
  *os << c.failpoint << " hit " << c.hit;
}

enum class Job { kPack, kGc, kRepack, kInsert, kAppend };

Job job_of(std::string_view failpoint) {
  if (failpoint.starts_with("pack.")) return Job::kPack;
  if (failpoint == "intake.appended") return Job::kAppend;
  if (failpoint.starts_with("intake.")) return Job::kInsert;
  if (failpoint.starts_with("gc.")) return Job::kGc;
  return Job::kRepack;
}

// Repack rewrites every pack with any dead bytes, so the crash cases move everything.
RepackOptions eager_repack() {
  RepackOptions o;
  o.dead_threshold = 0.0;
  return o;
}

void run_job(Store& store, Job job) {
  switch (job) {
    case Job::kPack:
      store.pack();
      break;
    case Job::kGc:
      store.gc();
      break;
    case Job::kRepack:
      store.repack(eager_repack());
      break;
    case Job::kInsert: {
      // A batch large enough for an intake pack, unknown to the model: the crash
      // comes before its commit, and the run after it leaves no references.
      std::mt19937_64 rng(7);
      std::vector<Bytes> batch;
      for (int i = 0; i < 100; ++i) batch.push_back(random_bytes(rng, 3000));
      std::vector<std::span<const std::byte>> spans(batch.begin(), batch.end());
      store.insert_many(spans, /*refs=*/0);
      break;
    }
    case Job::kAppend: {
      // Small batches, appended to the open intake pack, unknown to the model too.
      std::mt19937_64 rng(11);
      for (int round = 0; round < 5; ++round) {
        std::vector<Bytes> batch;
        for (int i = 0; i < 3; ++i) batch.push_back(random_bytes(rng, 100 + rng() % 4000));
        std::vector<std::span<const std::byte>> spans(batch.begin(), batch.end());
        store.insert_many(spans, /*refs=*/0);
      }
      break;
    }
  }
}

// How the crash tests open the store: appending small batches for the job that does.
OpenOptions options_for(Job job) {
  return OpenOptions{.append_small_batches = job == Job::kAppend};
}

// Opens the store in a child process and runs `job` there; the `hit`th time `failpoint`
// is reached the child kills itself with SIGKILL, as a crash would end it (no exit
// handlers, other threads stopped wherever they are). Returns its wait status.
int run_crashing_child(const fs::path& dir, const std::string& failpoint, int hit, Job job) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int code = kNotReached;
    try {
      auto store = Store::open(dir, options_for(job));
      std::atomic<int> seen{0};  // pack reaches pack.unlinked on a worker thread
      set_failpoint_hook([&seen, failpoint, hit](std::string_view name) {
        if (name == failpoint && ++seen == hit) ::kill(::getpid(), SIGKILL);
      });
      run_job(*store, job);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "crash child: %s\n", e.what());
      code = kChildError;
    }
    ::_exit(code);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

std::string describe_status(int status) {
  if (status == -1) return "fork or waitpid failed: " + std::string(std::strerror(errno));
  if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
    return "child killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFSIGNALED(status)) return "the child crashed at the failpoint";
  if (!WIFEXITED(status)) return "child status " + std::to_string(status);
  switch (WEXITSTATUS(status)) {
    case kNotReached:
      return "the job finished without reaching the failpoint";
    case kChildError:
      return "the job threw in the child (see stderr)";
    default:
      return "child exit code " + std::to_string(WEXITSTATUS(status));
  }
}

class StoreCrashTest : public ::testing::TestWithParam<CrashCase> {
 protected:
  void SetUp() override { dir_ = tmp_.path() / "store"; }

  // pack: a pack to reopen, then loose objects, among them a large one streamed as a
  // batch of its own; for crashes past the first batch, enough small objects for two
  // batches of 2048 as well. Some objects are duplicates, some unreferenced.
  void prepare_pack(std::mt19937_64& rng, bool several_batches) {
    const std::size_t n = several_batches ? 2100 : 400;
    Store::init(dir_);
    auto store = Store::open(dir_);
    std::vector<Bytes> first;
    for (int i = 0; i < 200; ++i) first.push_back(some_object(rng, 3000));
    insert_many_into(*store, model_, first);
    store->pack();
    std::vector<Bytes> more;
    for (std::size_t i = 0; i < n; ++i) more.push_back(some_object(rng, 2000));
    for (int i = 0; i < 50; ++i) more.push_back(first[rng() % first.size()]);  // packed dups
    for (int i = 0; i < 50; ++i) {
      Bytes dup = more[rng() % n];  // loose dups
      more.push_back(std::move(dup));
    }
    auto ids = insert_many_into(*store, model_, more);  // in intake packs
    // And loose ones: a store opened with intake packs off writes every batch loose.
    store.reset();
    OpenOptions no_intake;
    no_intake.intake_min_objects = 0;
    store = Store::open(dir_, no_intake);
    std::vector<Bytes> loose;
    for (int i = 0; i < 300; ++i) loose.push_back(some_object(rng, 2500));
    insert_many_into(*store, model_, loose);
    EXPECT_GE(store->status().loose_objects, 250u);  // less the duplicates
    EXPECT_GE(store->status().intake_objects, n / 2);
    insert_into(*store, model_, compressible(rng, kLarge));
    std::vector<Bytes> unreferenced;
    for (int i = 0; i < 30; ++i) unreferenced.push_back(some_object(rng, 5000));
    insert_many_into(*store, model_, unreferenced, 0);
    for (int i = 0; i < 40; ++i) {
      const ObjectId& id = ids[rng() % n];
      if (model_[id].refs > 0) release_in(*store, model_, id);
    }
  }

  // gc: unreferenced objects, packed and loose, among referenced ones; for crashes past
  // the first batch more than a gc batch (1024) of them. A large packed object is among
  // the dropped ones; most are inserted with no references, some are released.
  void prepare_gc(std::mt19937_64& rng, bool several_batches) {
    const int dead = several_batches ? 560 : 150;  // of each tier
    Store::init(dir_);
    auto store = Store::open(dir_);
    auto objects = [&](int count) {
      std::vector<Bytes> out;
      for (int i = 0; i < count; ++i) out.push_back(some_object(rng, 3000));
      return out;
    };
    auto packed = objects(400);
    auto packed_ids = insert_many_into(*store, model_, packed);
    insert_many_into(*store, model_, objects(dead), 0);
    ObjectId large = insert_into(*store, model_, random_bytes(rng, kLarge));
    store->pack();
    auto loose_ids = insert_many_into(*store, model_, objects(300));
    insert_many_into(*store, model_, objects(dead), 0);
    for (int i = 0; i < 20; ++i) insert_into(*store, model_, packed[i]);  // refcount 2
    release_in(*store, model_, large);
    for (int i = 0; i < 60; ++i) release_in(*store, model_, packed_ids[i]);
    for (int i = 0; i < 40; ++i) release_in(*store, model_, loose_ids[i]);
    EXPECT_GT(store->status().unreferenced_objects, 2u * static_cast<std::uint64_t>(dead));
  }

  // repack: four packs, each with dead records after release + gc; one holds a large
  // incompressible object that repack copies in pieces.
  void prepare_repack(std::mt19937_64& rng) {
    StoreSettings settings;
    settings.pack_target_bytes = 64 << 10;  // every pack() starts a new pack
    Store::init(dir_, settings);
    auto store = Store::open(dir_);
    for (int round = 0; round < 4; ++round) {
      std::vector<Bytes> objects, unreferenced;
      for (int i = 0; i < 150; ++i) objects.push_back(some_object(rng, 3000));
      for (int i = 0; i < 100; ++i) unreferenced.push_back(some_object(rng, 3000));
      auto ids = insert_many_into(*store, model_, objects);
      insert_many_into(*store, model_, unreferenced, 0);
      if (round == 1) insert_into(*store, model_, random_bytes(rng, kLarge));
      store->pack();
      for (int i = 0; i < 20; ++i) {
        const ObjectId& id = ids[rng() % ids.size()];
        if (model_[id].refs > 0) release_in(*store, model_, id);
      }
    }
    store->gc();
    auto s = store->status();
    EXPECT_GE(s.packs, 4u);
    EXPECT_GT(s.dead_bytes, 0u);
  }

  TempDir tmp_;
  fs::path dir_;
  Model model_;
};

TEST_P(StoreCrashTest, CrashAtStepKeepsEveryObjectAndJobCanFinish) {
  const CrashCase c = GetParam();
  const Job job = job_of(c.failpoint);
  std::mt19937_64 rng(testing::test_seed());
  switch (job) {
    case Job::kPack:
    case Job::kInsert:
    case Job::kAppend:
      prepare_pack(rng, c.hit > 1 && job != Job::kAppend);
      break;
    case Job::kGc:
      prepare_gc(rng, c.hit > 1);
      break;
    case Job::kRepack:
      prepare_repack(rng);
      break;
  }
  ASSERT_FALSE(HasFailure());

  int status = run_crashing_child(dir_, c.failpoint, c.hit, job);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << c.failpoint << " hit " << c.hit << ": " << describe_status(status);

  auto store = Store::open(dir_, options_for(job));
  {
    SCOPED_TRACE("right after the crash");
    if (job == Job::kInsert || job == Job::kAppend) {
      // The first append starts the open pack: before its commit it is an orphan.
      const std::uint64_t orphans = job == Job::kAppend && c.hit > 1 ? 0 : 1;
      const auto files = std::distance(fs::directory_iterator(dir_ / "packs"), {});
      EXPECT_EQ(static_cast<std::uint64_t>(files), store->status().packs + orphans)
          << "the crashed insert's new intake pack is an orphan file";
    }
    expect_objects(*store, model_);
    expect_verify_clean(*store);
    expect_index_consistent(*store);
  }
  {
    SCOPED_TRACE("after running the crashed job again");
    run_job(*store, job);
    expect_objects(*store, model_, /*dropped_gone=*/false, Check::kRefsOnly);
    expect_index_consistent(*store);
    auto s = store->status();
    switch (job) {
      case Job::kPack:
        EXPECT_EQ(s.unpacked_objects(), 0u);
        EXPECT_EQ(s.intake_packs, 0u) << "intake packs are removed once packed";
        break;
      case Job::kGc:
        EXPECT_EQ(s.unreferenced_objects, 0u);
        break;
      case Job::kRepack:
        EXPECT_EQ(s.dead_bytes, 0u);
        break;
      case Job::kInsert:
        EXPECT_GE(s.intake_packs, 2u) << "the batch before the crash and the one after";
        break;
      case Job::kAppend:
        EXPECT_EQ(s.intake_packs, c.hit > 1 ? 3u : 2u)
            << "prepare's, the crashed run's (when a batch committed) and the one open now";
        break;
    }
  }
  {
    SCOPED_TRACE("after pack, gc and repack");
    store->pack();
    store->gc();
    store->repack(eager_repack());
    expect_objects(*store, model_, /*dropped_gone=*/true);
    expect_index_consistent(*store);
    expect_no_orphans(*store);
    expect_verify_clean(*store);
  }
  {
    SCOPED_TRACE("after reopening");
    store.reset();
    store = Store::open(dir_);
    expect_objects(*store, model_, /*dropped_gone=*/true, Check::kRefsOnly);
    if (job == Job::kAppend) {
      // Closed, the open pack is an ordinary intake pack: pack() removes it.
      store->pack();
      EXPECT_EQ(store->status().intake_packs, 0u);
    }
    expect_no_orphans(*store);
  }
}

std::string crash_case_name(const ::testing::TestParamInfo<CrashCase>& info) {
  std::string name = info.param.failpoint;
  for (char& ch : name) {
    if (ch == '.') ch = '_';
  }
  return name + "_hit" + std::to_string(info.param.hit);
}

INSTANTIATE_TEST_SUITE_P(
    EveryStep, StoreCrashTest,
    ::testing::Values(CrashCase{"pack.appended", 1}, CrashCase{"pack.appended", 2},
                      CrashCase{"pack.synced", 1}, CrashCase{"pack.synced", 2},
                      CrashCase{"pack.committed", 1}, CrashCase{"pack.committed", 2},
                      CrashCase{"pack.unlinked", 1}, CrashCase{"pack.unlinked", 2},
                      CrashCase{"pack.intake_removed", 1}, CrashCase{"intake.written", 1},
                      CrashCase{"intake.appended", 1}, CrashCase{"intake.appended", 3},
                      CrashCase{"gc.dropped", 1}, CrashCase{"gc.dropped", 2},
                      CrashCase{"repack.synced", 1}, CrashCase{"repack.committed", 1},
                      CrashCase{"repack.removed", 1}, CrashCase{"repack.removed", 2}),
    crash_case_name);

// ---------------------------------------------------------------------------------
// Shared by the concurrency tests: objects known to the test, visible to all threads.

struct Known {
  ObjectId id;
  std::shared_ptr<const Bytes> bytes;
};

// Reads `batch` with read() and extract_many() and reports any difference.
void read_and_check(Store& store, const std::vector<Known>& batch, Failures& failures) {
  for (const auto& k : batch) {
    try {
      if (store.read(k.id) != *k.bytes) failures.add("read " + k.id.hex() + ": wrong bytes");
    } catch (const std::exception& e) {
      failures.add("read " + k.id.hex() + ": " + e.what());
    }
  }
  std::vector<ObjectId> ids;
  for (const auto& k : batch) ids.push_back(k.id);
  std::vector<Bytes> got(batch.size());
  std::vector<int> done(batch.size(), 0);
  ExtractSink sink;
  sink.data = [&](std::size_t i, std::span<const std::byte> piece) {
    got[i].insert(got[i].end(), piece.begin(), piece.end());
  };
  sink.done = [&](std::size_t i) { done[i] += 1; };
  sink.error = [&](std::size_t i, const StoreError& e) {
    failures.add("extract_many " + ids[i].hex() + ": " + e.what());
  };
  try {
    store.extract_many(ids, sink);
  } catch (const std::exception& e) {
    failures.add(std::string("extract_many threw: ") + e.what());
    return;
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (done[i] != 1) {
      failures.add("extract_many " + ids[i].hex() + ": done() called " + std::to_string(done[i]) +
                   " times");
    } else if (got[i] != *batch[i].bytes) {
      failures.add("extract_many " + ids[i].hex() + ": wrong bytes");
    }
  }
}

// ---------------------------------------------------------------------------------
// 2. Inserters, a packer and a reader at once

// Four inserters, a packer and a reader at once; then every object is there with its
// count, and the index accounts for every byte.
void inserts_during_pack(const OpenOptions& options) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "store";
  Store::init(dir);
  auto store = Store::open(dir, options);
  const std::uint64_t seed = testing::test_seed();

  // Objects several threads insert, small and one large, to race dedup.
  std::mt19937_64 common_rng(seed);
  std::vector<std::shared_ptr<const Bytes>> common;
  for (int i = 0; i < 40; ++i) {
    common.push_back(std::make_shared<const Bytes>(some_object(common_rng, 20000)));
  }
  auto common_large = std::make_shared<const Bytes>(random_bytes(common_rng, kLarge));

  std::mutex mu;
  std::vector<Known> inserted;  // every insert, in order (duplicates repeated)
  std::map<ObjectId, std::uint64_t> counts;
  std::map<ObjectId, std::shared_ptr<const Bytes>> content;
  Failures failures;
  constexpr int kInserters = 4;
  constexpr int kRounds = 100;
  std::atomic<int> inserters_left{kInserters};
  std::atomic<int> packs{0}, reads{0};  // packs that moved something; objects read

  auto record = [&](const std::shared_ptr<const Bytes>& bytes, const InsertResult& r) {
    if (r.id != Sha256::of(*bytes) || r.size != bytes->size()) {
      failures.add("insert returned the wrong id or size for " + r.id.hex());
    }
    std::lock_guard lock(mu);
    inserted.push_back(Known{r.id, bytes});
    counts[r.id] += 1;
    content[r.id] = bytes;
  };

  auto inserter = [&](int t) {
    std::mt19937_64 rng(seed + 1 + static_cast<std::uint64_t>(t));
    try {
      // At least kRounds, and on until the packer has packed a few times meanwhile.
      for (int round = 0; round < kRounds || (packs.load() < 10 && round < 5 * kRounds); ++round) {
        std::vector<std::shared_ptr<const Bytes>> group;
        std::size_t n = round % 3 == 0 ? 1 : 2 + rng() % 10;
        for (std::size_t i = 0; i < n; ++i) {
          if (rng() % 6 == 0) {
            group.push_back(common[rng() % common.size()]);
          } else {
            group.push_back(std::make_shared<const Bytes>(some_object(rng, 20000)));
          }
        }
        if (round == kRounds / 2) {
          if (t < 2) {
            group.push_back(common_large);
          } else {
            group.push_back(std::make_shared<const Bytes>(random_bytes(rng, kLarge + t)));
          }
        }
        if (group.size() == 1) {
          record(group[0], store->insert(as_span(*group[0])));
          continue;
        }
        std::vector<std::span<const std::byte>> spans;
        for (const auto& g : group) spans.push_back(as_span(*g));
        auto results = store->insert_many(spans);
        if (results.size() != group.size()) {
          failures.add("insert_many returned " + std::to_string(results.size()) + " results");
          continue;
        }
        for (std::size_t i = 0; i < group.size(); ++i) record(group[i], results[i]);
      }
    } catch (const std::exception& e) {
      failures.add(std::string("inserter threw: ") + e.what());
    }
    inserters_left.fetch_sub(1);
  };

  std::thread packer([&] {
    try {
      while (inserters_left.load() > 0) {
        if (store->pack().objects > 0) {
          packs.fetch_add(1);
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
    } catch (const std::exception& e) {
      failures.add(std::string("pack threw: ") + e.what());
    }
  });
  std::thread reader([&] {
    std::mt19937_64 rng(seed ^ 0x5eed);
    while (inserters_left.load() > 0) {
      std::vector<Known> batch;
      {
        std::lock_guard lock(mu);
        for (int i = 0; i < 24 && !inserted.empty(); ++i) {
          batch.push_back(inserted[rng() % inserted.size()]);
        }
      }
      if (batch.empty()) {
        std::this_thread::yield();
        continue;
      }
      read_and_check(*store, batch, failures);
      reads.fetch_add(static_cast<int>(batch.size()));
    }
  });
  std::vector<std::thread> inserters;
  for (int t = 0; t < kInserters; ++t) inserters.emplace_back(inserter, t);
  for (auto& th : inserters) th.join();
  packer.join();
  reader.join();
  EXPECT_EQ(failures.count(), 0u) << failures.summary();
  EXPECT_GT(packs.load(), 0);
  EXPECT_GT(reads.load(), 0);

  store->pack();
  Model model;
  for (const auto& [id, n] : counts) model[id] = Expected{*content[id], n};
  expect_objects(*store, model);
  auto s = store->status();
  EXPECT_EQ(s.unpacked_objects(), 0u);
  EXPECT_EQ(s.packed_objects, counts.size());
  EXPECT_EQ(s.unreferenced_objects, 0u);
  expect_index_consistent(*store);
  expect_no_orphans(*store);
  expect_verify_clean(*store);
}

TEST(StoreConcurrencyTest, InsertsDuringPackAreAllKeptAndCounted) {
  inserts_during_pack(OpenOptions{});
}

// The batches here are small: all of them go to the open intake pack, whose records
// pack() moves out while they are appended and committed in any order.
TEST(StoreConcurrencyTest, AppendsToTheOpenIntakePackDuringPackAreAllKept) {
  inserts_during_pack(OpenOptions{.append_small_batches = true});
}

// ---------------------------------------------------------------------------------
// 3. Inserts and releases while gc and repack run

// Mutators insert and release while gc and repack run, and a reader reads.
void gc_and_repack_during_inserts(const OpenOptions& open_options) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "store";
  StoreSettings settings;
  settings.pack_target_bytes = 256 << 10;  // many packs, so repack has work
  Store::init(dir, settings);
  auto store = Store::open(dir, open_options);
  const std::uint64_t seed = testing::test_seed();

  std::mt19937_64 pool_rng(seed);
  std::vector<Known> pool;
  auto add_to_pool = [&](Bytes b) {
    auto p = std::make_shared<const Bytes>(std::move(b));
    pool.push_back(Known{Sha256::of(*p), p});
  };
  for (int i = 0; i < 300; ++i) add_to_pool(some_object(pool_rng, 20000));
  add_to_pool(compressible(pool_rng, kLarge));

  Failures failures;
  constexpr int kMutators = 3;
  constexpr int kOps = 300;
  std::atomic<int> mutators_left{kMutators};
  std::atomic<int> cycles{0}, reads{0};
  // References held by each thread (the mutators, then the reader): the model is their sum.
  std::vector<std::map<ObjectId, std::uint64_t>> held(kMutators + 1);

  auto mutator = [&](int t) {
    std::mt19937_64 rng(seed + 1 + static_cast<std::uint64_t>(t));
    auto& mine = held[static_cast<std::size_t>(t)];
    std::vector<ObjectId> refs;  // one entry per reference held
    try {
      // At least kOps, and on until maintenance has cycled a few times meanwhile.
      for (int op = 0; op < kOps || (cycles.load() < 10 && op < 20 * kOps); ++op) {
        if (refs.empty() || rng() % 100 < 55) {
          std::size_t n = op % 4 == 0 ? 2 + rng() % 6 : 1;
          std::vector<std::span<const std::byte>> spans;
          std::vector<ObjectId> ids;
          for (std::size_t i = 0; i < n; ++i) {
            const Known& k = pool[rng() % pool.size()];
            spans.push_back(as_span(*k.bytes));
            ids.push_back(k.id);
          }
          std::vector<InsertResult> results;
          if (n == 1) {
            results.push_back(store->insert(spans[0]));
          } else {
            results = store->insert_many(spans);
          }
          for (std::size_t i = 0; i < n; ++i) {
            if (i >= results.size() || results[i].id != ids[i]) {
              failures.add("insert returned the wrong id");
              continue;
            }
            refs.push_back(ids[i]);
            mine[ids[i]] += 1;
          }
          continue;
        }
        std::size_t pick = rng() % refs.size();
        ObjectId id = refs[pick];
        std::uint64_t n = mine[id] >= 2 && rng() % 4 == 0 ? 2 : 1;
        store->release(id, n);
        mine[id] -= n;
        for (std::uint64_t k = 0; k < n; ++k) {
          refs.erase(std::find(refs.begin(), refs.end(), id));
        }
      }
    } catch (const std::exception& e) {
      failures.add("mutator " + std::to_string(t) + " threw: " + e.what());
    }
    mutators_left.fetch_sub(1);
  };

  std::thread maintenance([&] {
    RepackOptions options;
    options.dead_threshold = 0.1;
    try {
      while (mutators_left.load() > 0) {
        store->pack();
        store->gc();
        store->repack(options);
        cycles.fetch_add(1);
      }
    } catch (const std::exception& e) {
      failures.add(std::string("maintenance threw: ") + e.what());
    }
  });
  // The reader holds references to what it reads, so nothing it reads may be dropped.
  std::thread reader([&] {
    std::mt19937_64 rng(seed ^ 0x5eed);
    auto& mine = held[kMutators];
    std::vector<Known> window;
    try {
      while (mutators_left.load() > 0) {
        const Known& k = pool[rng() % (pool.size() - 1)];  // the large one is slow to read
        store->insert(as_span(*k.bytes));
        mine[k.id] += 1;
        window.push_back(k);
        if (window.size() > 12) {
          store->release(window.front().id);
          mine[window.front().id] -= 1;
          window.erase(window.begin());
        }
        read_and_check(*store, window, failures);
        reads.fetch_add(static_cast<int>(window.size()));
      }
    } catch (const std::exception& e) {
      failures.add(std::string("reader threw: ") + e.what());
    }
  });
  std::vector<std::thread> mutators;
  for (int t = 0; t < kMutators; ++t) mutators.emplace_back(mutator, t);
  for (auto& th : mutators) th.join();
  maintenance.join();
  reader.join();
  EXPECT_EQ(failures.count(), 0u) << failures.summary();
  EXPECT_GT(cycles.load(), 0);
  EXPECT_GT(reads.load(), 0);

  Model model;
  for (const auto& k : pool) model[k.id].bytes = *k.bytes;
  for (const auto& h : held) {
    for (const auto& [id, n] : h) model[id].refs += n;
  }
  {
    SCOPED_TRACE("right after the threads stopped");
    expect_objects(*store, model);
    expect_index_consistent(*store);
  }
  {
    SCOPED_TRACE("after a final pack, gc and repack");
    store->pack();
    store->gc();
    store->repack();
    expect_objects(*store, model, /*dropped_gone=*/true);
    expect_index_consistent(*store);
    expect_no_orphans(*store);
    expect_verify_clean(*store);
  }
}

TEST(StoreConcurrencyTest, GcAndRepackDuringInsertsAndReleasesDropNothingReferenced) {
  gc_and_repack_during_inserts(OpenOptions{});
}

TEST(StoreConcurrencyTest, GcAndRepackDuringAppendsToTheOpenIntakePackDropNothingReferenced) {
  gc_and_repack_during_inserts(OpenOptions{.append_small_batches = true});
}

// ---------------------------------------------------------------------------------
// 4. Readers while repack moves what they read

TEST(StoreConcurrencyTest, ReadsDuringRepackNeverFailOrReturnWrongBytes) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "store";
  Store::init(dir);
  auto store = Store::open(dir);
  std::mt19937_64 rng(testing::test_seed());

  // The fixed set, packed among filler. Every cycle packs new filler (appended to the
  // newest pack, the one the last repack wrote) and releases half of all filler, so
  // the pack holding the fixed set always has dead bytes and is rewritten. One large
  // incompressible object is read and copied in pieces.
  std::vector<Known> fixed;
  std::vector<ObjectId> filler;  // one entry per reference held
  auto add_filler = [&](int n) {
    std::vector<Bytes> objects;
    for (int i = 0; i < n; ++i) objects.push_back(random_bytes(rng, 64 + rng() % 8000));
    std::vector<std::span<const std::byte>> spans;
    for (const auto& o : objects) spans.push_back(as_span(o));
    for (const auto& r : store->insert_many(spans)) filler.push_back(r.id);
  };
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 50; ++i) {
      auto b = std::make_shared<const Bytes>(some_object(rng, 20000));
      fixed.push_back(Known{store->insert(as_span(*b)).id, b});
    }
    if (round == 1) {
      auto b = std::make_shared<const Bytes>(random_bytes(rng, kLarge));
      fixed.push_back(Known{store->insert(as_span(*b)).id, b});
    }
    add_filler(150);
    store->pack();
  }
  ASSERT_EQ(store->status().unpacked_objects(), 0u);

  auto locations = [&] {
    std::vector<std::pair<std::uint32_t, std::uint64_t>> at;
    for (const auto& k : fixed) {
      auto info = store->stat(k.id);
      at.emplace_back(info ? info->pack_id : 0, info ? info->offset : 0);
    }
    return at;
  };

  Failures failures;
  std::atomic<bool> stop{false};
  std::atomic<int> passes{0};
  std::thread reader([&] {
    while (!stop.load()) {
      read_and_check(*store, fixed, failures);
      passes.fetch_add(1);
    }
  });

  RepackOptions options;
  options.dead_threshold = 0.0;  // every pack with a dead record is rewritten
  int all_moved_cycles = 0;
  std::size_t moved = 0;
  for (int cycle = 0; cycle < 5; ++cycle) {
    auto before = locations();
    try {
      add_filler(100);
      store->pack();
      std::shuffle(filler.begin(), filler.end(), rng);
      for (std::size_t i = filler.size() / 2; i < filler.size(); ++i) store->release(filler[i]);
      filler.resize(filler.size() / 2);
      store->gc();
      store->repack(options);
    } catch (const std::exception& e) {
      failures.add(std::string("maintenance threw: ") + e.what());
      break;
    }
    auto after = locations();
    bool all_moved = true;
    for (std::size_t i = 0; i < fixed.size(); ++i) {
      all_moved &= before[i] != after[i];
      moved += before[i] != after[i];
    }
    all_moved_cycles += all_moved;
    // Let the reader finish a pass before moving things again.
    for (int p = passes.load(); passes.load() == p && failures.count() == 0;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  stop.store(true);
  reader.join();
  EXPECT_EQ(failures.count(), 0u) << failures.summary();
  EXPECT_GT(all_moved_cycles, 0) << "repack never moved all the objects being read (" << moved
                                 << " moves in all)";
  EXPECT_GT(passes.load(), 0);

  Model model;
  for (const auto& k : fixed) {
    model[k.id].bytes = *k.bytes;
    model[k.id].refs += 1;
  }
  expect_objects(*store, model);
  expect_index_consistent(*store);
  expect_verify_clean(*store);
}

}  // namespace
}  // namespace casfs
