// casfs_store_bench: throughput of the object store, measured in one run on one machine.
//
//   1. insert_many of small distinct random objects (0–1000 B): batches go to intake
//      packs, or with --intake 0 to the loose tier
//   2. insert_many of 1 GiB as 64 KiB objects (half text-like, half random)
//   3. pack of all of that
//   4. extract_many of the packed small objects, warm and cold (caches dropped)
//   5. insert_file + pack of a real source tree, against `cp -a` + sync on ext4
//   6. io_uring vs the sync engine: random 64 KiB reads from one big file, cold and warm
//
// Every measurement prints one line as it finishes; at the end a Markdown table is
// printed and, with --json FILE, everything is written as JSON. MB = 10^6 bytes.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "store/error.h"
#include "store/io_engine.h"
#include "store/store.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using casfs::ObjectId;
using casfs::OpenOptions;
using casfs::Store;

__extension__ typedef unsigned __int128 U128;

constexpr double kMB = 1e6;
constexpr std::size_t kLargeObject = 64 << 10;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------
// Options

struct Options {
  std::uint64_t seed = 20261121;
  fs::path dir = "/var/tmp/casfs-bench";
  std::string json_path;
  bool quick = false;
  bool keep = false;
  fs::path tree;                   // source tree for section 5; empty: skipped
  std::size_t tree_max_files = 0;  // 0: all
  unsigned tree_threads = 1;
  std::size_t small_count = 100000;
  std::size_t large_count = 16384;  // × 64 KiB = 1 GiB
  std::uint64_t randread_file_bytes = 2ull << 30;
  std::size_t randread_ops = 20000;
  std::size_t randread_batch = 256;
  unsigned sync_threads = 4;
  unsigned rounds = 3;  // cold engine comparison rounds
  std::string only;     // comma-separated section names; empty: all
  std::size_t intake_min_objects = OpenOptions{}.intake_min_objects;
};

const char* tier_name(const Options& o) {
  return o.intake_min_objects > 0 ? "intake packs" : "loose";
}

OpenOptions open_options(const Options& o) {
  OpenOptions opts;
  opts.intake_min_objects = o.intake_min_objects;
  return opts;
}

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: casfs_store_bench [options]\n"
               "  --seed N            random seed (default 20261121)\n"
               "  --dir DIR           working directory on the disk under test\n"
               "                      (default /var/tmp/casfs-bench; never tmpfs)\n"
               "  --json FILE         write all results as JSON\n"
               "  --quick             small sizes, finishes in well under a minute\n"
               "  --tree DIR          source tree for the real-data section (skipped if unset)\n"
               "  --tree-max-files N  use only the first N regular files of the tree\n"
               "  --tree-threads N    threads calling insert_files (default 1)\n"
               "  --small N           small objects (default 100000)\n"
               "  --large N           64 KiB objects (default 16384 = 1 GiB)\n"
               "  --randread-file-mib N  size of the random-read file (default 2048)\n"
               "  --randread-ops N    random 64 KiB reads per engine (default 20000)\n"
               "  --rounds N          rounds of the cold engine comparison (default 3)\n"
               "  --only LIST         run only these sections: objects,tree,engines\n"
               "  --intake N          batches of N or more new objects go to an intake pack\n"
               "                      (default 16; 0: every object a loose file)\n"
               "  --keep              keep the stores afterwards\n");
  std::exit(code);
}

Options parse(int argc, char** argv) {
  Options o;
  bool small_set = false, large_set = false, mib_set = false, ops_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "casfs_store_bench: %s needs a value\n", argv[i]);
        usage(2);
      }
      return argv[++i];
    };
    auto number = [&]() -> std::uint64_t {
      std::string v = value();
      char* end = nullptr;
      unsigned long long n = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0') {
        std::fprintf(stderr, "casfs_store_bench: not a number: %s\n", v.c_str());
        usage(2);
      }
      return n;
    };
    if (a == "--seed") {
      o.seed = number();
    } else if (a == "--intake") {
      o.intake_min_objects = number();
    } else if (a == "--dir") {
      o.dir = value();
    } else if (a == "--json") {
      o.json_path = value();
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--tree") {
      o.tree = value();
    } else if (a == "--tree-max-files") {
      o.tree_max_files = number();
    } else if (a == "--tree-threads") {
      o.tree_threads = static_cast<unsigned>(std::max<std::uint64_t>(1, number()));
    } else if (a == "--small") {
      o.small_count = number();
      small_set = true;
    } else if (a == "--large") {
      o.large_count = number();
      large_set = true;
    } else if (a == "--randread-file-mib") {
      o.randread_file_bytes = number() << 20;
      mib_set = true;
    } else if (a == "--randread-ops") {
      o.randread_ops = number();
      ops_set = true;
    } else if (a == "--rounds") {
      o.rounds = static_cast<unsigned>(std::max<std::uint64_t>(1, number()));
    } else if (a == "--only") {
      o.only = value();
    } else if (a == "-h" || a == "--help") {
      usage(0);
    } else {
      std::fprintf(stderr, "casfs_store_bench: unknown option %s\n", argv[i]);
      usage(2);
    }
  }
  if (o.quick) {
    if (!small_set) o.small_count = 5000;
    if (!large_set) o.large_count = 1024;  // 64 MiB
    if (!mib_set) o.randread_file_bytes = 256ull << 20;
    if (!ops_set) o.randread_ops = 2000;
  }
  if (o.randread_file_bytes < kLargeObject) o.randread_file_bytes = kLargeObject;
  return o;
}

