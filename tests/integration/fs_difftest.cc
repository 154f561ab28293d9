// fs_difftest: a seeded, randomized differential filesystem tester.
//
// It applies one random sequence of filesystem operations to two directory trees, one on the
// filesystem under test (--test, e.g. a casfs FUSE mount) and one on a reference filesystem
// (--ref, e.g. ext4), and checks that every operation returns the same result (value, errno,
// bytes, metadata) on both sides and that the two trees stay identical.
//
//   fs_difftest --test DIR --ref DIR --seed N --ops N [--remount-cmd CMD]
//               [--remount-every N] [--max-file-size BYTES] [--verbose]
//
// The tester works in DIR/work-<seed> on each side (removed first if left over, removed again
// after a clean run, kept after a mismatch). Exit status: 0 when everything matched, 1 on the
// first mismatch (or a failing remount command), 2 for usage errors.
//
// Determinism: every random choice comes from one std::mt19937_64 seeded with --seed and
// depends only on what the reference side reports, so a seed replays the same operations.
// Remount points come from a second generator seeded from the same seed; a remount closes
// every fd and mapping, so the same seed with another --remount-cmd/--remount-every setting
// gives a different run.
//
// Compared: every call's return value and errno (successful fds and addresses only as
// success); bytes read through read/pread/mmap/getxattr/readlink; st_mode, st_nlink (of
// directories too) and st_size (not of directories) from stat/lstat/fstat; and, every 1000 ops,
// after each remount and at the end, the whole tree: names, d_type, lstat as above, file
// contents, symlink targets, user.* xattrs. Mtimes of files and symlinks are compared only
// where the tester set them with utimensat and nothing changed them since. Never compared:
// st_ino, st_dev, st_blocks, st_blksize, atime, ctime, directory sizes, SEEK_DATA/SEEK_HOLE,
// statfs.
//
// What the filesystem under test must therefore do like ext4: report d_type in readdir;
// count directory links as 2 + subdirectories; report nlink 0 through fds of unlinked files
// and keep those fds fully working; apply the umask (022) to new modes; support
// RENAME_NOREPLACE and RENAME_EXCHANGE, fallocate mode 0 and PUNCH_HOLE|KEEP_SIZE,
// copy_file_range (copying up to the source's EOF in one call), user.* xattrs on files and
// directories, shared writable mmap, symlink targets of a few KB, nanosecond timestamps with
// 64-bit seconds; keep an mtime set by utimensat (no later stamping by write-back of data
// written before it, except unsynced mmap writes, which POSIX allows); return the same
// errno as ext4 in every error case.
//
// Only the C++ standard library and POSIX/Linux headers are used, so the program can be built
// and run on its own: g++ -std=c++20 -O2 -o fs_difftest fs_difftest.cc

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace {

constexpr int kTest = 0;
constexpr int kRef = 1;
constexpr const char* kSideName[2] = {"test", "ref"};

constexpr std::size_t kMaxIo = 300 * 1024;      // largest single write, read or copy
constexpr std::size_t kPoolSize = 1 << 20;      // shared random data that writes repeat
constexpr std::size_t kCompareChunk = 1 << 20;  // read size of the full tree compare
constexpr std::size_t kMaxFds = 8;              // open fd pairs held at once
constexpr std::size_t kMaxMaps = 3;             // live mmap pairs held at once
constexpr std::size_t kHistory = 20;            // ops shown in a mismatch report
constexpr std::uint64_t kCompareEvery = 1000;   // full tree compare interval, in ops
constexpr int kMaxDepth = 3;                    // levels kept by the tree compare
constexpr std::uint64_t kMaxTime = 4102444800;  // 2100-01-01: utimensat seconds range
constexpr std::size_t kXattrBuf = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Small helpers

std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string strf(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return "?";
  if (static_cast<std::size_t>(n) < sizeof buf) return std::string(buf, n);
  std::string s(n, '\0');
  va_start(ap, fmt);
  std::vsnprintf(s.data(), s.size() + 1, fmt, ap);
  va_end(ap);
  return s;
}

std::string errno_name(int e) {
  const char* name = strerrorname_np(e);
  return name ? name : strf("errno %d", e);
}

using ull = unsigned long long;

// What one side returned: the return value, and errno when it failed.
struct Outcome {
  long ret = 0;
  int err = 0;
  bool operator==(const Outcome&) const = default;
};

// Captures errno right after the call, so it must wrap the call directly.
Outcome outcome(long ret) {
  return {ret, ret < 0 ? errno : 0};
}

std::string to_string(const Outcome& o) {
  return o.ret < 0 ? "-1 " + errno_name(o.err) : std::to_string(o.ret);
}

using Pair = std::array<Outcome, 2>;  // indexed by kTest / kRef

std::string show(const std::string& rel) {
  return rel.empty() ? "." : rel;
}
std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

std::string open_flags_str(int flags) {
  std::string s;
  switch (flags & O_ACCMODE) {
    case O_RDONLY:
      s = "O_RDONLY";
      break;
    case O_WRONLY:
      s = "O_WRONLY";
      break;
    default:
      s = "O_RDWR";
      break;
  }
  const std::pair<int, const char*> bits[] = {
      {O_CREAT, "O_CREAT"},   {O_EXCL, "O_EXCL"},         {O_TRUNC, "O_TRUNC"},
      {O_APPEND, "O_APPEND"}, {O_NOFOLLOW, "O_NOFOLLOW"}, {O_DIRECTORY, "O_DIRECTORY"}};
  for (auto [bit, name] : bits) {
    if (flags & bit) s += std::string("|") + name;
  }
  return s;
}

std::string mode_str(mode_t m) {
  return strf("0%o", static_cast<unsigned>(m));
}

std::string stat_str(const struct stat& st) {
  return strf("mode=%s nlink=%llu size=%lld mtime=%lld.%09ld", mode_str(st.st_mode).c_str(),
              static_cast<ull>(st.st_nlink), static_cast<long long>(st.st_size),
              static_cast<long long>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec);
}

std::uint64_t file_size(const struct stat& st) {
  return S_ISREG(st.st_mode) ? static_cast<std::uint64_t>(st.st_size) : 0;
}

// Reads until `len` bytes or end of file; the tree compare wants whole files, not read(2)
// semantics.
ssize_t pread_full(int fd, char* buf, std::size_t len, off_t off) {
  std::size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, buf + done, len - done, off + static_cast<off_t>(done));
    if (n < 0) return -1;
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

// Index of the first byte where two buffers differ, or len.
std::size_t first_difference(const char* a, const char* b, std::size_t len) {
  if (std::memcmp(a, b, len) == 0) return len;
  std::size_t i = 0;
  while (a[i] == b[i]) ++i;
  return i;
}

// Up to 16 bytes from `at` in hex, for reports.
std::string hex_at(const char* p, std::size_t at, std::size_t len) {
  std::string s;
  for (std::size_t j = at; j < len && j < at + 16; ++j) {
    s += strf("%02x", static_cast<unsigned char>(p[j]));
  }
  return s + (at + 16 < len ? "..." : "");
}

// ---------------------------------------------------------------------------------------------
// SIGBUS guard: touching a mapped page that lies wholly past EOF raises SIGBUS. The tester only
// touches bytes inside the file, so a SIGBUS is a filesystem problem to report, not a crash.

sigjmp_buf g_bus_jump;
volatile sig_atomic_t g_bus_armed = 0;

void on_sigbus(int) {
  if (g_bus_armed) siglongjmp(g_bus_jump, 1);
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}

// memcpy that returns false instead of dying when either side of the copy faults.
bool guarded_copy(char* dst, const char* src, std::size_t len) {
  if (sigsetjmp(g_bus_jump, 1) != 0) {
    g_bus_armed = 0;
    return false;
  }
  g_bus_armed = 1;
  std::memcpy(dst, src, len);
  g_bus_armed = 0;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Command line

struct Options {
  std::string test_dir;
  std::string ref_dir;
  std::string remount_cmd;
  std::uint64_t seed = 0;
  std::uint64_t ops = 0;
  std::uint64_t remount_every = 2000;
  std::uint64_t max_file_size = 8 << 20;
  bool verbose = false;
};

constexpr const char* kUsage =
    "usage: fs_difftest --test DIR --ref DIR --seed N --ops N [--remount-cmd CMD]\n"
    "                   [--remount-every N] [--max-file-size BYTES] [--verbose]\n";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "fs_difftest: %s\n%s", msg.c_str(), kUsage);
  std::exit(2);
}

std::uint64_t parse_number(const std::string& opt, const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
    usage_error(opt + " needs a non-negative integer, got '" + text + "'");
  }
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) usage_error(opt + " value out of range: " + text);
  return v;
}

