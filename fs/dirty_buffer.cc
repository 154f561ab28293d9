#include "fs/dirty_buffer.h"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace casfs {

namespace {
constexpr std::size_t kPieceBytes = 1 << 20;
}  // namespace

void DirtyBuffer::write(std::uint64_t offset, std::span<const std::byte> data) {
  if (data.empty()) return;
  const std::uint64_t end = offset + data.size();
  // The first range that could touch [offset, end]: the one starting at or before it.
  auto it = ranges_.upper_bound(offset);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.size() >= offset) it = prev;
  }
  // Sequential writes: extend the range that ends exactly here, in place.
  if (it != ranges_.end() && it->first <= offset) {
    auto& bytes = it->second;
    const std::uint64_t range_end = it->first + bytes.size();
    auto next = std::next(it);
    if (end <= range_end) {  // entirely inside
      std::memcpy(bytes.data() + (offset - it->first), data.data(), data.size());
      return;
    }
    if (next == ranges_.end() || next->first > end) {
      const std::size_t keep = offset - it->first;
      // A long sequential write is kept as pieces rather than one vector grown by
      // reallocation, which would copy everything so far at each growth and leave
      // the allocator holding the old copies.
      if (keep == bytes.size() && keep >= kPieceBytes &&
          bytes.size() + data.size() > bytes.capacity()) {
        ranges_.emplace_hint(next, offset, std::vector<std::byte>(data.begin(), data.end()));
        bytes_ += data.size();
        return;
      }
      bytes_ -= bytes.size() - keep;
      bytes.resize(keep);
      bytes.insert(bytes.end(), data.begin(), data.end());
      bytes_ += data.size();
      return;
    }
  }
  // General case: merge every range touching [offset, end] with the new bytes.
  std::uint64_t start = offset;
  std::uint64_t stop = end;
  auto last = it;
  while (last != ranges_.end() && last->first <= end) {
    start = std::min(start, last->first);
    stop = std::max<std::uint64_t>(stop, last->first + last->second.size());
    ++last;
  }
  std::vector<std::byte> merged(stop - start);
  for (auto r = it; r != last; ++r) {
    std::memcpy(merged.data() + (r->first - start), r->second.data(), r->second.size());
    bytes_ -= r->second.size();
  }
  std::memcpy(merged.data() + (offset - start), data.data(), data.size());
  ranges_.erase(it, last);
  bytes_ += merged.size();
  ranges_.emplace(start, std::move(merged));
}

void DirtyBuffer::write_under(std::uint64_t offset, std::span<const std::byte> data) {
  const std::uint64_t end = offset + data.size();
  std::uint64_t pos = offset;
  while (pos < end) {
    std::uint64_t start = end, stop = end;
    if (!next_range(pos, start, stop) || start > end) start = stop = end;
    if (start > pos) write(pos, data.subspan(pos - offset, std::min(start, end) - pos));
    pos = std::max(pos, stop);
  }
}

void DirtyBuffer::overlay(std::uint64_t offset, std::span<std::byte> out) const {
  if (out.empty()) return;
  const std::uint64_t end = offset + out.size();
  auto it = ranges_.upper_bound(offset);
  if (it != ranges_.begin()) --it;
  for (; it != ranges_.end() && it->first < end; ++it) {
    const std::uint64_t lo = std::max(offset, it->first);
    const std::uint64_t hi = std::min<std::uint64_t>(end, it->first + it->second.size());
    if (lo < hi)
      std::memcpy(out.data() + (lo - offset), it->second.data() + (lo - it->first), hi - lo);
  }
}

void DirtyBuffer::truncate(std::uint64_t size) {
  auto it = ranges_.lower_bound(size);
  for (auto r = it; r != ranges_.end(); ++r) bytes_ -= r->second.size();
  ranges_.erase(it, ranges_.end());
  if (ranges_.empty()) return;
  auto& [start, bytes] = *ranges_.rbegin();
  if (start + bytes.size() > size) {
    bytes_ -= start + bytes.size() - size;
    bytes.resize(size - start);
  }
}

void DirtyBuffer::clear() {
  ranges_.clear();
  bytes_ = 0;
}

std::vector<DirtyRange> DirtyBuffer::ranges() const {
  std::vector<DirtyRange> out;
  out.reserve(ranges_.size());
  for (const auto& [start, bytes] : ranges_) out.push_back(DirtyRange{start, bytes});
  return out;
}

bool DirtyBuffer::overlaps(std::uint64_t offset, std::uint64_t length) const {
  std::uint64_t start = 0, end = 0;
  return next_range(offset, start, end) && start < offset + length;
}

bool DirtyBuffer::next_range(std::uint64_t offset, std::uint64_t& start, std::uint64_t& end) const {
  auto it = ranges_.upper_bound(offset);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.size() > offset) it = prev;
  }
  if (it == ranges_.end()) return false;
  start = it->first;
  end = it->first + it->second.size();
  return true;
}

}  // namespace casfs