bool wanted(const Options& o, std::string_view section) {
  if (o.only.empty()) return true;
  std::string_view rest = o.only;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    if (rest.substr(0, comma) == section) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

// ---------------------------------------------------------------------------------
// Random data (xoshiro256**, seeded through splitmix64; one stream per purpose)

class Rng {
 public:
  Rng(std::uint64_t seed, std::uint64_t stream) {
    std::uint64_t x = seed ^ (stream * 0x9E3779B97F4A7C15ull);
    for (auto& s : s_) {
      x += 0x9E3779B97F4A7C15ull;
      std::uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      s = z ^ (z >> 31);
    }
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n).
  std::uint64_t below(std::uint64_t n) {
    return static_cast<std::uint64_t>((static_cast<U128>(next()) * n) >> 64);
  }
  void fill(std::span<std::byte> out) {
    std::size_t i = 0;
    for (; i + 8 <= out.size(); i += 8) {
      std::uint64_t v = next();
      std::memcpy(out.data() + i, &v, 8);
    }
    if (i < out.size()) {
      std::uint64_t v = next();
      std::memcpy(out.data() + i, &v, out.size() - i);
    }
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

// Text-like bytes: words from a fixed random vocabulary, spaces and line breaks.
class TextMaker {
 public:
  explicit TextMaker(Rng& rng) : rng_(rng) {
    for (int w = 0; w < 2048; ++w) {
      std::string word;
      auto len = 2 + rng_.below(9);
      for (std::uint64_t c = 0; c < len; ++c) word += static_cast<char>('a' + rng_.below(26));
      words_.push_back(std::move(word));
    }
  }
  void fill(std::span<std::byte> out) {
    std::size_t at = 0, line = 0;
    while (at < out.size()) {
      const std::string& w = words_[rng_.below(words_.size())];
      for (std::size_t c = 0; c < w.size() && at < out.size(); ++c) {
        out[at++] = static_cast<std::byte>(w[c]);
      }
      if (at < out.size()) out[at++] = static_cast<std::byte>(++line % 12 == 0 ? '\n' : ' ');
    }
  }

 private:
  Rng& rng_;
  std::vector<std::string> words_;
};

// ---------------------------------------------------------------------------------
// The machine: caches, memory, load

bool drop_caches() {
  ::sync();
  int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, "3", 1) == 1;
  ::close(fd);
  return ok;
}

// Peak RSS of the process so far (getrusage), in MiB.
double peak_rss_mib() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// Per-phase peak RSS: VmHWM, which writing 5 to /proc/self/clear_refs resets. That
// also resets what getrusage reports as ru_maxrss, so the run's peak is kept here.
double g_run_peak_mib = 0;
std::vector<std::pair<std::string, double>> g_phase_growth;  // phase, peak − RSS at start

void reset_hwm() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

double status_mib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(f, line)) {
    if (line.compare(0, n, field) == 0) return std::strtod(line.c_str() + n, nullptr) / 1024.0;
  }
  return NAN;
}