Options parse_args(int argc, char** argv) {
  Options opt;
  bool have_seed = false, have_ops = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--verbose") {
      opt.verbose = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    static const std::set<std::string> kWithValue = {
        "--test",        "--ref",           "--seed",         "--ops",
        "--remount-cmd", "--remount-every", "--max-file-size"};
    if (!kWithValue.count(arg)) usage_error("unknown option " + arg);
    if (i + 1 >= argc) usage_error("missing value for " + arg);
    std::string val = argv[++i];
    if (arg == "--test") {
      opt.test_dir = val;
    } else if (arg == "--ref") {
      opt.ref_dir = val;
    } else if (arg == "--seed") {
      opt.seed = parse_number(arg, val);
      have_seed = true;
    } else if (arg == "--ops") {
      opt.ops = parse_number(arg, val);
      have_ops = true;
    } else if (arg == "--remount-cmd") {
      opt.remount_cmd = val;
    } else if (arg == "--remount-every") {
      opt.remount_every = parse_number(arg, val);
      if (opt.remount_every == 0) usage_error("--remount-every must be at least 1");
    } else if (arg == "--max-file-size") {
      opt.max_file_size = parse_number(arg, val);
      if (opt.max_file_size == 0) usage_error("--max-file-size must be at least 1");
    }
  }
  if (opt.test_dir.empty()) usage_error("--test DIR is required");
  if (opt.ref_dir.empty()) usage_error("--ref DIR is required");
  if (!have_seed) usage_error("--seed N is required");
  if (!have_ops) usage_error("--ops N is required");
  return opt;
}

// ---------------------------------------------------------------------------------------------
// The tester

// clang-format off
enum Op : int {
  kOpOpen, kOpClose, kOpWrite, kOpRead, kOpSeek, kOpTruncate, kOpFtruncate, kOpFallocate,
  kOpRename, kOpLink, kOpUnlink, kOpMkdir, kOpRmdir, kOpSymlink, kOpReadlink, kOpChmod,
  kOpUtimens, kOpSetxattr, kOpGetxattr, kOpListxattr, kOpRemovexattr, kOpMmap, kOpMapWrite,
  kOpMapRead, kOpMunmap, kOpFsync, kOpCopyRange, kOpStat, kOpFstat, kOpReaddir, kOpCount
};
// clang-format on

// A file opened on both sides by the same open() call.
struct FdSlot {
  int id;  // stable name for logs ("fd7")
  int fd[2];
  int flags;
  std::string path;  // the path it was opened by (it may since have been renamed/unlinked)
  ino_t ref_ino;     // reference inode, the key of the mtime bookkeeping
  bool is_reg;
};

// A MAP_SHARED mapping of the same range of the same file on both sides. It holds its own
// duplicate of the fds, so that it can check the file size before touching pages.
struct MapSlot {
  int id;
  char* addr[2];
  int fd[2];
  std::size_t len;
  std::uint64_t off;
  bool writable;
  ino_t ref_ino;
  std::string path;
};

class Tester {
 public:
  explicit Tester(Options opt);
  int run();

 private:
  // Random choices. Own arithmetic instead of std distributions, whose output may differ
  // between standard libraries: a seed must replay the same ops wherever it is built.
  std::uint64_t below(std::uint64_t n) { return n ? rng_() % n : 0; }
  std::uint64_t range(std::uint64_t lo, std::uint64_t hi) { return lo + below(hi - lo + 1); }
  bool chance(unsigned percent) { return below(100) < percent; }
  void fill_random(char* d, std::size_t n);
  std::string random_path();
  template <class Pred>
  std::string pick_path(Pred want);
  std::string pick_free_path();
  std::uint64_t choose_offset(std::uint64_t size);
  std::uint64_t choose_read_offset(std::uint64_t size);
  std::size_t choose_len();
  off_t choose_trunc_len(std::uint64_t size);
  std::size_t clamp_growth(std::uint64_t off, std::size_t len, std::uint64_t size) const;
  const char* make_data(std::size_t len, std::string* how);
  std::string symlink_target();
  struct timespec random_time();

  // Running an operation on both sides and comparing.
  std::string at(int side, const std::string& rel) const {
    return rel.empty() ? work_[side] : work_[side] + "/" + rel;
  }
  template <class F>
  Pair both(F&& f) {
    Pair o;
    o[kRef] = f(kRef);
    o[kTest] = f(kTest);
    return o;
  }
  template <class F>
  Outcome same(const char* what, F&& f);
  void expect(const char* what, const Pair& o);
  void expect_status(const char* what, const Pair& o);
  void expect_bytes(const std::string& what, std::size_t len, std::uint64_t base);
  void begin(Op op, const std::string& desc);
  void push_history(const std::string& line);
  void note(const std::string& s);
  [[noreturn]] void fail(const std::string& what, const std::string& test, const std::string& ref);
  [[noreturn]] void fail_pair(const std::string& what, const Pair& o) {
    fail(what, to_string(o[kTest]), to_string(o[kRef]));
  }

  // Metadata comparison and mtime bookkeeping.
  void compare_stat(const struct stat st[2], const std::string& what);
  struct stat fstat_both(const int fd[2], const std::string& what);
  bool pinned(ino_t ino) const { return pinned_.count(ino) != 0; }
  void pin(ino_t ino) { pinned_.insert(ino); }
  void unpin(ino_t ino) { pinned_.erase(ino); }
  bool ref_stat(const std::string& rel, bool follow, struct stat* st) const;

  // Open fds and mappings.
  FdSlot* pick_fd() { return fds_.empty() ? nullptr : &fds_[below(fds_.size())]; }
  std::string slot_name(const FdSlot& s) const { return strf("fd%d(%s)", s.id, s.path.c_str()); }
  std::uint64_t position(const FdSlot& s);
  void close_slot(std::size_t index, bool announce);
  void unmap_slot(std::size_t index, bool announce);
  void close_all();
  std::size_t map_valid_len(const MapSlot& m);

  // Operations.
  struct OpInfo {
    const char* name;
    unsigned weight;
    void (Tester::*run)();
  };
  static const OpInfo kOps[kOpCount];
  void random_op();
  void op_open();
  void op_close();
  void op_write();
  void op_read();
  void op_seek();
  void op_truncate();
  void op_ftruncate();
  void op_fallocate();
  void op_rename();
  void op_link();
  void op_unlink();
  void op_mkdir();
  void op_rmdir();
  void op_symlink();
  void op_readlink();
  void op_chmod();
  void op_utimens();
  void op_setxattr();
  void op_getxattr();
  void op_listxattr();
  void op_removexattr();
  void op_mmap();
  void op_map_write();
  void op_map_read();
  void op_munmap();
  void op_fsync();
  void op_copy_range();
  void op_stat();
  void op_fstat();
  void op_readdir();

  // Whole-tree comparison and remounting.
  void compare_tree(const std::string& why);
  bool compare_listing(const std::string& rel, std::map<std::string, unsigned char>* out);
  void compare_dir(const std::string& rel, int depth);
  void compare_entry(const std::string& rel, unsigned char d_type, int depth);
  void remove_both(const std::string& rel);
  void compare_content(const std::string& rel);
  void compare_symlink(const std::string& rel);
  void compare_xattrs(const std::string& rel);
  bool remount_due();
  void remount();
  void setup_work_dirs();

  Options opt_;
  std::mt19937_64 rng_;
  std::mt19937_64 remount_rng_;
  std::string work_[2];
  std::vector<std::string> paths_[3];  // the namespace, by depth
  std::vector<char> pool_;
  std::vector<char> data_;
  std::deque<std::vector<char>> recent_;  // last few buffers written, to write again
  std::vector<char> io_[2];
  std::vector<FdSlot> fds_;
  std::vector<MapSlot> maps_;
  int next_id_ = 0;
  // Reference inodes of files and symlinks whose mtime the tester set with utimensat and
  // nothing has changed since: only those mtimes are compared (otherwise the two sides stamp
  // the time at different instants).
  std::unordered_set<ino_t> pinned_;
  // Reference inodes written through a mapping without msync since their last fsync. POSIX
  // lets the mtime update of such writes happen any time later (a FUSE filesystem typically
  // stamps it when the dirty pages reach it), so an utimensat does not pin these.
  std::unordered_set<ino_t> mmap_dirty_;
  std::deque<std::string> history_;
  std::uint64_t op_no_ = 0;
  std::uint64_t counts_[kOpCount] = {};
  std::uint64_t remounts_ = 0;
  std::uint64_t compares_ = 0;
  ull pruned_ = 0;
};

// Name (for the summary), weight (relative frequency) and implementation of each operation,
// in Op order.
// clang-format off
const Tester::OpInfo Tester::kOps[kOpCount] = {
    {"open", 12, &Tester::op_open},           {"close", 6, &Tester::op_close},
    {"write", 16, &Tester::op_write},         {"read", 8, &Tester::op_read},
    {"lseek", 3, &Tester::op_seek},           {"truncate", 3, &Tester::op_truncate},
    {"ftruncate", 3, &Tester::op_ftruncate},  {"fallocate", 3, &Tester::op_fallocate},
    {"rename", 6, &Tester::op_rename},        {"link", 3, &Tester::op_link},
    {"unlink", 4, &Tester::op_unlink},        {"mkdir", 3, &Tester::op_mkdir},
    {"rmdir", 2, &Tester::op_rmdir},          {"symlink", 3, &Tester::op_symlink},
    {"readlink", 2, &Tester::op_readlink},    {"chmod", 2, &Tester::op_chmod},
    {"utimens", 3, &Tester::op_utimens},      {"setxattr", 3, &Tester::op_setxattr},
    {"getxattr", 2, &Tester::op_getxattr},    {"listxattr", 1, &Tester::op_listxattr},
    {"removexattr", 2, &Tester::op_removexattr}, {"mmap", 2, &Tester::op_mmap},
    {"mmap-write", 3, &Tester::op_map_write}, {"mmap-read", 1, &Tester::op_map_read},
    {"munmap", 1, &Tester::op_munmap},        {"fsync", 2, &Tester::op_fsync},
    {"copy_file_range", 3, &Tester::op_copy_range}, {"stat", 4, &Tester::op_stat},
    {"fstat", 2, &Tester::op_fstat},          {"readdir", 2, &Tester::op_readdir},
};
// clang-format on

