// The control socket without FUSE: a Filesystem over a real store, the server, and a
// raw client speaking the line protocol (fs/control_protocol.h).
#include "fs/control_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>

#include "fs/control_protocol.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using Json = nlohmann::ordered_json;
using testing::random_bytes;
using testing::TempDir;

// A raw client: one connection, lines in and out.
class RawClient {
 public:
  explicit RawClient(const std::filesystem::path& socket)
      : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    UnixAddress address;
    EXPECT_TRUE(address.set(socket));
    EXPECT_EQ(::connect(fd_.get(), address.get(), address.size), 0) << std::strerror(errno);
  }
  void send_raw(std::string_view bytes) {
    EXPECT_EQ(::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  std::string line() {
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string out = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return out;
      }
      char chunk[4096];
      ssize_t n = ::read(fd_.get(), chunk, sizeof chunk);
      if (n <= 0) return "<eof>";
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  // The final reply to `request`; progress lines are counted.
  Json call(const Json& request, int* progress_lines = nullptr) {
    send_raw(request.dump() + "\n");
    for (;;) {
      Json reply = Json::parse(line());
      if (reply.contains("ok")) return reply;
      EXPECT_TRUE(reply.contains("progress")) << reply.dump();
      if (progress_lines) ++*progress_lines;
    }
  }

 private:
  UniqueFd fd_;
  std::string buffer_;
};

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Store::init(dir_.path() / "s");
    store_ = Store::open(dir_.path() / "s", OpenOptions{.cache_bytes = 16 << 20});
    fs_ = std::make_unique<Filesystem>(*store_, FsOptions{});
    PackerOptions off;
    off.enabled = false;
    packer_ = std::make_unique<BackgroundPacker>(*store_, off);
  }
  void TearDown() override {
    server_.reset();
    packer_.reset();
    fs_.reset();
  }
  void start() { server_ = std::make_unique<ControlServer>(*store_, *fs_, *packer_, "/mnt/x"); }
  std::filesystem::path socket() const { return ControlServer::socket_path(store_->dir()); }
  // A file of `data` at /dir/name (dir made if missing), written out and committed.
  std::uint64_t write_file(std::uint64_t parent, const std::string& name,
                           const std::vector<std::byte>& data) {
    Inode inode = fs_->make_node(parent, name, S_IFREG | 0644, 0, Caller{});
    fs_->open(inode.ino, false);
    fs_->write(inode.ino, 0, data);
    fs_->release(inode.ino);
    return inode.ino;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Filesystem> fs_;
  std::unique_ptr<BackgroundPacker> packer_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, SocketIsPrivateReplacesAStaleOneAndGoesAtExit) {
  std::filesystem::create_directories(socket().parent_path());
  std::ofstream(socket()) << "stale";
  start();
  struct stat st;
  ASSERT_EQ(::stat(socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Nothing else left behind in run/ (the temporary name was renamed).
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(socket().parent_path())) {
    entries += e.path().filename().string().starts_with("control.sock") ? 1 : 0;
  }
  EXPECT_EQ(entries, 1);
  server_.reset();
  EXPECT_FALSE(std::filesystem::exists(socket()));
}

TEST_F(ControlServerTest, GarbageGetsAnErrorAndTheServerGoesOn) {
  start();
  RawClient client(socket());
  for (std::string garbage : {"hello\n", "{\"cmd\": 42}\n", "[1,2]\n", "{\"cmd\":\"nope\"}\n",
                              "\xff\xfe{{{\n", "{\"cmd\":\"pack\",\"wait\":\"yes\"}\n"}) {
    client.send_raw(garbage);
    Json reply = Json::parse(client.line());
    EXPECT_EQ(reply["ok"], false) << garbage;
    EXPECT_TRUE(reply["error"].is_string());
  }
  // Still serving, on the same connection and on a new one.
  EXPECT_EQ(client.call({{"cmd", "status"}})["ok"], true);
  RawClient other(socket());
  EXPECT_EQ(other.call({{"cmd", "jobs"}})["ok"], true);
  // A line past the limit ends the connection after an error.
  other.send_raw(std::string(kMaxRequestLine + 10, 'x'));
  EXPECT_EQ(Json::parse(other.line())["ok"], false);
  EXPECT_EQ(other.line(), "<eof>");
}

TEST_F(ControlServerTest, StatusHasTheStoreKeysAndTheFilesystemOnes) {
  std::mt19937_64 rng(1);
  auto data = random_bytes(rng, 100 << 10);
  write_file(kRootIno, "a", data);
  write_file(kRootIno, "b", data);  // the same bytes: dedup 2x
  start();
  RawClient client(socket());
  EXPECT_EQ(client.call({{"cmd", "flush"}})["ok"], true);
  Json s = client.call({{"cmd", "status"}})["status"];
  for (const char* key :
       {"store", "io_engine", "objects", "bytes", "packs", "mountpoint", "logical_bytes",
        "dedup_ratio", "compression_ratio", "cache_hit_rate", "packer", "jobs_running"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  EXPECT_EQ(s["mountpoint"], "/mnt/x");
  EXPECT_EQ(s["logical_bytes"], 2 * data.size());
  EXPECT_EQ(s["bytes"]["raw"], data.size());
  EXPECT_DOUBLE_EQ(s["dedup_ratio"].get<double>(), 2.0);
  EXPECT_TRUE(s["cache_hit_rate"].is_null()) << "nothing read yet";
  EXPECT_GT(s["cache"]["capacity"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(s["packer"]["state"], "off");
  EXPECT_GT(s["objects"]["loose"].get<int>(), 0);

  // b holds a's bytes: reading a then b reads each chunk from disk once, then from
  // the cache.
  std::vector<std::byte> got(data.size());
  for (const char* name : {"a", "b"}) {
    const auto ino = fs_->lookup(kRootIno, name)->ino;
    fs_->open(ino, false);
    EXPECT_EQ(fs_->read(ino, 0, got), data.size());
    EXPECT_EQ(got, data);
    fs_->release(ino);
  }
  s = client.call({{"cmd", "status"}})["status"];
  EXPECT_DOUBLE_EQ(s["cache_hit_rate"].get<double>(), 0.5);
  EXPECT_GT(s["cache"]["hits"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(s["cache"]["hits"], s["cache"]["misses"]);
  EXPECT_EQ(s["cache"]["bytes"].get<std::uint64_t>(),
            data.size() + s["cache"]["misses"].get<std::uint64_t>() * ObjectCache::kEntryOverhead);
}

TEST_F(ControlServerTest, PackWaitStreamsProgressAndJobsListsIt) {
  std::mt19937_64 rng(2);
  for (int i = 0; i < 20; ++i)
    write_file(kRootIno, "f" + std::to_string(i), random_bytes(rng, 70 << 10));
  start();
  RawClient client(socket());
  client.call({{"cmd", "flush"}});
  int progress = 0;
  Json job = client.call({{"cmd", "pack"}, {"wait", true}}, &progress)["job"];
  EXPECT_EQ(job["state"], "done");
  EXPECT_GT(job["result"]["objects"].get<int>(), 0);
  Json s = client.call({{"cmd", "status"}})["status"];
  EXPECT_EQ(s["objects"]["loose"], 0);
  Json jobs = client.call({{"cmd", "jobs"}})["jobs"];
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["kind"], "pack");
  Json again = client.call({{"cmd", "job"}, {"id", jobs[0]["id"]}})["job"];
  EXPECT_EQ(again["state"], "done");
  // Without wait: the job's id at once.
  Json started = client.call({{"cmd", "gc"}})["job"];
  EXPECT_TRUE(started["id"].is_number());
  Json gc = client.call({{"cmd", "job"}, {"id", started["id"]}, {"wait", true}})["job"];
  EXPECT_EQ(gc["state"], "done");
  EXPECT_EQ(client.call({{"cmd", "repack"}, {"threshold", 250}})["ok"], false);
}

TEST_F(ControlServerTest, VerifyNamesTheFilesThatUseABadObject) {
  std::mt19937_64 rng(3);
  const auto shared = random_bytes(rng, 12 << 10);
  Inode dir = fs_->make_node(kRootIno, "dir", S_IFDIR | 0755, 0, Caller{});
  Inode sub = fs_->make_node(dir.ino, "sub", S_IFDIR | 0755, 0, Caller{});
  const auto victim = write_file(sub.ino, "victim", shared);
  fs_->link(victim, kRootIno, "hardlink");
  write_file(kRootIno, "fine", random_bytes(rng, 12 << 10));
  fs_->sync_all();
  // The victim's only object, damaged in its loose file.
  const ObjectId bad = Sha256::of(shared);
  const std::string hex = bad.hex();
  const auto file = store_->dir() / "loose" / hex.substr(0, 2) / hex.substr(2);
  ASSERT_TRUE(std::filesystem::exists(file));
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a' ^ static_cast<char>(shared[100]));
  }
  start();
  RawClient client(socket());
  Json job = client.call({{"cmd", "verify"}, {"wait", true}})["job"];
  ASSERT_EQ(job["state"], "done");
  Json r = job["result"];
  EXPECT_EQ(r["clean"], false);
  ASSERT_EQ(r["problems"].size(), 1u);
  EXPECT_EQ(r["problems"][0]["id"], hex);
  EXPECT_EQ(r["problems"][0]["paths"], Json::array({"/mnt/x/dir/sub/victim", "/mnt/x/hardlink"}));
}

}  // namespace
}  // namespace casfs
