// pack: moves loose objects, and the records of intake packs (intake_pack.h), into
// the newest regular pack, compressing what is worth it.
//
// Crash safety, step by step (each step is a failpoint the crash tests stop at):
//   1. records are appended past the pack's committed end  (pack.appended)
//   2. the pack is synced                                  (pack.synced)
//   3. one index transaction points the objects at their records, moves the
//      pack's committed end and counts the intake records left behind as dead
//                                                          (pack.committed)
//   4. the loose files are unlinked                        (pack.unlinked)
//   5. intake packs with no live record left lose their entry, then their file
//                                                          (pack.intake_removed)
// A crash before 3 leaves a tail that reopening the pack cuts off; a crash before 4
// leaves loose files the index no longer names, which gc removes; a crash in 5
// leaves an emptied intake pack, which the next pack removes, or an orphan file.
#include <algorithm>
#include <future>
#include <unordered_map>
#include <unordered_set>

#include "store/failpoint.h"
#include "store/object_check.h"
#include "store/store_impl.h"

namespace casfs {

namespace {

struct PackedRecord {
  std::size_t object;  // index into the batch
  std::uint64_t offset_in_buffer;
  RecordHeader header;
};

// Appends one record for `raw` to `out`, compressed when it pays.
RecordHeader encode_record(const ObjectInfo& info, std::span<const std::byte> raw, int level,
                           std::vector<std::byte>& out) {
  RecordHeader header;
  header.id = info.id;
  header.raw_size = raw.size();
  std::size_t at = out.size();
  out.resize(at + kRecordHeaderSize);
  if (std::size_t n = compress_if_worth(raw, level, out)) {
    header.codec = Codec::kZstd;
    header.stored_size = n;
  }
  if (header.codec == Codec::kRaw) {
    out.insert(out.end(), raw.begin(), raw.end());
    header.stored_size = raw.size();
  }
  header.payload_xxh3 =
      Xxh3::of(std::span<const std::byte>(out).subspan(at + kRecordHeaderSize, header.stored_size));
  auto hb = header.encode();
  std::copy(hb.begin(), hb.end(), out.begin() + static_cast<std::ptrdiff_t>(at));
  return header;
}

// Streams a large loose object into the pack at its end; returns its header and
// record offset. The object is checked against the index first.
std::pair<RecordHeader, std::uint64_t> append_large(Store::Impl& impl, PackAppender& pack,
                                                    const ObjectInfo& info, int level) {
  UniqueFd fd = impl.loose.open_read(info.id);
  if (!fd) throw_errno("cannot open loose object " + info.id.hex());
  std::vector<std::byte> buf(kStreamPiece);
  Xxh3 check;
  std::uint64_t size = 0;
  while (std::size_t n = pread_full(fd.get(), buf, size)) {
    check.update(std::span<const std::byte>(buf).first(n));
    size += n;
  }
  if (size != info.raw_size || check.digest() != info.checksum) {
    throw corrupt_object(info.id, "loose file does not match its index entry");
  }
  std::size_t head = pread_full(fd.get(), buf, 0);
  bool compress = worth_compressing(
      std::span<const std::byte>(buf).first(std::min<std::size_t>(head, 64 << 10)), size);

  RecordHeader header;
  header.id = info.id;
  header.raw_size = size;
  header.codec = compress ? Codec::kZstd : Codec::kRaw;
  const std::uint64_t record_at = pack.size();
  std::uint64_t out_at = record_at + kRecordHeaderSize;
  Xxh3 payload;
  std::vector<std::byte> out;
  std::optional<ZstdCompressStream> zstd;
  if (compress) zstd.emplace(level);
  auto emit = [&](std::span<const std::byte> bytes) {
    payload.update(bytes);
    pwrite_full(pack.fd(), bytes, out_at);
    out_at += bytes.size();
  };
  for (std::uint64_t off = 0; off < size;) {
    std::size_t n = pread_full(fd.get(), buf, off);
    if (n == 0) throw corrupt_object(info.id, "loose file shrank while being packed");
    off += n;
    auto piece = std::span<const std::byte>(buf).first(n);
    if (!zstd) {
      emit(piece);
      continue;
    }
    out.clear();
    zstd->update(piece, out);
    if (!out.empty()) emit(out);
  }
  if (zstd) {
    out.clear();
    zstd->finish(out);
    emit(out);
  }
  header.stored_size = out_at - record_at - kRecordHeaderSize;
  header.payload_xxh3 = payload.digest();
  pwrite_full(pack.fd(), header.encode(), record_at);
  pack.reserve(header.record_size());
  return {header, record_at};
}

// Removes intake packs that no live record needs any more: their entries in one
// transaction, then their files (readers holding an fd keep reading; others look
// the object up again and find its new place).
void remove_drained_intake_packs(Store::Impl& impl) {
  std::vector<std::uint32_t> drained;
  {
    auto txn = LmdbTxn::read(*impl.env);
    impl.index->for_each_pack(txn, [&](const PackInfo& p) {
      if (p.intake && p.live_records == 0) drained.push_back(p.id);
    });
  }
  if (drained.empty()) return;  // the usual case: no write transaction
  {
    // Only pack() moves records out of intake packs, and it holds the maintenance
    // lock; but the open intake pack (and one just let go) gains records. A pack
    // still in flight is left alone; one that is not has every record it will ever
    // have committed, which this transaction sees.
    auto txn = LmdbTxn::write(*impl.env);
    std::erase_if(drained, [&](std::uint32_t id) {
      auto p = impl.index->get_pack(txn, id);
      return !p || p->live_records != 0 || impl.intake_in_flight.contains(id);
    });
    for (std::uint32_t id : drained) impl.index->erase_pack(txn, id);
    txn.commit();
  }
  for (std::uint32_t id : drained) {
    impl.packs.remove(id);
    failpoint("pack.intake_removed");
  }
}

}  // namespace

PackAppender Store::Impl::open_pack_for_append() {
  std::optional<PackInfo> newest;
  {
    auto txn = LmdbTxn::read(*env);
    index->for_each_pack(txn, [&](const PackInfo& p) {
      if (!p.intake) newest = p;
    });
  }
  if (newest && newest->size < config.settings.pack_target_bytes) {
    try {
      return PackAppender::reopen(packs, newest->id, newest->size);
    } catch (const StoreError&) {
      // Missing or shorter than recorded: leave it to verify and start a new pack.
    }
  }
  const std::uint32_t id = new_pack_id();
  auto pack = PackAppender::create(packs, id);
  auto txn = LmdbTxn::write(*env);
  index->put_pack(txn, PackInfo{id, pack.size(), 0, 0, 0});
  txn.commit();
  return pack;
}

PackReport Store::pack(const ProgressFn& progress) {
  auto& impl = *impl_;
  std::lock_guard job(impl.maintenance);
  const int level = impl.config.settings.compression_level;
  remove_drained_intake_packs(impl);

  // Loose objects in id order, then intake records in file order.
  std::vector<ObjectInfo> todo;
  {
    auto txn = LmdbTxn::read(*impl.env);
    std::unordered_set<std::uint32_t> intake;
    impl.index->for_each_pack(txn, [&](const PackInfo& p) {
      if (p.intake) intake.insert(p.id);
    });
    std::vector<ObjectInfo> from_intake;
    impl.index->for_each(txn, [&](const ObjectInfo& info) {
      if (info.tier == Tier::kLoose) todo.push_back(info);
      if (info.tier == Tier::kPacked && intake.contains(info.pack_id)) from_intake.push_back(info);
      return true;
    });
    std::sort(from_intake.begin(), from_intake.end(), [](const ObjectInfo& a, const ObjectInfo& b) {
      return std::tie(a.pack_id, a.offset) < std::tie(b.pack_id, b.offset);
    });
    todo.insert(todo.end(), from_intake.begin(), from_intake.end());
  }
  PackReport report;
  if (todo.empty()) return report;

  std::optional<PackAppender> pack;
  // The loose files of one batch are unlinked while the next batch is compressed:
  // unlinking waits on the device (discards) far more than it uses the CPU.
  std::future<void> unlinking;
  bool drained_intake = false;
  std::size_t next = 0;
  while (next < todo.size()) {
    if (!pack || pack->size() >= impl.config.settings.pack_target_bytes) {
      pack.emplace(impl.open_pack_for_append());
    }
    // One batch: small objects read together, or one large object streamed.
    std::vector<std::size_t> batch;
    std::uint64_t batch_bytes = 0;
    while (next < todo.size() && batch.size() < kReadBatchOps && batch_bytes < kReadBatchBytes) {
      if (todo[next].raw_size > kInMemoryLimit && !batch.empty()) break;
      batch.push_back(next);
      batch_bytes += todo[next].raw_size;
      ++next;
      if (todo[batch.back()].raw_size > kInMemoryLimit) break;
    }

    // (object index in todo, header, offset in pack)
    std::vector<std::tuple<std::size_t, RecordHeader, std::uint64_t>> placed;
    if (todo[batch.front()].raw_size > kInMemoryLimit) {
      // Only loose objects are this large: intake packs take in-memory batches.
      try {
        auto [header, at] = append_large(impl, *pack, todo[batch.front()], level);
        placed.emplace_back(batch.front(), header, at);
      } catch (const StoreError&) {
        // A missing or damaged loose object stays where it is; verify reports it.
      }
    } else {
      // Loose files whole (one byte more, to catch a longer file); intake records
      // with their headers.
      std::vector<std::string> paths;
      std::vector<std::vector<std::byte>> bufs(batch.size());
      std::vector<ReadFileOp> file_reads;
      std::vector<ReadOp> record_reads;
      std::vector<std::size_t> read_of(batch.size());  // index into file_ or record_reads
      std::vector<std::shared_ptr<const UniqueFd>> pack_fds;
      std::vector<bool> good(batch.size(), false);
      paths.reserve(batch.size());
      for (std::size_t k = 0; k < batch.size(); ++k) {
        const ObjectInfo& info = todo[batch[k]];
        if (info.tier == Tier::kLoose) {
          paths.push_back(LooseTier::relative_path(info.id));
          bufs[k].resize(info.raw_size + 1);
          read_of[k] = file_reads.size();
          file_reads.push_back(
              ReadFileOp{impl.loose.dir_fd(), paths.back().c_str(), 0, bufs[k], 0});
          continue;
        }
        try {
          pack_fds.push_back(impl.packs.open_read(info.pack_id));  // cached by PackFiles
        } catch (const StoreError&) {
          read_of[k] = SIZE_MAX;  // a missing pack stays missing; verify reports it
          continue;
        }
        bufs[k].resize(kRecordHeaderSize + info.stored_size);
        read_of[k] = record_reads.size();
        record_reads.push_back(ReadOp{pack_fds.back()->get(), info.offset, bufs[k], 0});
      }
      impl.io->read_files(file_reads);
      impl.io->read(record_reads);

      // The raw bytes of each object that checks, to be encoded.
      std::vector<std::span<const std::byte>> raw(batch.size());
      for (std::size_t k = 0; k < batch.size(); ++k) {
        const ObjectInfo& info = todo[batch[k]];
        try {
          if (info.tier == Tier::kLoose) {
            check_loose(info, bufs[k], file_reads[read_of[k]].result);
            raw[k] = std::span<const std::byte>(bufs[k]).first(info.raw_size);
          } else if (read_of[k] != SIZE_MAX) {
            const auto& r = record_reads[read_of[k]];
            if (r.result != static_cast<std::int64_t>(bufs[k].size()))
              throw corrupt_object(info.id, "intake record is cut short");
            raw[k] = check_record(info, bufs[k]);
          } else {
            continue;
          }
          good[k] = true;
        } catch (const StoreError&) {
          // It stays where it is; verify reports it.
        }
      }
      // Compress on two workers; each builds its own run of records.
      auto encode_range = [&](std::size_t from, std::size_t to, std::vector<std::byte>& out) {
        std::vector<PackedRecord> recs;
        for (std::size_t k = from; k < to; ++k) {
          if (!good[k]) continue;
          std::uint64_t at = out.size();
          auto h = encode_record(todo[batch[k]], raw[k], level, out);
          recs.push_back(PackedRecord{k, at, h});
        }
        return recs;
      };
      std::size_t half = batch.size() / 2;
      std::vector<std::byte> out_a, out_b;
      auto second =
          std::async(std::launch::async, [&] { return encode_range(half, batch.size(), out_b); });
      auto recs_a = encode_range(0, half, out_a);
      auto recs_b = second.get();
      raw.clear();
      bufs.clear();

      std::uint64_t at_a = pack->reserve(out_a.size());
      std::uint64_t at_b = pack->reserve(out_b.size());
      std::vector<WriteOp> writes;
      if (!out_a.empty()) writes.push_back(WriteOp{pack->fd(), at_a, out_a, 0});
      if (!out_b.empty()) writes.push_back(WriteOp{pack->fd(), at_b, out_b, 0});
      impl.io->write(writes);
      for (const auto& w : writes) {
        if (w.result < 0) throw_errno(static_cast<int>(-w.result), "cannot append to pack");
      }
      for (const auto& r : recs_a)
        placed.emplace_back(batch[r.object], r.header, at_a + r.offset_in_buffer);
      for (const auto& r : recs_b)
        placed.emplace_back(batch[r.object], r.header, at_b + r.offset_in_buffer);
    }
    failpoint("pack.appended");
    pack->sync();
    failpoint("pack.synced");

    std::vector<ObjectId> unlink_ids;
    {
      auto txn = LmdbTxn::write(*impl.env);
      auto pinfo = impl.index->get_pack(txn, pack->id()).value_or(PackInfo{pack->id(), 0, 0, 0, 0});
      std::unordered_map<std::uint32_t, PackInfo> sources;  // intake packs left by records
      for (const auto& [i, header, at] : placed) {
        const ObjectInfo& was = todo[i];
        auto info = impl.index->get(txn, was.id);
        // Only from where it was when this run looked: gc may have dropped it, and
        // an intake record may since have been outlived by another copy.
        const bool still_there = info && info->tier == was.tier &&
                                 (was.tier == Tier::kLoose ||
                                  (info->pack_id == was.pack_id && info->offset == was.offset));
        if (!still_there) {
          pinfo.dead_bytes += header.record_size();
          continue;
        }
        if (was.tier == Tier::kPacked) {
          auto it = sources.find(was.pack_id);
          if (it == sources.end()) {
            auto src = impl.index->get_pack(txn, was.pack_id);
            if (!src)
              throw StoreError(EIO, "intake pack " + std::to_string(was.pack_id) +
                                        " lost its entry while being packed");
            it = sources.emplace(was.pack_id, *src).first;
          }
          it->second.record_died(kRecordHeaderSize + was.stored_size);
          drained_intake = drained_intake || it->second.live_records == 0;
        } else {
          unlink_ids.push_back(was.id);
        }
        info->tier = Tier::kPacked;
        info->codec = header.codec;
        info->pack_id = pack->id();
        info->offset = at;
        info->stored_size = header.stored_size;
        info->checksum = header.payload_xxh3;
        // A compressed payload can only be read whole; a raw one keeps its sums.
        if (header.codec != Codec::kRaw) info->block_sums.clear();
        impl.index->put(txn, *info);
        pinfo.live_bytes += header.record_size();
        pinfo.live_records += 1;
        report.objects += 1;
        report.raw_bytes += header.raw_size;
        report.stored_bytes += header.stored_size;
      }
      pinfo.size = pack->size();
      impl.index->put_pack(txn, pinfo);
      for (const auto& [id, src] : sources) impl.index->put_pack(txn, src);
      txn.commit();
    }
    failpoint("pack.committed");
    if (unlinking.valid()) unlinking.get();
    unlinking = std::async(std::launch::async, [&impl, ids = std::move(unlink_ids)] {
      impl.loose.remove(*impl.io, ids);
      failpoint("pack.unlinked");
    });
    if (progress) progress(next, todo.size());
  }
  if (unlinking.valid()) unlinking.get();
  if (drained_intake) remove_drained_intake_packs(impl);
  return report;
}

}  // namespace casfs