Tester::Tester(Options opt)
    : opt_(std::move(opt)), rng_(opt_.seed), remount_rng_(opt_.seed ^ 0x9e3779b97f4a7c15ULL) {
  // A small namespace (4 + 12 + 24 = 40 paths, 3 levels) so that operations keep running
  // into existing entries, non-empty directories and type conflicts.
  for (const char* a : {"a", "b", "c", "d"}) {
    paths_[0].push_back(a);
    for (const char* b : {"a", "b", "c"}) {
      paths_[1].push_back(join(a, b));
      for (const char* c : {"a", "b"}) paths_[2].push_back(join(join(a, b), c));
    }
  }
  pool_.resize(kPoolSize + kMaxIo);
  fill_random(pool_.data(), pool_.size());
  data_.resize(kMaxIo);
  io_[0].resize(std::max(kMaxIo, kCompareChunk));
  io_[1].resize(std::max(kMaxIo, kCompareChunk));
  const std::string sub = "/work-" + std::to_string(opt_.seed);
  work_[kTest] = opt_.test_dir + sub;
  work_[kRef] = opt_.ref_dir + sub;
}

// ---------------------------------------------------------------------------------------------
// Random choices

void Tester::fill_random(char* d, std::size_t n) {
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t v = rng_();
    std::memcpy(d + i, &v, std::min<std::size_t>(8, n - i));
  }
}

std::string Tester::random_path() {
  std::uint64_t r = below(100);
  const auto& level = paths_[r < 45 ? 0 : r < 80 ? 1 : 2];
  return level[below(level.size())];
}

// Prefers a path whose reference entry satisfies `want` (a few tries), so that e.g. readlink
// mostly meets symlinks. Looking at the reference side only keeps the choice deterministic.
template <class Pred>
std::string Tester::pick_path(Pred want) {
  for (int i = 0; i < 8; ++i) {
    std::string p = random_path();
    struct stat st;
    if (::lstat(at(kRef, p).c_str(), &st) == 0 && want(st)) return p;
  }
  return random_path();
}

// Prefers a path that does not exist yet but whose parent is a directory, so that creations
// mostly succeed (random paths often lack their parent).
std::string Tester::pick_free_path() {
  for (int i = 0; i < 8; ++i) {
    std::string p = random_path();
    std::size_t slash = p.rfind('/');
    struct stat st;
    if (::lstat(at(kRef, p).c_str(), &st) == 0) continue;
    if (slash == std::string::npos) return p;
    if (ref_stat(p.substr(0, slash), true, &st) && S_ISDIR(st.st_mode)) return p;
  }
  return random_path();
}

bool is_reg(const struct stat& st) {
  return S_ISREG(st.st_mode);
}
bool is_dir(const struct stat& st) {
  return S_ISDIR(st.st_mode);
}
bool is_link(const struct stat& st) {
  return S_ISLNK(st.st_mode);
}
bool is_any(const struct stat&) {
  return true;
}

std::uint64_t Tester::choose_offset(std::uint64_t size) {
  std::uint64_t r = below(100);
  if (r < 25) return size;                           // append
  if (r < 55) return below(size + 1);                // overwrite inside
  if (r < 70) return below(64 << 10);                // near the start
  if (r < 85) return size + range(1, 1 << 20);       // a hole past EOF
  if (r < 95) return below(opt_.max_file_size + 1);  // anywhere, maybe far out
  return (below(size / 4096 + 1)) * 4096;            // block aligned
}

std::uint64_t Tester::choose_read_offset(std::uint64_t size) {
  std::uint64_t r = below(100);
  if (r < 50) return below(size + 1);
  if (r < 70) return 0;
  if (r < 90) return size - std::min<std::uint64_t>(size, below(8192));
  return size + below(1 << 20);
}

std::size_t Tester::choose_len() {
  std::uint64_t r = below(100);
  if (r < 40) return range(1, 512);
  if (r < 70) return range(513, 16 << 10);
  if (r < 90) return range((16 << 10) + 1, 128 << 10);
  return range((128 << 10) + 1, kMaxIo);
}

off_t Tester::choose_trunc_len(std::uint64_t size) {
  std::uint64_t r = below(100);
  std::uint64_t len;
  if (r < 2) return -1;  // EINVAL on both
  if (r < 20) {
    len = 0;
  } else if (r < 50) {
    len = below(size + 1);
  } else if (r < 75) {
    len = size + range(1, 64 << 10);
  } else if (r < 90) {
    len = below(opt_.max_file_size + 1);
  } else {
    len = size;
  }
  return static_cast<off_t>(std::min(len, std::max(size, opt_.max_file_size)));
}

// Files may not grow past --max-file-size: returns how much of `len` bytes at `off` may be
// written (files already larger may still be written inside).
std::size_t Tester::clamp_growth(std::uint64_t off, std::size_t len, std::uint64_t size) const {
  std::uint64_t limit = std::max(size, opt_.max_file_size);
  if (off >= limit) return 0;
  return static_cast<std::size_t>(std::min<std::uint64_t>(len, limit - off));
}

// Fills data_ with `len` bytes. The patterns repeat on purpose (pool slices at aligned and odd
// offsets, copies of earlier writes, zeros, short patterns) so that deduplication, sparse and
// compression paths of the filesystem under test get exercised, not only fresh random data.
const char* Tester::make_data(std::size_t len, std::string* how) {
  char* d = data_.data();
  std::uint64_t r = below(100);
  if (r < 30) {
    fill_random(d, len);
    *how = "random";
  } else if (r < 60) {
    std::size_t off = chance(70) ? below(kPoolSize / 4096) * 4096 : below(kPoolSize);
    std::memcpy(d, pool_.data() + off, len);
    *how = strf("pool@%zu", off);
  } else if (r < 75 && !recent_.empty()) {
    const std::vector<char>& src = recent_[below(recent_.size())];
    for (std::size_t i = 0; i < len; i += src.size()) {
      std::memcpy(d + i, src.data(), std::min(src.size(), len - i));
    }
    *how = strf("repeat-of-earlier-%zu-bytes", src.size());
  } else if (r < 90) {
    std::memset(d, 0, len);
    *how = "zeros";
  } else {
    std::size_t n = range(1, 16);
    fill_random(d, std::min(n, len));
    for (std::size_t i = n; i < len; ++i) d[i] = d[i - n];
    *how = strf("pattern/%zu", n);
  }
  if (len > 0) {
    recent_.emplace_back(d, d + len);
    if (recent_.size() > 4) recent_.pop_front();
  }
  return d;
}

// Symlink targets are relative and never start with "..": they name something below the
// link's directory, so whatever renames do to the link, following it cannot leave the work
// tree (and reach things that differ between the two sides). "x/.." only appears after a
// real component, which resolves strictly below the link's directory, for the same reason.
std::string Tester::symlink_target() {
  std::uint64_t r = below(100);
  if (r < 60) return random_path();
  if (r < 70) return chance(50) ? "missing" : random_path() + "/missing";
  if (r < 80) return paths_[0][below(paths_[0].size())] + "/../" + random_path();
  if (r < 85) return random_path() + "/";
  if (r < 88) {
    // Long targets: storage past inline/short-symlink limits.
    std::string t;
    for (std::uint64_t n = range(20, 500); n; --n) t += "a/../";
    return t + random_path();
  }
  if (r < 90) return "";  // ENOENT
  const std::string& name = paths_[0][below(paths_[0].size())];
  return name;  // often the link itself or a sibling: loops (ELOOP)
}

struct timespec Tester::random_time() {
  struct timespec ts;
  if (chance(15)) {
    ts.tv_sec = 0;
    ts.tv_nsec = UTIME_OMIT;
  } else {
    ts.tv_sec = static_cast<time_t>(below(kMaxTime));
    ts.tv_nsec = static_cast<long>(below(1000000000));
  }
  return ts;
}

// ---------------------------------------------------------------------------------------------
// Running, comparing, reporting

template <class F>
Outcome Tester::same(const char* what, F&& f) {
  Pair o = both(f);
  note(strf(" %s=%s", what, to_string(o[kRef]).c_str()));
  expect(what, o);
  return o[kRef];
}

void Tester::expect(const char* what, const Pair& o) {
  if (o[kTest] != o[kRef]) fail_pair(strf("%s returned different results", what), o);
}

// Compares the first `len` bytes of io_[kTest] and io_[kRef]; `base` is the file offset of
// their first byte, for the report.
void Tester::expect_bytes(const std::string& what, std::size_t len, std::uint64_t base) {
  const char* t = io_[kTest].data();
  const char* r = io_[kRef].data();
  std::size_t i = first_difference(t, r, len);
  if (i == len) return;
  fail(strf("%s: bytes differ from offset %llu", what.c_str(), static_cast<ull>(base + i)),
       hex_at(t, i, len), hex_at(r, i, len));
}

// For calls whose successful return values legitimately differ (fds, addresses).
void Tester::expect_status(const char* what, const Pair& o) {
  bool ok_t = o[kTest].ret >= 0, ok_r = o[kRef].ret >= 0;
  if (ok_t != ok_r || o[kTest].err != o[kRef].err) {
    fail_pair(strf("%s returned different results", what), o);
  }
}

void Tester::begin(Op op, const std::string& desc) {
  ++counts_[op];
  push_history(strf("#%llu %s", static_cast<ull>(op_no_), desc.c_str()));
}