double hwm_mib() {
  return status_mib("VmHWM:");
}
double rss_mib() {
  return status_mib("VmRSS:");
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Runs argv, waits; true on exit status 0.
bool run(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  if (::posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return false;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void syncfs_path(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::syncfs(fd);
    ::close(fd);
  }
}

// ---------------------------------------------------------------------------------
// Results

struct Row {
  Row(std::string k, std::string l, double v, std::string u, std::string d = {})
      : key(std::move(k)),
        label(std::move(l)),
        value(v),
        unit(std::move(u)),
        detail(std::move(d)) {}
  std::string key;     // stable name, also the JSON key
  std::string label;   // what was measured
  double value = NAN;  // NaN: not measured
  std::string unit;
  std::string detail;
  std::string goal;  // empty: no goal
  int met = -1;      // -1 no goal, 0 missed, 1 met
  nlohmann::json extra = nlohmann::json::object();
};

class Report {
 public:
  Row& add(Row row) {
    std::printf("[%s] %s: ", row.key.c_str(), row.label.c_str());
    if (std::isnan(row.value)) {
      std::printf("not measured");
    } else {
      std::printf("%s %s", format(row.value).c_str(), row.unit.c_str());
    }
    if (!row.detail.empty()) std::printf(" (%s)", row.detail.c_str());
    if (row.met >= 0) std::printf(" — goal %s: %s", row.goal.c_str(), row.met ? "met" : "NOT met");
    std::printf("\n");
    std::fflush(stdout);
    rows_.push_back(std::move(row));
    return rows_.back();
  }

  void note(const std::string& key, const std::string& text) {
    std::printf("[%s] %s\n", key.c_str(), text.c_str());
    std::fflush(stdout);
    notes_.push_back({{"key", key}, {"text", text}});
  }

  static std::string format(double v) {
    char buf[64];
    if (std::isnan(v)) return "–";
    if (std::fabs(v) >= 100) {
      std::snprintf(buf, sizeof buf, "%.0f", v);
    } else if (std::fabs(v) >= 10) {
      std::snprintf(buf, sizeof buf, "%.1f", v);
    } else {
      std::snprintf(buf, sizeof buf, "%.3g", v);
    }
    return buf;
  }

  void print_table() const {
    std::printf("\n| measurement | result | details | goal |\n|---|---|---|---|\n");
    for (const auto& r : rows_) {
      std::string result =
          std::isnan(r.value) ? std::string("not measured") : format(r.value) + " " + r.unit;
      std::string goal = r.met < 0 ? "" : r.goal + (r.met ? ": **met**" : ": **not met**");
      std::printf("| %s | %s | %s | %s |\n", r.label.c_str(), result.c_str(), r.detail.c_str(),
                  goal.c_str());
    }
    std::fflush(stdout);
  }

  nlohmann::json json() const {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : rows_) {
      nlohmann::json j = {{"key", r.key},
                          {"label", r.label},
                          {"unit", r.unit},
                          {"detail", r.detail},
                          {"extra", r.extra}};
      j["value"] = std::isnan(r.value) ? nlohmann::json(nullptr) : nlohmann::json(r.value);
      if (r.met >= 0) {
        j["goal"] = r.goal;
        j["goal_met"] = r.met == 1;
      }
      rows.push_back(std::move(j));
    }
    return {{"results", rows}, {"notes", notes_}};
  }

 private:
  std::vector<Row> rows_;
  nlohmann::json notes_ = nlohmann::json::array();
};

std::string fmt(const char* f, double a) {
  char buf[128];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

// Resets the per-phase peak and remembers where we are.
struct Phase {
  explicit Phase(std::string n) : name(std::move(n)), load_before(loadavg()) {
    g_run_peak_mib = std::max({g_run_peak_mib, hwm_mib(), peak_rss_mib()});
    reset_hwm();
    rss_start = rss_mib();
  }
  nlohmann::json info() const {
    const double peak = hwm_mib();
    g_run_peak_mib = std::max(g_run_peak_mib, peak);
    g_phase_growth.emplace_back(name, peak - rss_start);
    return {{"phase_peak_rss_mib", peak},
            {"rss_at_phase_start_mib", rss_start},
            {"loadavg_before", load_before},
            {"loadavg_after", loadavg()}};
  }
  std::string name;
  std::string load_before;
  double rss_start = 0;
};

// Collects what extract_many delivers; checks it against the originals when given.
struct ExtractTally {
  std::vector<std::span<const std::byte>> expect;  // empty: count only
  std::vector<std::uint64_t> got;                  // bytes delivered per index (when checking)
  std::uint64_t bytes = 0, done = 0, errors = 0, mismatches = 0;
  std::string first_error;

  casfs::ExtractSink sink() {
    if (!expect.empty()) got.assign(expect.size(), 0);
    casfs::ExtractSink s;
    s.data = [this](std::size_t i, std::span<const std::byte> b) {
      bytes += b.size();
      if (expect.empty()) return;
      auto e = expect[i];
      if (got[i] + b.size() > e.size() || std::memcmp(e.data() + got[i], b.data(), b.size()) != 0) {
        ++mismatches;
      }
      got[i] += b.size();
    };
    s.done = [this](std::size_t i) {
      ++done;
      if (!expect.empty() && got[i] != expect[i].size()) ++mismatches;
    };
    s.error = [this](std::size_t, const casfs::StoreError& e) {
      if (errors++ == 0) first_error = e.what();
    };
    return s;
  }
  bool clean(std::size_t n) const { return done == n && errors == 0 && mismatches == 0; }
  std::string problems() const {
    return std::to_string(done) + " done, " + std::to_string(errors) + " errors" +
           (first_error.empty() ? "" : " (first: " + first_error + ")") + ", " +
           std::to_string(mismatches) + " mismatches";
  }
};

// ---------------------------------------------------------------------------------
// Sections 1–4: synthetic objects

void bench_objects(const Options& o, Report& rep, bool can_drop) {
  const fs::path store_dir = o.dir / "store-objects";
  fs::remove_all(store_dir);
  Store::init(store_dir);
  auto store = Store::open(store_dir, open_options(o));
  rep.note("setup", "store " + store_dir.string() + ", io engine " + store->io().name() +
                        " (queue depth " + std::to_string(store->io().queue_depth()) +
                        "), intake packs from " + std::to_string(o.intake_min_objects) +
                        " new objects per batch (0: never)");

  // 1. Small distinct objects, sizes uniform in [0, 1000].
  std::vector<std::vector<std::byte>> small(o.small_count);
  {
    Rng rng(o.seed, 1);
    std::unordered_set<std::string_view> seen;
    for (auto& obj : small) {
      for (;;) {
        obj.resize(rng.below(1001));
        rng.fill(obj);
        std::string_view key(reinterpret_cast<const char*>(obj.data()), obj.size());
        if (seen.insert(key).second) break;  // distinct: draw again on a repeat
      }
    }
  }
  std::vector<std::span<const std::byte>> small_spans(small.begin(), small.end());
  std::uint64_t small_bytes = 0;
  for (const auto& s : small) small_bytes += s.size();

  std::vector<ObjectId> small_ids;
  {
    Phase ph("insert_small");
    auto t0 = Clock::now();
    auto results = store->insert_many(small_spans);
    double t = seconds_since(t0);
    std::size_t added = 0;
    for (const auto& r : results) added += r.added;
    for (const auto& r : results) small_ids.push_back(r.id);
    Row row{"insert_small", std::string("insert_many, small objects (0–1000 B) → ") + tier_name(o),
            static_cast<double>(o.small_count) / t, "objects/s"};
    row.detail = std::to_string(o.small_count) + " objects, " + fmt("%.1f MB", small_bytes / kMB) +
                 ", " + fmt("%.2f s", t) + ", " + fmt("%.1f MB/s", small_bytes / kMB / t);
    if (added != o.small_count) {
      row.detail += "; only " + std::to_string(added) + " reported added";
    }
    row.goal = "≥ 20000 objects/s";
    row.met = row.value >= 20000;
    row.extra = ph.info();
    row.extra["seconds"] = t;
    row.extra["bytes"] = small_bytes;
    row.extra["added"] = added;
    rep.add(std::move(row));
  }

  // 2. 64 KiB objects: even ones text-like (compressible), odd ones random.
  const std::uint64_t large_bytes = static_cast<std::uint64_t>(o.large_count) * kLargeObject;
  std::unique_ptr<std::byte[]> large(new std::byte[large_bytes]);
  std::vector<std::span<const std::byte>> large_spans;
  {
    Rng rng(o.seed, 2);
    TextMaker text(rng);
    for (std::size_t i = 0; i < o.large_count; ++i) {
      std::span<std::byte> obj(large.get() + i * kLargeObject, kLargeObject);
      if (i % 2 == 0) {
        text.fill(obj);
      } else {
        rng.fill(obj);
      }
      large_spans.push_back(obj);
    }
  }
  std::vector<ObjectId> large_ids;
  {
    Phase ph("insert_large");
    auto t0 = Clock::now();
    auto results = store->insert_many(large_spans);
    double t = seconds_since(t0);
    std::size_t added = 0;
    for (const auto& r : results) {
      added += r.added;
      large_ids.push_back(r.id);
    }
    Row row{"insert_large",
            std::string("insert_many, 64 KiB objects (½ text, ½ random) → ") + tier_name(o),
            large_bytes / kMB / t, "MB/s"};
    row.detail = std::to_string(o.large_count) + " objects, " +
                 fmt("%.0f MiB", large_bytes / 1048576.0) + ", " + fmt("%.2f s", t) + ", " +
                 fmt("%.0f objects/s", o.large_count / t);
    if (added != o.large_count) row.detail += "; only " + std::to_string(added) + " added";
    row.extra = ph.info();
    row.extra["seconds"] = t;
    row.extra["bytes"] = large_bytes;
    row.extra["added"] = added;
    rep.add(std::move(row));
  }

  // 3. Pack everything.
  {
    Phase ph("pack");
    auto t0 = Clock::now();
    auto pr = store->pack();
    double t = seconds_since(t0);
    auto st = store->status();
    Row row{"pack", "pack (all of 1 and 2)", pr.raw_bytes / kMB / t, "MB/s"};
    row.detail = std::to_string(pr.objects) + " objects, " +
                 fmt("%.1f MB raw", pr.raw_bytes / kMB) + " → " +
                 fmt("%.1f MB stored", pr.stored_bytes / kMB) +
                 fmt(" (ratio %.3f)",
                     static_cast<double>(pr.stored_bytes) / static_cast<double>(pr.raw_bytes)) +
                 ", " + fmt("%.2f s", t) + ", " + fmt("%.0f objects/s", pr.objects / t);
    const std::uint64_t expected = o.small_count + o.large_count;
    if (pr.objects != expected || st.unpacked_objects() != 0) {
      row.detail += "; expected " + std::to_string(expected) + " objects packed, store says " +
                    std::to_string(st.packed_objects) + " packed / " +
                    std::to_string(st.unpacked_objects()) + " loose or intake";
    }
    row.extra = ph.info();
    row.extra["seconds"] = t;
    row.extra["objects"] = pr.objects;
    row.extra["raw_bytes"] = pr.raw_bytes;
    row.extra["stored_bytes"] = pr.stored_bytes;
    row.extra["pack_files"] = st.packs;
    row.extra["pack_file_bytes"] = st.pack_file_bytes;
    rep.add(std::move(row));
    Row rate{"pack_objects", "pack, objects per second", pr.objects / t, "objects/s"};
    rep.add(std::move(rate));
  }

  // 4. extract_many of the small packed objects: a checked pass, then warm, then cold.
  auto extract = [&](const std::vector<ObjectId>& ids, ExtractTally& tally) {
    auto sink = tally.sink();
    auto t0 = Clock::now();
    store->extract_many(ids, sink);
    return seconds_since(t0);
  };
  {
    Phase ph("extract_small");
    ExtractTally check;
    check.expect = small_spans;
    double t1 = extract(small_ids, check);
    rep.note("extract_small", fmt("first (checked) pass: %.2f s, ", t1) + check.problems());
    ExtractTally warm;
    double t2 = extract(small_ids, warm);
    Row row{"extract_small_warm", "extract_many, small packed objects, warm (2nd run)",
            o.small_count / t2, "objects/s"};
    row.detail = fmt("%.3f s", t2) + ", " + fmt("%.1f MB/s", warm.bytes / kMB / t2) +
                 fmt("; 1st run %.0f objects/s", o.small_count / t1);
    if (!check.clean(o.small_count) || !warm.clean(o.small_count)) {
      row.detail += "; PROBLEMS: " + check.problems() + " / " + warm.problems();
    }
    row.goal = "≥ 200000 objects/s";
    row.met = row.value >= 200000;
    row.extra = ph.info();
    row.extra["seconds"] = t2;
    row.extra["first_run_seconds"] = t1;
    row.extra["checked_ok"] = check.clean(o.small_count);
    rep.add(std::move(row));
  }
  {
    Phase ph("extract_small_cold");
    Row row{"extract_small_cold", "extract_many, small packed objects, cold", NAN, "objects/s"};
    if (!can_drop) {
      row.detail = "cold: not measured (cannot drop caches)";
    } else {
      drop_caches();
      ExtractTally cold;
      double t = extract(small_ids, cold);
      row.value = o.small_count / t;
      row.detail = fmt("%.3f s", t) + ", " + fmt("%.1f MB/s", cold.bytes / kMB / t);
      if (!cold.clean(o.small_count)) row.detail += "; PROBLEMS: " + cold.problems();
      row.extra["seconds"] = t;
    }
    row.extra.update(ph.info());
    rep.add(std::move(row));
  }
  // Extra: the 64 KiB objects back out of the packs (decompression-bound), warm.
  {
    Phase ph("extract_large");
    ExtractTally check;
    check.expect = large_spans;
    double t1 = extract(large_ids, check);
    ExtractTally warm;
    double t2 = extract(large_ids, warm);
    Row row{"extract_large_warm", "extract_many, 64 KiB packed objects, warm (2nd run)",
            large_bytes / kMB / t2, "MB/s"};
    row.detail = fmt("%.2f s", t2) + ", " + fmt("%.0f objects/s", o.large_count / t2) +
                 fmt("; 1st run %.0f MB/s", large_bytes / kMB / t1);
    if (!check.clean(o.large_count) || !warm.clean(o.large_count)) {
      row.detail += "; PROBLEMS: " + check.problems() + " / " + warm.problems();
    }
    row.extra = ph.info();
    row.extra["seconds"] = t2;
    row.extra["checked_ok"] = check.clean(o.large_count);
    rep.add(std::move(row));
  }
  store.reset();
  if (!o.keep) fs::remove_all(store_dir);
}

// ---------------------------------------------------------------------------------
// Section 5: a real source tree

void bench_tree(const Options& o, Report& rep) {
  std::vector<fs::path> files;
  std::uint64_t raw = 0;
  for (auto it = fs::recursive_directory_iterator(o.tree, fs::directory_options::none);
       it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_symlink() && it->is_regular_file()) {
      files.push_back(it->path());
      raw += it->file_size();
      if (o.tree_max_files && files.size() >= o.tree_max_files) break;
    }
  }
  rep.note("tree", o.tree.string() + ": " + std::to_string(files.size()) + " regular files, " +
                       fmt("%.1f MB", raw / kMB));

  // The source is read warm by both sides: read it all once, untimed.
  {
    std::vector<char> buf(1 << 20);
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
      }
    }
  }

  // ext4 baseline: cp -a of the same files' tree, then sync. With --tree-max-files the
  // subset is copied file by file with cp --parents -a, which is slower per file, so the
  // baseline is only meaningful for whole trees.
  const fs::path copy_dir = o.dir / "ext4-copy";
  fs::remove_all(copy_dir);
  syncfs_path(o.dir);
  double cp_seconds = NAN;
  {
    Phase ph("ext4_copy");
    bool ok;
    auto t0 = Clock::now();
    if (o.tree_max_files == 0) {
      ok = run({"cp", "-a", "--", o.tree.string(), copy_dir.string()});
    } else {
      fs::create_directories(copy_dir);
      std::vector<std::string> args{"cp", "-a", "--parents", "-t", copy_dir.string(), "--"};
      std::string cwd = fs::current_path().string();
      fs::current_path(o.tree);
      ok = true;
      for (std::size_t i = 0; i < files.size() && ok; i += 2000) {
        auto a = args;
        for (std::size_t k = i; k < std::min(files.size(), i + 2000); ++k) {
          a.push_back(fs::relative(files[k], o.tree).string());
        }
        ok = run(a);
      }
      fs::current_path(cwd);
    }
    syncfs_path(copy_dir);
    cp_seconds = seconds_since(t0);
    Row row{"ext4_copy", "ext4 baseline: cp -a of the tree + sync", raw / kMB / cp_seconds, "MB/s"};
    row.detail = fmt("%.2f s", cp_seconds) + ", " + fmt("%.0f files/s", files.size() / cp_seconds);
    if (!ok) row.detail += "; cp FAILED";
    row.extra = ph.info();
    row.extra["seconds"] = cp_seconds;
    rep.add(std::move(row));
  }
  fs::remove_all(copy_dir);
  syncfs_path(o.dir);

  const fs::path store_dir = o.dir / "store-tree";
  fs::remove_all(store_dir);
  Store::init(store_dir);
  auto store = Store::open(store_dir, open_options(o));
  double insert_seconds;
  {
    Phase ph("tree_insert");
    std::atomic<std::size_t> added{0}, failed{0};
    std::mutex err_mu;
    std::vector<ObjectId> ids(files.size());
    std::string first_error;
    // insert_files batches the small files (one sync and one commit per batch);
    // with more than one thread, each takes an equal share of the paths.
    auto worker = [&](std::size_t part) {
      std::size_t per = (files.size() + o.tree_threads - 1) / o.tree_threads;
      std::size_t from = std::min(files.size(), part * per);
      std::size_t to = std::min(files.size(), from + per);
      std::span<const fs::path> mine(files.data() + from, to - from);
      store->insert_files(
          mine, [&](std::size_t k, const casfs::InsertResult* r, const casfs::StoreError* e) {
            if (r != nullptr) {
              if (r->added) ++added;
              ids[from + k] = r->id;
            } else if (failed++ == 0) {
              std::lock_guard lock(err_mu);
              first_error = files[from + k].string() + ": " + e->what();
            }
          });
    };
    auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (unsigned k = 1; k < o.tree_threads; ++k) threads.emplace_back(worker, k);
    worker(0);
    for (auto& t : threads) t.join();
    insert_seconds = seconds_since(t0);
    // Cross-check of `added`: the distinct ids among what was inserted.
    std::unordered_set<ObjectId, casfs::ObjectIdHash> distinct(ids.begin(), ids.end());
    distinct.erase(ObjectId{});
    Row row{"tree_insert",
            "tree: insert_files of every file (" + std::to_string(o.tree_threads) + " thread" +
                (o.tree_threads > 1 ? "s" : "") + ")",
            raw / kMB / insert_seconds, "MB/s"};
    row.detail = std::to_string(files.size()) + " files, " + fmt("%.1f MB", raw / kMB) + ", " +
                 fmt("%.2f s", insert_seconds) + ", " +
                 fmt("%.0f files/s", files.size() / insert_seconds) + ", " +
                 std::to_string(distinct.size()) + " distinct objects" +
                 fmt("; %.2f× the time of cp -a + sync", insert_seconds / cp_seconds);
    if (failed)
      row.detail += "; " + std::to_string(failed.load()) + " FAILED, first: " + first_error;
    row.extra = ph.info();
    row.extra["seconds"] = insert_seconds;
    row.extra["files"] = files.size();
    row.extra["raw_bytes"] = raw;
    row.extra["distinct_objects"] = distinct.size();
    row.extra["reported_added"] = added.load();
    if (added.load() != distinct.size()) {
      row.detail += "; insert_file reported " + std::to_string(added.load()) + " added";
    }
    row.extra["failed"] = failed.load();
    row.extra["time_vs_cp"] = insert_seconds / cp_seconds;
    rep.add(std::move(row));
  }
  {
    Phase ph("tree_pack");
    auto t0 = Clock::now();
    auto pr = store->pack();
    double t = seconds_since(t0);
    auto st = store->status();
    Row row{"tree_pack", "tree: pack", pr.raw_bytes / kMB / t, "MB/s"};
    row.detail = std::to_string(pr.objects) + " objects, " +
                 fmt("%.1f MB raw", pr.raw_bytes / kMB) + " → " +
                 fmt("%.1f MB stored", pr.stored_bytes / kMB) + ", " + fmt("%.2f s", t) + ", " +
                 fmt("%.0f objects/s", pr.objects / t);
    row.goal = "≥ 200 MB/s";
    row.met = row.value >= 200;
    row.extra = ph.info();
    row.extra["seconds"] = t;
    row.extra["objects"] = pr.objects;
    row.extra["raw_bytes"] = pr.raw_bytes;
    row.extra["stored_bytes"] = pr.stored_bytes;
    row.extra["pack_file_bytes"] = st.pack_file_bytes;
    rep.add(std::move(row));
    Row ratio{"tree_ratio", "tree: stored / raw (files' bytes, after dedup and zstd)",
              static_cast<double>(st.stored_bytes()) / static_cast<double>(raw), "",
              fmt("pack files %.1f MB on disk", st.pack_file_bytes / kMB) +
                  fmt(" for %.1f MB of files", raw / kMB)};
    rep.add(std::move(ratio));
    Row total{"tree_total_vs_cp", "tree: (insert + pack) time / (cp -a + sync) time",
              (insert_seconds + t) / cp_seconds, "×"};
    rep.add(std::move(total));
  }
  store.reset();
  if (!o.keep) fs::remove_all(store_dir);
}

