// verify: reads every object back, checks it as every read does (sizes, XXH3,
// record headers) and also rehashes it with SHA-256, so content that was damaged
// before its checksum was taken is caught too, and checks the per-block sums that
// partial reads rely on against the bytes. Each bad object is reported.
#include <sys/stat.h>

#include "store/block_sums.h"
#include "store/store_impl.h"

namespace casfs {

namespace {
constexpr std::size_t kVerifyBatch = 8192;
}

VerifyReport Store::verify(const ProgressFn& progress) {
  auto& impl = *impl_;
  std::lock_guard job(impl.maintenance);
  VerifyReport report;

  std::vector<ObjectId> ids;
  std::vector<std::vector<std::uint32_t>> block_sums;  // per id; most are empty
  {
    auto txn = LmdbTxn::read(*impl.env);
    impl.index->for_each(txn, [&](const ObjectInfo& info) {
      ids.push_back(info.id);
      block_sums.push_back(info.block_sums);
      return true;
    });
    // A pack the index relies on must exist and be at least as long as committed.
    impl.index->for_each_pack(txn, [&](const PackInfo& p) {
      struct stat st;
      std::string name = PackFiles::file_name(p.id);
      if (::fstatat(impl.packs.dir_fd(), name.c_str(), &st, 0) != 0) {
        report.problems.push_back({ObjectId{}, "pack " + name + " is missing"});
      } else if (static_cast<std::uint64_t>(st.st_size) < p.size) {
        report.problems.push_back(
            {ObjectId{}, "pack " + name + " is shorter than the index records"});
      }
    });
  }

  Sha256 sha;
  std::uint64_t bytes = 0;
  ExtractSink sink;
  std::span<const ObjectId> batch;
  std::size_t from = 0;
  std::vector<std::byte> summed;  // the bytes of an object with block sums (<= 1 MiB)
  sink.data = [&](std::size_t i, std::span<const std::byte> piece) {
    sha.update(piece);
    bytes += piece.size();
    if (!block_sums[from + i].empty()) summed.insert(summed.end(), piece.begin(), piece.end());
  };
  sink.done = [&](std::size_t i) {
    if (sha.finish() != batch[i]) {
      report.problems.push_back({batch[i], "content does not hash to the object's id"});
    } else if (!block_sums[from + i].empty() && block_sums_of(summed) != block_sums[from + i]) {
      report.problems.push_back({batch[i],
                                 "block sums in the index do not match the content; run "
                                 "`casfs store rebuild-index`"});
    }
    summed.clear();
  };
  sink.error = [&](std::size_t i, const StoreError& e) {
    sha.finish();
    summed.clear();
    report.problems.push_back({batch[i], e.what()});
  };
  for (from = 0; from < ids.size(); from += kVerifyBatch) {
    batch = std::span<const ObjectId>(ids).subspan(from, std::min(kVerifyBatch, ids.size() - from));
    extract_many(batch, sink);
    report.objects_checked += batch.size();
    if (progress) progress(report.objects_checked, ids.size());
  }
  report.bytes_checked = bytes;
  return report;
}

}  // namespace casfs