// Starts a new history line; results get appended to it by note(). With --verbose the
// previous line, now complete, is printed.
void Tester::push_history(const std::string& line) {
  if (opt_.verbose && !history_.empty()) std::printf("%s\n", history_.back().c_str());
  history_.push_back(line);
  if (history_.size() > kHistory) history_.pop_front();
}

void Tester::note(const std::string& s) {
  if (!history_.empty()) history_.back() += s;
}

void Tester::fail(const std::string& what, const std::string& test, const std::string& ref) {
  std::fflush(stdout);
  std::fprintf(stderr, "fs_difftest: MISMATCH at op %llu (seed %llu)\n", static_cast<ull>(op_no_),
               static_cast<ull>(opt_.seed));
  std::fprintf(stderr, "  during: %s\n", history_.empty() ? "setup" : history_.back().c_str());
  std::fprintf(stderr, "  what:   %s\n", what.c_str());
  std::fprintf(stderr, "  test:   %s   [%s]\n", test.c_str(), work_[kTest].c_str());
  std::fprintf(stderr, "  ref:    %s   [%s]\n", ref.c_str(), work_[kRef].c_str());
  std::fprintf(stderr, "  last %zu ops, oldest first (results shown are the reference side's):\n",
               history_.size());
  for (const std::string& h : history_) std::fprintf(stderr, "    %s\n", h.c_str());
  std::fprintf(stderr, "  reproduce with: --seed %llu --ops %llu%s (trees kept for inspection)\n",
               static_cast<ull>(opt_.seed), static_cast<ull>(op_no_),
               opt_.remount_cmd.empty() ? "" : " and the same --remount-cmd/--remount-every");
  std::exit(1);
}

// Compares what the two sides report for the same entry: full st_mode, nlink (directories
// too), size (not for directories, whose sizes are filesystem specific) and, where the tester
// set it, mtime. Never st_ino, st_dev, st_blocks, st_blksize, atime or ctime.
void Tester::compare_stat(const struct stat st[2], const std::string& what) {
  const struct stat& t = st[kTest];
  const struct stat& r = st[kRef];
  bool bad = t.st_mode != r.st_mode || t.st_nlink != r.st_nlink;
  if (!S_ISDIR(r.st_mode) && t.st_size != r.st_size) bad = true;
  bool check_mtime = (S_ISREG(r.st_mode) || S_ISLNK(r.st_mode)) && pinned(r.st_ino);
  if (check_mtime &&
      (t.st_mtim.tv_sec != r.st_mtim.tv_sec || t.st_mtim.tv_nsec != r.st_mtim.tv_nsec)) {
    bad = true;
  }
  if (bad) {
    fail(what + ": metadata differs" + (check_mtime ? " (mtime was set by utimensat)" : ""),
         stat_str(t), stat_str(r));
  }
}

struct stat Tester::fstat_both(const int fd[2], const std::string& what) {
  struct stat st[2];
  Pair o = both([&](int s) { return outcome(::fstat(fd[s], &st[s])); });
  if (o[kTest] != o[kRef] || o[kRef].ret < 0) fail_pair(what, o);
  compare_stat(st, what);
  return st[kRef];
}

bool Tester::ref_stat(const std::string& rel, bool follow, struct stat* st) const {
  const std::string p = at(kRef, rel);
  return (follow ? ::stat(p.c_str(), st) : ::lstat(p.c_str(), st)) == 0;
}

// ---------------------------------------------------------------------------------------------
// Open fds and mappings

std::uint64_t Tester::position(const FdSlot& s) {
  if (!s.is_reg) return 0;  // directory offsets are filesystem specific cookies
  Outcome o = same("pos", [&](int side) { return outcome(::lseek(s.fd[side], 0, SEEK_CUR)); });
  return o.ret < 0 ? 0 : static_cast<std::uint64_t>(o.ret);
}

void Tester::close_slot(std::size_t index, bool announce) {
  FdSlot s = fds_[index];
  fds_.erase(fds_.begin() + static_cast<std::ptrdiff_t>(index));
  if (announce) note(" (close " + slot_name(s) + ")");
  same("close", [&](int side) { return outcome(::close(s.fd[side])); });
}

void Tester::unmap_slot(std::size_t index, bool announce) {
  MapSlot m = maps_[index];
  maps_.erase(maps_.begin() + static_cast<std::ptrdiff_t>(index));
  if (announce) note(strf(" (munmap map%d(%s))", m.id, m.path.c_str()));
  same("munmap", [&](int side) { return outcome(::munmap(m.addr[side], m.len)); });
  same("close", [&](int side) { return outcome(::close(m.fd[side])); });
}

// Drops every fd and mapping (on both sides, so that the fd tables stay paired). Needed
// before a remount: an open fd or mapping on the test side makes the unmount fail with EBUSY.
void Tester::close_all() {
  while (!maps_.empty()) unmap_slot(maps_.size() - 1, true);
  while (!fds_.empty()) close_slot(fds_.size() - 1, true);
}

// How many bytes from the start of the mapping lie inside the file (equal on both sides, or
// fstat_both reports the mismatch). Bytes past that may SIGBUS or not be written back.
std::size_t Tester::map_valid_len(const MapSlot& m) {
  std::uint64_t size = file_size(fstat_both(m.fd, strf("fstat of map%d", m.id)));
  if (size <= m.off) return 0;
  return static_cast<std::size_t>(std::min<std::uint64_t>(m.len, size - m.off));
}

// ---------------------------------------------------------------------------------------------
// Operations

void Tester::random_op() {
  unsigned total = 0;
  for (const OpInfo& op : kOps) total += op.weight;
  std::uint64_t r = below(total);
  int op = 0;
  while (r >= kOps[op].weight) r -= kOps[op++].weight;
  (this->*kOps[op].run)();
}

void Tester::op_open() {
  begin(kOpOpen, "open");
  if (fds_.size() >= kMaxFds) close_slot(below(fds_.size()), true);
  std::uint64_t r = below(100);
  const std::string p = r < 45 ? pick_path(is_reg) : r < 80 ? pick_free_path() : random_path();
  std::uint64_t acc = below(100);
  int flags = acc < 20 ? O_RDONLY : acc < 30 ? O_WRONLY : O_RDWR;
  if (chance(60)) flags |= O_CREAT;
  if ((flags & O_CREAT) && chance(25)) flags |= O_EXCL;
  if (chance(15)) flags |= O_TRUNC;
  if (chance(15)) flags |= O_APPEND;
  if (chance(5)) flags |= O_NOFOLLOW;
  if (chance(3)) flags |= O_DIRECTORY;
  const mode_t mode = static_cast<mode_t>(0400 | below(01000));
  note(strf(" %s %s %s", p.c_str(), open_flags_str(flags).c_str(), mode_str(mode).c_str()));

  int fd[2] = {-1, -1};
  Pair o = both(
      [&](int s) { return outcome(fd[s] = ::open(at(s, p).c_str(), flags | O_CLOEXEC, mode)); });
  note(" -> " + (o[kRef].ret >= 0 ? std::string("ok") : to_string(o[kRef])));
  expect_status("open", o);
  if (o[kRef].ret < 0) return;

  FdSlot slot{next_id_++, {fd[0], fd[1]}, flags, p, 0, false};
  // A new file may reuse a freed inode number and a truncation changes mtime: forget the
  // pinned mtime before fstat_both would compare it.
  struct stat st;
  if ((flags & (O_CREAT | O_TRUNC)) && ::fstat(fd[kRef], &st) == 0) unpin(st.st_ino);
  st = fstat_both(slot.fd, "fstat after open");
  slot.ref_ino = st.st_ino;
  slot.is_reg = S_ISREG(st.st_mode);
  note(strf(" as fd%d", slot.id));
  fds_.push_back(slot);
}

void Tester::op_close() {
  if (fds_.empty()) return op_open();
  const std::size_t index = below(fds_.size());
  begin(kOpClose, "close " + slot_name(fds_[index]));
  close_slot(index, false);
}

void Tester::op_write() {
  FdSlot* s = pick_fd();
  if (!s) return op_open();
  const bool positional = chance(50);
  begin(kOpWrite, (positional ? "pwrite " : "write ") + slot_name(*s));
  const std::uint64_t size = file_size(fstat_both(s->fd, "fstat before write"));
  const bool append = s->flags & O_APPEND;
  std::uint64_t off = positional ? choose_offset(size) : 0;
  // Where the bytes land: Linux appends on O_APPEND even for pwrite.
  std::uint64_t dest = append ? size : positional ? off : position(*s);
  std::size_t len = clamp_growth(dest, choose_len(), size);
  if (len == 0 && positional && !append) {
    off = dest = below(std::max<std::uint64_t>(size, 1));
    len = clamp_growth(dest, choose_len(), size);
  }
  std::string how;
  const char* data = make_data(len, &how);
  note(strf(" off=%llu len=%zu data=%s", static_cast<ull>(dest), len, how.c_str()));
  same("ret", [&](int side) {
    return outcome(positional ? ::pwrite(s->fd[side], data, len, static_cast<off_t>(off))
                              : ::write(s->fd[side], data, len));
  });
  unpin(s->ref_ino);
}