// ---------------------------------------------------------------------------------
// Section 6: io_uring vs sync engine on random 64 KiB reads

fs::path ensure_randread_file(const Options& o, Report& rep) {
  const fs::path path = o.dir / ("randread-" + std::to_string(o.randread_file_bytes >> 20) +
                                 "MiB-seed" + std::to_string(o.seed) + ".bin");
  std::error_code ec;
  if (fs::file_size(path, ec) == o.randread_file_bytes) {
    rep.note("engines", "reusing " + path.string());
    return path;
  }
  auto t0 = Clock::now();
  const fs::path tmp = path.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) casfs::throw_errno("cannot create " + tmp.string());
  Rng rng(o.seed, 6);
  std::vector<std::byte> buf(16 << 20);
  for (std::uint64_t at = 0; at < o.randread_file_bytes;) {
    auto n = std::min<std::uint64_t>(buf.size(), o.randread_file_bytes - at);
    rng.fill(std::span<std::byte>(buf).first(n));
    for (std::uint64_t done = 0; done < n;) {
      ssize_t w = ::pwrite(fd, buf.data() + done, n - done, static_cast<off_t>(at + done));
      if (w < 0) {
        if (errno == EINTR) continue;
        ::close(fd);
        casfs::throw_errno("cannot write " + tmp.string());
      }
      done += static_cast<std::uint64_t>(w);
    }
    at += n;
  }
  ::fsync(fd);
  ::close(fd);
  fs::rename(tmp, path);
  rep.note("engines", "created " + path.string() + fmt(" in %.1f s", seconds_since(t0)));
  return path;
}

