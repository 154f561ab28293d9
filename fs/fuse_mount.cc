#include "fs/fuse_mount.h"

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "fs/fuse_session_io.h"
#include "store/log.h"

namespace casfs {

namespace {

// fuse_args wants a mutable argv; this owns the strings behind it.
class Args {
 public:
  explicit Args(const std::vector<std::string>& words) : words_(words) {
    for (auto& w : words_) argv_.push_back(w.data());
    argv_.push_back(nullptr);
    args_ = FUSE_ARGS_INIT(static_cast<int>(words_.size()), argv_.data());
  }
  ~Args() { fuse_opt_free_args(&args_); }
  Args(const Args&) = delete;
  Args& operator=(const Args&) = delete;
  fuse_args* get() { return &args_; }

 private:
  std::vector<std::string> words_;
  std::vector<char*> argv_;
  fuse_args args_{};
};

// Writes `value` to the knob `name` of the mount's backing device info in sysfs
// (/sys/class/bdi/MAJ:MIN/), which only root may change; says so once if it cannot.
void set_backing_device_knob(const struct stat& st, const char* name, std::uint64_t value,
                             const char* otherwise) {
  const std::string knob = "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                           std::to_string(minor(st.st_dev)) + "/" + name;
  std::ofstream out(knob);
  out << value << std::flush;
  if (!out) {
    const int error = errno;
    log::info("%s: cannot write %llu to %s (%s); run the mount as root", otherwise,
              static_cast<unsigned long long>(value), knob.c_str(), std::strerror(error));
    return;
  }
  log::debug("%s = %llu", knob.c_str(), static_cast<unsigned long long>(value));
}

// Two of the kernel's settings for the mount, kept in its backing device info:
// - Readahead. FUSE leaves it at the kernel's default of 128 KiB, and FUSE_INIT can
//   only lower it. One cold 128 KiB READ at a time leaves the disk idle between round
//   trips: a large file read back at half ext4's speed.
// - How many dirty pages the mount may hold before writers are throttled. FUSE limits
//   each mount strictly to 1 % of the dirty limit (44 MB on a 24 GiB machine), and a
//   new mount's writers are paced by a write-bandwidth estimate that starts at
//   100 MB/s and grows slowly: a 1.36 GB copy spent 2 s of its 3.1 s paused. At
//   256 MiB the copy took 2.66-3.03 s against 3.12-3.44 s. The limit stays strict,
//   so a stuck daemon still holds no more than this.
void tune_backing_device(const std::filesystem::path& mountpoint, std::uint64_t readahead) {
  // The kernel applies FUSE_INIT's readahead when the reply arrives; a window set
  // before then would be lowered again. statfs always asks the daemon, and the
  // kernel holds every request until INIT has been answered.
  struct statfs fs_info {};
  struct stat st {};
  if (::statfs(mountpoint.c_str(), &fs_info) != 0 || ::stat(mountpoint.c_str(), &st) != 0)
    return;  // unmounted already
  if (readahead != 0)
    set_backing_device_knob(st, "read_ahead_kb", readahead >> 10,
                            "readahead stays at the kernel's default");
  constexpr std::uint64_t kDirtyBytes = 256ull << 20;
  set_backing_device_knob(st, "max_bytes", kDirtyBytes,
                          "dirty pages stay at the kernel's limit for FUSE");
}

}  // namespace

FuseMount::FuseMount(const FuseContext& context, const std::filesystem::path& mountpoint,
                     const std::vector<std::string>& options, const fuse_lowlevel_ops& ops)
    : context_(std::make_unique<FuseContext>(context)),
      mountpoint_(std::filesystem::absolute(mountpoint)) {
  std::vector<std::string> words{"casfs"};
  for (const auto& option : options) {
    words.push_back("-o");
    words.push_back(option);
  }
  Args args(words);
  session_ = fuse_session_new(args.get(), &ops, sizeof(ops), context_.get());
  if (session_ == nullptr)
    throw std::runtime_error("cannot start a FUSE session (bad -o option? libfuse said why above)");
  if (fuse_session_mount(session_, mountpoint.c_str()) != 0) {
    fuse_session_destroy(session_);
    session_ = nullptr;
    throw std::runtime_error("cannot mount on " + mountpoint.string() +
                             " (is /dev/fuse there and fusermount3 installed?)");
  }
  mounted_ = true;
  context_->session = session_;
  try {
    install_session_io(session_);
  } catch (...) {
    // No destructor runs for a constructor that throws.
    fuse_session_unmount(session_);
    fuse_session_destroy(session_);
    session_ = nullptr;
    throw;
  }
  if (context_->uring) {
    ring_ = std::make_unique<FuseRing>(session_);
    context_->ring = ring_.get();
  }
}

FuseMount::~FuseMount() {
  if (session_ == nullptr) return;
  if (mounted_) fuse_session_unmount(session_);
  detach_ring();
  fuse_session_destroy(session_);
}

namespace {
constexpr unsigned kWorkerThreads = 10;
}  // namespace

int FuseMount::run() {
  if (fuse_set_signal_handlers(session_) != 0)
    throw std::runtime_error("cannot install signal handlers");
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(config, 1);
  // As many idle workers may stay as may run (libfuse's default maximum, 10): with
  // fewer, a busy mount keeps creating and ending threads, and each new thread
  // may take a fresh malloc arena that keeps the memory it touched.
  fuse_loop_cfg_set_max_threads(config, kWorkerThreads);
  fuse_loop_cfg_set_idle_threads(config, kWorkerThreads);
  std::jthread device_tuner([this] { tune_backing_device(mountpoint_, context_->readahead); });
  const int rc = fuse_session_loop_mt(session_, config);
  fuse_loop_cfg_destroy(config);
  fuse_remove_signal_handlers(session_);
  fuse_session_unmount(session_);
  mounted_ = false;
  // The kernel ends the ring's entries at unmount; its threads are joined here.
  detach_ring();
  // A signal number means a clean stop by SIGINT/SIGTERM/SIGHUP.
  return rc < 0 ? 1 : 0;
}

void FuseMount::detach_ring() {
  if (ring_) ring_->stop();  // no queue thread calls the hooks any more
  context_->ring = nullptr;
  ring_.reset();
}

}  // namespace casfs