void Tester::op_read() {
  FdSlot* s = pick_fd();
  if (!s) return op_open();
  const bool positional = chance(50);
  begin(kOpRead, (positional ? "pread " : "read ") + slot_name(*s));
  const std::uint64_t size = file_size(fstat_both(s->fd, "fstat before read"));
  const std::uint64_t off = positional ? choose_read_offset(size) : position(*s);
  const std::size_t len = choose_len();
  note(strf(" off=%llu len=%zu", static_cast<ull>(off), len));
  Outcome o = same("ret", [&](int side) {
    char* buf = io_[side].data();
    return outcome(positional ? ::pread(s->fd[side], buf, len, static_cast<off_t>(off))
                              : ::read(s->fd[side], buf, len));
  });
  if (o.ret > 0) expect_bytes("read", static_cast<std::size_t>(o.ret), off);
}

void Tester::op_seek() {
  FdSlot* s = pick_fd();
  if (!s) return op_open();
  begin(kOpSeek, "lseek " + slot_name(*s));
  const std::uint64_t size = file_size(fstat_both(s->fd, "fstat before lseek"));
  if (!s->is_reg) {
    note(" (skipped: directory offsets are filesystem specific)");
    return;
  }
  // SEEK_DATA/SEEK_HOLE are deliberately absent: filesystems may report holes differently.
  static constexpr int kWhence[] = {SEEK_SET, SEEK_CUR, SEEK_END};
  static constexpr const char* kWhenceName[] = {"SEEK_SET", "SEEK_CUR", "SEEK_END"};
  const std::uint64_t w = below(3);
  off_t off;
  if (w == 0) {
    off = chance(5) ? -1 : static_cast<off_t>(choose_offset(size));
  } else {
    off = static_cast<off_t>(below(1 << 20)) - static_cast<off_t>(below(size + 8192));
  }
  note(strf(" %lld %s", static_cast<long long>(off), kWhenceName[w]));
  same("ret", [&](int side) { return outcome(::lseek(s->fd[side], off, kWhence[w])); });
}

void Tester::op_truncate() {
  const std::string p = chance(70) ? pick_path(is_reg) : random_path();
  begin(kOpTruncate, "truncate " + p);
  struct stat st;
  const bool exists = ref_stat(p, true, &st);
  const off_t len = choose_trunc_len(exists ? file_size(st) : 0);
  note(strf(" len=%lld", static_cast<long long>(len)));
  same("ret", [&](int side) { return outcome(::truncate(at(side, p).c_str(), len)); });
  if (exists) unpin(st.st_ino);
}

void Tester::op_ftruncate() {
  FdSlot* s = pick_fd();
  if (!s) return op_open();
  begin(kOpFtruncate, "ftruncate " + slot_name(*s));
  const off_t len = choose_trunc_len(file_size(fstat_both(s->fd, "fstat before ftruncate")));
  note(strf(" len=%lld", static_cast<long long>(len)));
  same("ret", [&](int side) { return outcome(::ftruncate(s->fd[side], len)); });
  unpin(s->ref_ino);
}

void Tester::op_fallocate() {
  FdSlot* s = pick_fd();
  if (!s) return op_open();
  begin(kOpFallocate, "fallocate " + slot_name(*s));
  const std::uint64_t size = file_size(fstat_both(s->fd, "fstat before fallocate"));
  const bool punch = chance(50);
  const int mode = punch ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : 0;
  std::uint64_t off, len;
  if (punch) {
    off = below(size + 8192);
    len = range(1, 2 * kMaxIo);
  } else {
    off = choose_offset(size);
    len = clamp_growth(off, range(1, kMaxIo), size);
    if (len == 0) {
      off = below(std::max<std::uint64_t>(size, 1));
      len = clamp_growth(off, range(1, kMaxIo), size);
    }
  }
  note(strf(" %s off=%llu len=%llu", punch ? "PUNCH_HOLE|KEEP_SIZE" : "mode=0",
            static_cast<ull>(off), static_cast<ull>(len)));
  // The reference goes first: if it cannot do this, the test side must not do it either, or
  // the trees would diverge.
  Pair o;
  o[kRef] =
      outcome(::fallocate(s->fd[kRef], mode, static_cast<off_t>(off), static_cast<off_t>(len)));
  if (o[kRef].ret < 0 && o[kRef].err == EOPNOTSUPP) {
    note(" (skipped: reference says EOPNOTSUPP)");
    return;
  }
  o[kTest] =
      outcome(::fallocate(s->fd[kTest], mode, static_cast<off_t>(off), static_cast<off_t>(len)));
  note(" ret=" + to_string(o[kRef]));
  expect("fallocate", o);
  unpin(s->ref_ino);
}

void Tester::op_rename() {
  const std::string from = chance(80) ? pick_path(is_any) : random_path();
  std::uint64_t r = below(100);
  const std::string to = r < 40 ? pick_path(is_any) : r < 80 ? pick_free_path() : random_path();
  r = below(100);
  const unsigned flags = r < 60 ? 0 : r < 80 ? RENAME_NOREPLACE : RENAME_EXCHANGE;
  const char* name = flags == 0 ? "" : flags == RENAME_NOREPLACE ? " NOREPLACE" : " EXCHANGE";
  begin(kOpRename, strf("rename %s %s%s", from.c_str(), to.c_str(), name));
  same("ret", [&](int side) {
    return outcome(::syscall(SYS_renameat2, AT_FDCWD, at(side, from).c_str(), AT_FDCWD,
                             at(side, to).c_str(), flags));
  });
}

void Tester::op_link() {
  const std::string from = chance(80) ? pick_path(is_any) : random_path();
  const std::string to = chance(70) ? pick_free_path() : random_path();
  const int flags = chance(20) ? AT_SYMLINK_FOLLOW : 0;
  begin(kOpLink, strf("link %s %s%s", from.c_str(), to.c_str(), flags ? " FOLLOW" : ""));
  same("ret", [&](int side) {
    return outcome(
        ::linkat(AT_FDCWD, at(side, from).c_str(), AT_FDCWD, at(side, to).c_str(), flags));
  });
}

void Tester::op_unlink() {
  const std::string p =
      chance(80) ? pick_path([](const struct stat& st) { return !is_dir(st); }) : random_path();
  begin(kOpUnlink, "unlink " + p);
  same("ret", [&](int side) { return outcome(::unlink(at(side, p).c_str())); });
}

void Tester::op_mkdir() {
  const std::string p = chance(70) ? pick_free_path() : random_path();
  const mode_t mode = static_cast<mode_t>(0700 | below(01000));
  begin(kOpMkdir, strf("mkdir %s %s", p.c_str(), mode_str(mode).c_str()));
  same("ret", [&](int side) { return outcome(::mkdir(at(side, p).c_str(), mode)); });
}

void Tester::op_rmdir() {
  const std::string p = chance(80) ? pick_path(is_dir) : random_path();
  begin(kOpRmdir, "rmdir " + p);
  same("ret", [&](int side) { return outcome(::rmdir(at(side, p).c_str())); });
}

void Tester::op_symlink() {
  const std::string p = chance(70) ? pick_free_path() : random_path();
  const std::string target = symlink_target();
  begin(kOpSymlink,
        strf("symlink %s -> '%s'", p.c_str(),
             target.size() > 60 ? (target.substr(0, 40) + "...").c_str() : target.c_str()));
  Outcome o = same(
      "ret", [&](int side) { return outcome(::symlink(target.c_str(), at(side, p).c_str())); });
  struct stat st;
  if (o.ret == 0 && ref_stat(p, false, &st)) unpin(st.st_ino);  // a newborn inode
}

void Tester::op_readlink() {
  const std::string p = chance(85) ? pick_path(is_link) : random_path();
  static constexpr std::size_t kSizes[] = {1, 7, 4096};
  const std::size_t bufsize = kSizes[below(3)];
  begin(kOpReadlink, strf("readlink %s bufsize=%zu", p.c_str(), bufsize));
  Outcome o = same("ret", [&](int side) {
    return outcome(::readlink(at(side, p).c_str(), io_[side].data(), bufsize));
  });
  if (o.ret > 0 && std::memcmp(io_[kTest].data(), io_[kRef].data(), o.ret) != 0) {
    fail("readlink returned different targets",
         std::string(io_[kTest].data(), static_cast<std::size_t>(o.ret)),
         std::string(io_[kRef].data(), static_cast<std::size_t>(o.ret)));
  }
}

// Owner bits stay set so that the tester can always read files and walk directories (it may
// run as an unprivileged user). Sticky on directories, never setuid/setgid.
static mode_t chmod_mode(bool dir, std::uint64_t bits, bool sticky) {
  mode_t m = static_cast<mode_t>(bits & 0777);
  return dir ? (0700 | m | (sticky ? S_ISVTX : 0)) : (0400 | m);
}

void Tester::op_chmod() {
  FdSlot* s = chance(30) ? pick_fd() : nullptr;
  if (s) {
    begin(kOpChmod, "fchmod " + slot_name(*s));
    struct stat st = fstat_both(s->fd, "fstat before fchmod");
    const mode_t mode = chmod_mode(S_ISDIR(st.st_mode), below(01000), chance(10));
    note(" " + mode_str(mode));
    same("ret", [&](int side) { return outcome(::fchmod(s->fd[side], mode)); });
    return;
  }
  const std::string p = random_path();
  begin(kOpChmod, "chmod " + p);
  struct stat st;
  const bool dir = ref_stat(p, true, &st) && S_ISDIR(st.st_mode);
  const mode_t mode = chmod_mode(dir, below(01000), chance(10));
  note(" " + mode_str(mode));
  same("ret", [&](int side) { return outcome(::chmod(at(side, p).c_str(), mode)); });
}