struct ReadRun {
  double seconds = 0;
  std::uint64_t errors = 0;
};

ReadRun random_reads(casfs::IoEngine& engine, const fs::path& file,
                     const std::vector<std::uint64_t>& offsets, std::size_t batch) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) casfs::throw_errno("cannot open " + file.string());
  // Readahead would turn each cold 64 KiB read into a larger one; both engines get
  // exactly the bytes they ask for.
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
  std::vector<std::byte> bufs(batch * kLargeObject);
  std::vector<casfs::ReadOp> ops;
  ReadRun r;
  auto t0 = Clock::now();
  for (std::size_t i = 0; i < offsets.size(); i += batch) {
    ops.clear();
    for (std::size_t k = i; k < std::min(offsets.size(), i + batch); ++k) {
      std::span<std::byte> b(bufs.data() + (k - i) * kLargeObject, kLargeObject);
      ops.push_back(casfs::ReadOp{fd, offsets[k], b, 0});
    }
    engine.read(ops);
    for (const auto& op : ops) r.errors += op.result != static_cast<std::int64_t>(kLargeObject);
  }
  r.seconds = seconds_since(t0);
  ::close(fd);
  return r;
}

void bench_engines(const Options& o, Report& rep, bool can_drop) {
  const fs::path file = ensure_randread_file(o, rep);
  std::vector<std::uint64_t> offsets(o.randread_ops);
  {
    Rng rng(o.seed, 7);
    const std::uint64_t slots = o.randread_file_bytes / kLargeObject;
    for (auto& off : offsets) off = rng.below(slots) * kLargeObject;
  }
  const unsigned depth = casfs::queue_depth_for(o.dir);
  std::unique_ptr<casfs::IoEngine> uring;
  try {
    uring = casfs::make_uring_engine(depth);
  } catch (const std::exception& e) {
    rep.note("engines", std::string("io_uring not available: ") + e.what());
  }
  auto sync = casfs::make_sync_engine(o.sync_threads);
  rep.note("engines", "io_uring queue depth " + std::to_string(depth) + " (queue_depth_for " +
                          o.dir.string() + "), sync engine " + std::to_string(o.sync_threads) +
                          " threads; " + std::to_string(o.randread_ops) +
                          " reads of 64 KiB in batches of " + std::to_string(o.randread_batch) +
                          fmt(", file %.0f MiB", o.randread_file_bytes / 1048576.0));
  const double mb = static_cast<double>(o.randread_ops) * kLargeObject / kMB;

  auto measure = [&](const std::string& mode, bool cold) {
    std::vector<double> uring_s, sync_s;
    std::uint64_t errors = 0;
    Phase ph("engines_" + mode);
    if (!cold) {
      // Warm: the whole file in the page cache first.
      std::vector<std::uint64_t> seq;
      for (std::uint64_t at = 0; at < o.randread_file_bytes; at += kLargeObject) seq.push_back(at);
      random_reads(*sync, file, seq, o.randread_batch);
    }
    for (unsigned round = 0; round < (cold ? o.rounds : 1); ++round) {
      for (auto* engine : {uring.get(), sync.get()}) {
        if (!engine) continue;
        if (cold) drop_caches();
        auto r = random_reads(*engine, file, offsets, o.randread_batch);
        errors += r.errors;
        (engine == uring.get() ? uring_s : sync_s).push_back(r.seconds);
        rep.note("engines", mode + " " + engine->name() + fmt(": %.3f s", r.seconds) +
                                fmt(", %.0f IOPS", o.randread_ops / r.seconds) +
                                fmt(", %.1f MB/s", mb / r.seconds) +
                                (r.errors ? ", " + std::to_string(r.errors) + " bad reads" : ""));
      }
    }
    auto mean = [](const std::vector<double>& v) {
      double s = 0;
      for (double x : v) s += x;
      return v.empty() ? NAN : s / static_cast<double>(v.size());
    };
    double tu = mean(uring_s), ts = mean(sync_s);
    std::string rounds = cold && o.rounds > 1 ? fmt(", mean of %.0f rounds", o.rounds) : "";
    std::string bad = errors ? "; " + std::to_string(errors) + " BAD READS" : "";
    Row ru{"randread_" + mode + "_uring", "random 64 KiB reads, " + mode + ", io_uring",
           o.randread_ops / tu, "IOPS",
           fmt("%.1f MB/s", mb / tu) + fmt(", queue depth %.0f", depth) + rounds + bad};
    ru.extra = ph.info();
    ru.extra["seconds"] = uring_s;
    rep.add(std::move(ru));
    Row rs{"randread_" + mode + "_sync", "random 64 KiB reads, " + mode + ", sync engine",
           o.randread_ops / ts, "IOPS",
           fmt("%.1f MB/s", mb / ts) + fmt(", %.0f threads", o.sync_threads) + rounds + bad};
    rs.extra["seconds"] = sync_s;
    rep.add(std::move(rs));
    Row ratio{"randread_" + mode + "_ratio", "random 64 KiB reads, " + mode + ", io_uring / sync",
              ts / tu, "×"};
    if (cold) {
      ratio.goal = "≥ 2×";
      ratio.met = std::isnan(ratio.value) ? 0 : ratio.value >= 2;
    }
    rep.add(std::move(ratio));
  };
  if (can_drop) {
    measure("cold", true);
  } else {
    Row row{"randread_cold_ratio", "random 64 KiB reads, cold, io_uring / sync", NAN, "×",
            "cold: not measured (cannot drop caches)"};
    rep.add(std::move(row));
  }
  measure("warm", false);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const auto started = std::time(nullptr);
  const auto t_total = Clock::now();
  Report rep;

  std::error_code ec;
  fs::create_directories(o.dir, ec);
  if (ec) {
    std::fprintf(stderr, "casfs_store_bench: cannot create %s: %s\n", o.dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  struct utsname un {};
  ::uname(&un);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&started));
  std::printf("casfs_store_bench%s: seed %llu, dir %s, kernel %s, %u cpus, load %s, %s\n",
              o.quick ? " --quick" : "", static_cast<unsigned long long>(o.seed), o.dir.c_str(),
              un.release, std::thread::hardware_concurrency(), loadavg().c_str(), date);
  if (!o.tree.empty()) std::printf("tree: %s\n", o.tree.c_str());
  std::fflush(stdout);

  // Cold measurements need the page cache emptied, which needs root.
  const bool can_drop = drop_caches();
  if (!can_drop) rep.note("setup", "cannot write /proc/sys/vm/drop_caches: cold runs are skipped");

  int failures = 0;
  auto section = [&](const char* name, const std::function<void()>& body) {
    if (!wanted(o, name)) return;
    try {
      body();
    } catch (const std::exception& e) {
      ++failures;
      rep.note(name, std::string("FAILED: ") + e.what());
    }
  };
  section("objects", [&] { bench_objects(o, rep, can_drop); });
  section("tree", [&] {
    if (o.tree.empty()) {
      rep.note("tree", "no --tree given: skipped");
      return;
    }
    bench_tree(o, rep);
  });
  section("engines", [&] { bench_engines(o, rep, can_drop); });

  const double total = seconds_since(t_total);
  g_run_peak_mib = std::max({g_run_peak_mib, hwm_mib(), peak_rss_mib()});
  std::string growth;
  for (const auto& [phase, mib] : g_phase_growth) {
    growth += (growth.empty() ? "" : ", ") + phase + fmt(" +%.0f", mib);
  }
  rep.add(Row{"peak_rss", "peak RSS of the run (VmHWM per phase, getrusage ru_maxrss)",
              g_run_peak_mib, "MiB",
              "includes the benchmark's own copy of the generated data; growth above the RSS "
              "at each phase's start, MiB: " +
                  growth});
  rep.print_table();
  std::printf("\ntotal %.1f s, seed %llu%s\n", total, static_cast<unsigned long long>(o.seed),
              failures ? ", SOME SECTIONS FAILED" : "");

  if (!o.json_path.empty()) {
    nlohmann::json j = rep.json();
    j["seed"] = o.seed;
    j["intake_min_objects"] = o.intake_min_objects;
    j["quick"] = o.quick;
    j["dir"] = o.dir.string();
    j["tree"] = o.tree.string();
    j["started"] = date;
    j["kernel"] = un.release;
    j["cpus"] = std::thread::hardware_concurrency();
    j["total_seconds"] = total;
    j["peak_rss_mib"] = g_run_peak_mib;
    j["failed_sections"] = failures;
    std::ofstream out(o.json_path);
    out << j.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "casfs_store_bench: cannot write %s\n", o.json_path.c_str());
      return 1;
    }
  }
  return failures ? 1 : 0;
}