void Tester::op_utimens() {
  struct timespec ts[2] = {random_time(), random_time()};
  std::string times =
      strf(" atime=%lld.%09ld mtime=%lld.%09ld", static_cast<long long>(ts[0].tv_sec),
           ts[0].tv_nsec, static_cast<long long>(ts[1].tv_sec), ts[1].tv_nsec);
  const bool sets_mtime = ts[1].tv_nsec != UTIME_OMIT;
  FdSlot* s = chance(25) ? pick_fd() : nullptr;
  Outcome o;
  ino_t ino = 0;
  bool have_ino = false;
  if (s) {
    begin(kOpUtimens, "futimens " + slot_name(*s) + times);
    o = same("ret", [&](int side) { return outcome(::futimens(s->fd[side], ts)); });
    ino = s->ref_ino;
    have_ino = true;
  } else {
    const bool nofollow = chance(30);
    const std::string p = chance(80) ? pick_path(is_any) : random_path();
    begin(kOpUtimens, "utimensat " + p + (nofollow ? " NOFOLLOW" : "") + times);
    const int flags = nofollow ? AT_SYMLINK_NOFOLLOW : 0;
    o = same("ret", [&](int side) {
      return outcome(::utimensat(AT_FDCWD, at(side, p).c_str(), ts, flags));
    });
    struct stat st;
    have_ino = ref_stat(p, !nofollow, &st);
    ino = st.st_ino;
  }
  if (o.ret == 0 && sets_mtime && have_ino && !mmap_dirty_.count(ino)) pin(ino);
}

static const char* const kXattrNames[] = {"user.a", "user.b", "user.c",
                                          "user.a-rather-longer-attribute-name"};

void Tester::op_setxattr() {
  const char* name = kXattrNames[below(4)];
  std::size_t len = below(65);
  std::vector<char> value(len);
  fill_random(value.data(), len);
  std::uint64_t r = below(100);
  const int flags = r < 60 ? 0 : r < 80 ? XATTR_CREATE : XATTR_REPLACE;
  const char* fname = flags == 0 ? "" : flags == XATTR_CREATE ? " CREATE" : " REPLACE";
  std::string args = strf(" %s len=%zu%s", name, len, fname);
  FdSlot* s = chance(25) ? pick_fd() : nullptr;
  if (s) {
    begin(kOpSetxattr, "fsetxattr " + slot_name(*s) + args);
    same("ret", [&](int side) {
      return outcome(::fsetxattr(s->fd[side], name, value.data(), len, flags));
    });
    return;
  }
  const bool nofollow = chance(20);
  const std::string p = chance(80) ? pick_path(is_any) : random_path();
  begin(kOpSetxattr, (nofollow ? "lsetxattr " : "setxattr ") + p + args);
  same("ret", [&](int side) {
    const std::string path = at(side, p);
    return outcome(nofollow ? ::lsetxattr(path.c_str(), name, value.data(), len, flags)
                            : ::setxattr(path.c_str(), name, value.data(), len, flags));
  });
}

void Tester::op_getxattr() {
  const char* name = kXattrNames[below(4)];
  static constexpr std::size_t kSizes[] = {0, 3, 4096};  // size query, ERANGE, whole value
  const std::size_t size = kSizes[below(3)];
  std::string args = strf(" %s size=%zu", name, size);
  FdSlot* s = chance(25) ? pick_fd() : nullptr;
  Outcome o;
  if (s) {
    begin(kOpGetxattr, "fgetxattr " + slot_name(*s) + args);
    o = same("ret", [&](int side) {
      return outcome(::fgetxattr(s->fd[side], name, size ? io_[side].data() : nullptr, size));
    });
  } else {
    const bool nofollow = chance(20);
    const std::string p = chance(80) ? pick_path(is_any) : random_path();
    begin(kOpGetxattr, (nofollow ? "lgetxattr " : "getxattr ") + p + args);
    o = same("ret", [&](int side) {
      const std::string path = at(side, p);
      void* buf = size ? io_[side].data() : nullptr;
      return outcome(nofollow ? ::lgetxattr(path.c_str(), name, buf, size)
                              : ::getxattr(path.c_str(), name, buf, size));
    });
  }
  if (o.ret > 0 && size > 0) expect_bytes("getxattr value", static_cast<std::size_t>(o.ret), 0);
}

// Splits a listxattr buffer and keeps the user.* names: other namespaces (security.*,
// system.*) depend on the system rather than on the operations applied.
static std::set<std::string> user_names(const char* buf, ssize_t len) {
  std::set<std::string> names;
  for (ssize_t i = 0; i < len;) {
    std::string n(buf + i);
    i += static_cast<ssize_t>(n.size()) + 1;
    if (n.rfind("user.", 0) == 0) names.insert(n);
  }
  return names;
}

static std::string names_str(const std::set<std::string>& names) {
  std::string s = "{";
  for (const std::string& n : names) s += (s.size() > 1 ? " " : "") + n;
  return s + "}";
}

void Tester::op_listxattr() {
  FdSlot* s = chance(25) ? pick_fd() : nullptr;
  Pair o;
  if (s) {
    begin(kOpListxattr, "flistxattr " + slot_name(*s));
    o = both(
        [&](int side) { return outcome(::flistxattr(s->fd[side], io_[side].data(), kXattrBuf)); });
  } else {
    const bool nofollow = chance(30);
    const std::string p = chance(80) ? pick_path(is_any) : random_path();
    begin(kOpListxattr, (nofollow ? "llistxattr " : "listxattr ") + p);
    o = both([&](int side) {
      const std::string path = at(side, p);
      return outcome(nofollow ? ::llistxattr(path.c_str(), io_[side].data(), kXattrBuf)
                              : ::listxattr(path.c_str(), io_[side].data(), kXattrBuf));
    });
  }
  // The total length may include non-user names, so only success/errno and the user.* set
  // are compared.
  expect_status("listxattr", o);
  if (o[kRef].ret < 0) {
    note(" ret=" + to_string(o[kRef]));
    return;
  }
  auto t = user_names(io_[kTest].data(), o[kTest].ret);
  auto r = user_names(io_[kRef].data(), o[kRef].ret);
  note(" -> " + names_str(r));
  if (t != r) fail("listxattr returned different user.* names", names_str(t), names_str(r));
}

void Tester::op_removexattr() {
  const char* name = kXattrNames[below(4)];
  FdSlot* s = chance(25) ? pick_fd() : nullptr;
  if (s) {
    begin(kOpRemovexattr, "fremovexattr " + slot_name(*s) + " " + name);
    same("ret", [&](int side) { return outcome(::fremovexattr(s->fd[side], name)); });
    return;
  }
  const bool nofollow = chance(20);
  const std::string p = chance(80) ? pick_path(is_any) : random_path();
  begin(kOpRemovexattr, (nofollow ? "lremovexattr " : "removexattr ") + p + " " + name);
  same("ret", [&](int side) {
    const std::string path = at(side, p);
    return outcome(nofollow ? ::lremovexattr(path.c_str(), name)
                            : ::removexattr(path.c_str(), name));
  });
}

void Tester::op_mmap() {
  if (maps_.size() >= kMaxMaps) return op_munmap();
  FdSlot* s = pick_fd();
  if (!s) return op_open();
  begin(kOpMmap, "mmap " + slot_name(*s));
  const std::uint64_t size = file_size(fstat_both(s->fd, "fstat before mmap"));
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t pages = (size + page - 1) / page;
  const std::uint64_t off = pages > 0 && chance(70) ? below(pages) * page : 0;
  std::uint64_t len = range(1, 1 << 20);
  if (off < size && chance(90)) len = std::min(len, size - off);
  const bool writable = chance(75);
  const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  note(strf(" off=%llu len=%llu %s MAP_SHARED", static_cast<ull>(off), static_cast<ull>(len),
            writable ? "PROT_READ|PROT_WRITE" : "PROT_READ"));
  char* addr[2] = {nullptr, nullptr};
  Pair o = both([&](int side) {
    void* a = ::mmap(nullptr, len, prot, MAP_SHARED, s->fd[side], static_cast<off_t>(off));
    if (a == MAP_FAILED) return outcome(-1);
    addr[side] = static_cast<char*>(a);
    return Outcome{0, 0};
  });
  note(" ret=" + to_string(o[kRef]));
  expect_status("mmap", o);
  if (o[kRef].ret < 0) return;
  MapSlot m{next_id_++, {addr[0], addr[1]}, {-1, -1}, len, off, writable, s->ref_ino, s->path};
  Pair d = both([&](int side) { return outcome(m.fd[side] = ::dup(s->fd[side])); });
  expect_status("dup", d);
  note(strf(" as map%d", m.id));
  maps_.push_back(m);
}

void Tester::op_map_write() {
  std::vector<std::size_t> writable;
  for (std::size_t i = 0; i < maps_.size(); ++i) {
    if (maps_[i].writable) writable.push_back(i);
  }
  if (writable.empty()) return op_mmap();
  MapSlot& m = maps_[writable[below(writable.size())]];
  begin(kOpMapWrite, strf("mmap-write map%d(%s)", m.id, m.path.c_str()));
  const std::size_t valid = map_valid_len(m);
  if (valid == 0) {
    note(" (nothing mapped inside EOF)");
    return;
  }
  const std::size_t start = below(valid);
  const std::size_t len = std::min(valid - start, choose_len());
  std::string how;
  const char* data = make_data(len, &how);
  const bool sync = chance(50);
  note(strf(" at=%llu len=%zu data=%s%s", static_cast<ull>(m.off + start), len, how.c_str(),
            sync ? " +msync" : ""));
  for (int side : {kRef, kTest}) {
    if (!guarded_copy(m.addr[side] + start, data, len)) {
      fail(strf("SIGBUS writing through the %s mapping", kSideName[side]),
           side == kTest ? "SIGBUS" : "-", side == kRef ? "SIGBUS" : "-");
    }
  }
  unpin(m.ref_ino);
  if (!sync) mmap_dirty_.insert(m.ref_ino);
  if (sync) {
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t from = start / page * page;
    same("msync", [&](int side) {
      return outcome(::msync(m.addr[side] + from, start + len - from, MS_SYNC));
    });
  }
}

void Tester::op_map_read() {
  if (maps_.empty()) return op_mmap();
  MapSlot& m = maps_[below(maps_.size())];
  begin(kOpMapRead, strf("mmap-read map%d(%s)", m.id, m.path.c_str()));
  const std::size_t valid = map_valid_len(m);
  if (valid == 0) {
    note(" (nothing mapped inside EOF)");
    return;
  }
  const std::size_t start = below(valid);
  const std::size_t len = std::min(valid - start, choose_len());
  note(strf(" at=%llu len=%zu", static_cast<ull>(m.off + start), len));
  for (int side : {kRef, kTest}) {
    if (!guarded_copy(io_[side].data(), m.addr[side] + start, len)) {
      fail(strf("SIGBUS reading through the %s mapping", kSideName[side]),
           side == kTest ? "SIGBUS" : "-", side == kRef ? "SIGBUS" : "-");
    }
  }
  expect_bytes("mapped memory", len, m.off + start);
}

void Tester::op_munmap() {
  if (maps_.empty()) return op_mmap();
  const std::size_t index = below(maps_.size());
  begin(kOpMunmap, strf("munmap map%d(%s)", maps_[index].id, maps_[index].path.c_str()));
  unmap_slot(index, false);
}

void Tester::op_fsync() {
  FdSlot* s = pick_fd();
  if (!s) return op_open();
  const bool data_only = chance(50);
  begin(kOpFsync, (data_only ? "fdatasync " : "fsync ") + slot_name(*s));
  Outcome o = same("ret", [&](int side) {
    return outcome(data_only ? ::fdatasync(s->fd[side]) : ::fsync(s->fd[side]));
  });
  // All dirty pages of the file, mapped ones included, have reached the filesystem.
  if (o.ret == 0) mmap_dirty_.erase(s->ref_ino);
}

void Tester::op_copy_range() {
  FdSlot* in = pick_fd();
  if (!in) return op_open();
  FdSlot* out = pick_fd();
  begin(kOpCopyRange, "copy_file_range " + slot_name(*in) + " -> " + slot_name(*out));
  const std::uint64_t in_size = file_size(fstat_both(in->fd, "fstat of copy source"));
  const std::uint64_t out_size = file_size(fstat_both(out->fd, "fstat of copy target"));
  const bool explicit_offsets = chance(70);
  std::uint64_t off_in, off_out;
  if (explicit_offsets) {
    off_in = choose_read_offset(in_size);
    off_out = choose_offset(out_size);
  } else {
    off_in = position(*in);
    off_out = (out->flags & O_APPEND) ? out_size : position(*out);
  }
  // At most this much can land in the target: the copy stops at the source's EOF.
  const std::size_t len = clamp_growth(off_out, choose_len(), out_size);
  note(strf(" in_off=%llu out_off=%llu len=%zu%s", static_cast<ull>(off_in),
            static_cast<ull>(off_out), len, explicit_offsets ? "" : " (file positions)"));
  same("ret", [&](int side) {
    loff_t oi = static_cast<loff_t>(off_in), oo = static_cast<loff_t>(off_out);
    return outcome(::copy_file_range(in->fd[side], explicit_offsets ? &oi : nullptr, out->fd[side],
                                     explicit_offsets ? &oo : nullptr, len, 0));
  });
  unpin(out->ref_ino);
}

void Tester::op_stat() {
  const bool follow = chance(50);
  const std::string p = chance(10) ? "" : random_path();
  begin(kOpStat, (follow ? "stat " : "lstat ") + show(p));
  struct stat st[2];
  Outcome o = same("ret", [&](int side) {
    const std::string path = at(side, p);
    return outcome(follow ? ::stat(path.c_str(), &st[side]) : ::lstat(path.c_str(), &st[side]));
  });
  if (o.ret == 0) compare_stat(st, "stat " + show(p));
}

void Tester::op_fstat() {
  FdSlot* s = pick_fd();
  if (!s) return op_open();
  begin(kOpFstat, "fstat " + slot_name(*s));
  fstat_both(s->fd, "fstat");
}

void Tester::op_readdir() {
  const std::string p = chance(15) ? "" : pick_path(is_dir);
  begin(kOpReaddir, "readdir " + show(p));
  std::map<std::string, unsigned char> entries;
  note(compare_listing(p, &entries) ? strf(" -> %zu entries", entries.size()) : " -> failed alike");
}

// ---------------------------------------------------------------------------------------------
// Whole-tree comparison

// Lists a directory into name -> d_type; returns 0 or an errno. Duplicate names (a readdir
// offset bug) are reported through `dup`.
static int list_dir(const std::string& path, std::map<std::string, unsigned char>* out,
                    std::string* dup) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return errno;
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent* e = ::readdir(d);
    if (!e) {
      err = errno;
      break;
    }
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (!out->emplace(name, e->d_type).second && dup->empty()) *dup = name;
  }
  ::closedir(d);
  return err;
}

// Compares one directory's listing (names and d_type, order ignored). Returns false if both
// sides failed alike (ENOENT, ENOTDIR, ...); fails the run on any difference.
bool Tester::compare_listing(const std::string& rel, std::map<std::string, unsigned char>* out) {
  std::map<std::string, unsigned char> ents[2];
  std::string dup[2];
  Pair o;
  for (int side : {kRef, kTest}) {
    int err = list_dir(at(side, rel), &ents[side], &dup[side]);
    o[side] = Outcome{err ? -1 : 0, err};
  }
  expect("opendir/readdir", o);
  if (o[kRef].ret < 0) return false;
  for (int side : {kRef, kTest}) {
    if (!dup[side].empty()) {
      fail(strf("readdir of %s returned a name twice on the %s side", show(rel).c_str(),
                kSideName[side]),
           dup[kTest], dup[kRef]);
    }
  }
  std::string only[2];
  for (int side : {kTest, kRef}) {
    for (const auto& [name, type] : ents[side]) {
      if (!ents[1 - side].count(name)) only[side] += " " + name;
    }
  }
  if (!only[kTest].empty() || !only[kRef].empty()) {
    fail("directory " + show(rel) + " lists different names",
         "only here:" + (only[kTest].empty() ? " (none)" : only[kTest]),
         "only here:" + (only[kRef].empty() ? " (none)" : only[kRef]));
  }
  for (const auto& [name, type] : ents[kRef]) {
    unsigned char t = ents[kTest][name];
    if (t != type) {
      fail("readdir d_type of " + join(rel, name) + " differs", strf("d_type=%u", t),
           strf("d_type=%u", type));
    }
  }
  *out = std::move(ents[kRef]);
  return true;
}

void Tester::compare_tree(const std::string& why) {
  ++compares_;
  push_history(strf("   [%s after op %llu]", why.c_str(), static_cast<ull>(op_no_)));
  struct stat st[2];
  Pair o = both([&](int side) { return outcome(::lstat(work_[side].c_str(), &st[side])); });
  if (o[kTest] != o[kRef] || o[kRef].ret < 0) fail_pair("lstat of the work directory", o);
  compare_stat(st, "work directory");
  pruned_ = 0;
  compare_dir("", 0);
  if (pruned_) note(strf(" (pruned %llu entries deeper than %d levels)", pruned_, kMaxDepth));
  // Open fds, including files unlinked while open (nlink 0 on both sides).
  for (const FdSlot& s : fds_) fstat_both(s.fd, "fstat of open " + slot_name(s));
  for (const MapSlot& m : maps_) fstat_both(m.fd, strf("fstat of map%d", m.id));
  note(" ok");
}

void Tester::compare_dir(const std::string& rel, int depth) {
  std::map<std::string, unsigned char> entries;
  if (!compare_listing(rel, &entries)) {
    fail("cannot list directory " + show(rel) + " on either side", "-", "-");
  }
  for (const auto& [name, type] : entries) compare_entry(join(rel, name), type, depth + 1);
}

// Renaming a directory into a namespace path carries its subtree along, so trees get deeper
// than the namespace and keep growing with entries no path reaches. Once compared, such
// entries are removed (on both sides, results compared) to keep the tree and compares small.
void Tester::remove_both(const std::string& rel) {
  ++pruned_;
  struct stat st;
  if (ref_stat(rel, false, &st) && S_ISDIR(st.st_mode)) {
    std::map<std::string, unsigned char> entries;
    compare_listing(rel, &entries);
    for (const auto& [name, type] : entries) remove_both(join(rel, name));
    Pair o = both([&](int side) { return outcome(::rmdir(at(side, rel).c_str())); });
    expect(("prune: rmdir " + rel).c_str(), o);
  } else {
    Pair o = both([&](int side) { return outcome(::unlink(at(side, rel).c_str())); });
    expect(("prune: unlink " + rel).c_str(), o);
  }
}

void Tester::compare_entry(const std::string& rel, unsigned char d_type, int depth) {
  struct stat st[2];
  Pair o = both([&](int side) { return outcome(::lstat(at(side, rel).c_str(), &st[side])); });
  if (o[kTest] != o[kRef] || o[kRef].ret < 0) fail_pair("lstat " + rel, o);
  compare_stat(st, "lstat " + rel);
  // Both sides reported the same d_type (compare_listing), so checking the reference's
  // against lstat also checks the test side's.
  if (d_type != DT_UNKNOWN && d_type != IFTODT(st[kRef].st_mode)) {
    fail("d_type of " + rel + " disagrees with lstat", strf("d_type=%u", d_type),
         strf("lstat type=%u", IFTODT(st[kRef].st_mode)));
  }
  if (S_ISREG(st[kRef].st_mode)) compare_content(rel);
  if (S_ISLNK(st[kRef].st_mode)) compare_symlink(rel);
  compare_xattrs(rel);
  if (S_ISDIR(st[kRef].st_mode)) compare_dir(rel, depth);
  if (depth > kMaxDepth) remove_both(rel);
}

void Tester::compare_content(const std::string& rel) {
  int fd[2] = {-1, -1};
  Pair o = both([&](int side) {
    return outcome(fd[side] = ::open(at(side, rel).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  });
  expect_status(("open for compare " + rel).c_str(), o);
  if (o[kRef].ret < 0) fail_pair("cannot open " + rel + " for compare", o);
  for (std::uint64_t off = 0;;) {
    ssize_t n[2];
    for (int side : {kRef, kTest}) {
      n[side] = pread_full(fd[side], io_[side].data(), kCompareChunk, static_cast<off_t>(off));
      if (n[side] < 0) {
        fail(strf("reading %s failed on the %s side", rel.c_str(), kSideName[side]),
             side == kTest ? errno_name(errno) : "-", side == kRef ? errno_name(errno) : "-");
      }
    }
    std::size_t common = static_cast<std::size_t>(std::min(n[0], n[1]));
    expect_bytes("content of " + rel, common, off);
    if (n[kTest] != n[kRef]) {
      fail("content of " + rel + " has a different length",
           strf("%llu bytes", static_cast<ull>(off + n[kTest])),
           strf("%llu bytes", static_cast<ull>(off + n[kRef])));
    }
    if (n[kRef] == 0) break;
    off += static_cast<std::uint64_t>(n[kRef]);
  }
  ::close(fd[0]);
  ::close(fd[1]);
}

void Tester::compare_symlink(const std::string& rel) {
  std::string target[2];
  for (int side : {kRef, kTest}) {
    char buf[8192];
    ssize_t n = ::readlink(at(side, rel).c_str(), buf, sizeof buf);
    target[side] = n < 0 ? "readlink failed: " + errno_name(errno)
                         : std::string(buf, static_cast<std::size_t>(n));
  }
  if (target[kTest] != target[kRef]) {
    fail("symlink target of " + rel + " differs", target[kTest], target[kRef]);
  }
}

void Tester::compare_xattrs(const std::string& rel) {
  std::set<std::string> names[2];
  Pair o;
  for (int side : {kRef, kTest}) {
    o[side] = outcome(::llistxattr(at(side, rel).c_str(), io_[side].data(), kXattrBuf));
    if (o[side].ret >= 0) names[side] = user_names(io_[side].data(), o[side].ret);
  }
  expect_status(("llistxattr " + rel).c_str(), o);
  if (names[kTest] != names[kRef]) {
    fail("user.* xattr names of " + rel + " differ", names_str(names[kTest]),
         names_str(names[kRef]));
  }
  for (const std::string& name : names[kRef]) {
    std::string value[2];
    for (int side : {kRef, kTest}) {
      ssize_t n = ::lgetxattr(at(side, rel).c_str(), name.c_str(), io_[side].data(), kXattrBuf);
      value[side] = n < 0 ? "lgetxattr failed: " + errno_name(errno)
                          : std::string(io_[side].data(), static_cast<std::size_t>(n));
    }
    if (value[kTest] != value[kRef]) {
      auto show_value = [](const std::string& v) {
        return strf("%zu bytes: ", v.size()) + hex_at(v.data(), 0, v.size());
      };
      fail("xattr " + name + " of " + rel + " differs", show_value(value[kTest]),
           show_value(value[kRef]));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Remounting, setup, main loop

bool Tester::remount_due() {
  if (opt_.remount_cmd.empty()) return false;
  return remount_rng_() % opt_.remount_every == 0;  // mean interval: --remount-every ops
}

static int run_shell(const std::string& cmd) {
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

void Tester::remount() {
  ++remounts_;
  push_history(
      strf("   [remount after op %llu: %s]", static_cast<ull>(op_no_), opt_.remount_cmd.c_str()));
  // Remember what was open, to reopen it afterwards (same files on both sides by path).
  std::vector<std::pair<std::string, int>> reopen;
  for (const FdSlot& s : fds_) reopen.emplace_back(s.path, s.flags);
  close_all();
  int status = run_shell(opt_.remount_cmd);
  if (status != 0) {
    std::string how = status < 0            ? "could not run /bin/sh"
                      : WIFEXITED(status)   ? strf("exit status %d", WEXITSTATUS(status))
                      : WIFSIGNALED(status) ? strf("killed by signal %d", WTERMSIG(status))
                                            : strf("wait status %d", status);
    fail("remount command failed: " + opt_.remount_cmd, how, "-");
  }
  mmap_dirty_.clear();  // unmounting wrote every dirty page back
  compare_tree("tree compare after remount");
  for (auto& [path, flags] : reopen) {
    const int f = flags & ~(O_CREAT | O_EXCL | O_TRUNC);
    int fd[2] = {-1, -1};
    push_history(strf("   [reopen %s %s]", path.c_str(), open_flags_str(f).c_str()));
    Pair o = both([&](int side) {
      return outcome(fd[side] = ::open(at(side, path).c_str(), f | O_CLOEXEC));
    });
    note(" ret=" + (o[kRef].ret >= 0 ? std::string("ok") : to_string(o[kRef])));
    expect_status("reopen after remount", o);
    if (o[kRef].ret < 0) continue;
    FdSlot slot{next_id_++, {fd[0], fd[1]}, f, path, 0, false};
    struct stat st = fstat_both(slot.fd, "fstat after reopen");
    slot.ref_ino = st.st_ino;
    slot.is_reg = S_ISREG(st.st_mode);
    note(strf(" as fd%d", slot.id));
    fds_.push_back(slot);
  }
}

static int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  return ::remove(path) == 0 ? 0 : -1;
}

static bool remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  return ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

void Tester::setup_work_dirs() {
  const std::string dirs[2] = {opt_.test_dir, opt_.ref_dir};
  struct stat st[2];
  for (int side : {kTest, kRef}) {
    if (::stat(dirs[side].c_str(), &st[side]) != 0 || !S_ISDIR(st[side].st_mode)) {
      usage_error(strf("--%s %s is not a directory", kSideName[side], dirs[side].c_str()));
    }
  }
  if (st[kTest].st_dev == st[kRef].st_dev && st[kTest].st_ino == st[kRef].st_ino) {
    usage_error("--test and --ref must be different directories");
  }
  for (int side : {kTest, kRef}) {
    if (!remove_tree(work_[side])) {
      usage_error("cannot remove leftover " + work_[side] + ": " + std::strerror(errno));
    }
    // Explicit chmod: the mode of the work directory is compared too, whatever the umask.
    if (::mkdir(work_[side].c_str(), 0755) != 0 || ::chmod(work_[side].c_str(), 0755) != 0) {
      usage_error("cannot create " + work_[side] + ": " + std::strerror(errno));
    }
  }
}

int Tester::run() {
  setup_work_dirs();  // first: bad directories are usage errors
  std::printf("fs_difftest: seed=%llu\n", static_cast<ull>(opt_.seed));
  std::fflush(stdout);
  ::umask(022);  // same on both sides; the filesystem under test must apply it like ext4
  struct sigaction sa = {};
  sa.sa_handler = on_sigbus;
  ::sigaction(SIGBUS, &sa, nullptr);

  const auto start = std::chrono::steady_clock::now();
  for (op_no_ = 1; op_no_ <= opt_.ops; ++op_no_) {
    random_op();
    if (remount_due()) {
      remount();
    } else if (op_no_ % kCompareEvery == 0) {
      compare_tree("tree compare");
    }
  }
  op_no_ = opt_.ops;
  compare_tree("final tree compare");
  push_history("   [close everything]");
  close_all();
  if (opt_.verbose && !history_.empty()) std::printf("%s\n", history_.back().c_str());
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  for (int side : {kTest, kRef}) {
    if (!remove_tree(work_[side])) {
      std::fprintf(stderr, "fs_difftest: warning: cannot remove %s: %s\n", work_[side].c_str(),
                   std::strerror(errno));
    }
  }
  std::string per_op;
  for (int op = 0; op < kOpCount; ++op) {
    per_op += strf(" %s=%llu", kOps[op].name, static_cast<ull>(counts_[op]));
  }
  std::printf("fs_difftest: ok seed=%llu ops=%llu remounts=%llu tree-compares=%llu %.1fs |%s\n",
              static_cast<ull>(opt_.seed), static_cast<ull>(opt_.ops), static_cast<ull>(remounts_),
              static_cast<ull>(compares_), secs, per_op.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse_args(argc, argv);
  Tester tester(std::move(opt));
  return tester.run();
}
