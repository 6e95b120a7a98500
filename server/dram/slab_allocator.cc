#include "server/dram/slab_allocator.h"

#include <algorithm>

namespace kvtier {

namespace {
constexpr uint64_t kPage = 4096;
}

SlabAllocator::SlabAllocator(uint64_t capacity) {
  if (capacity >= kSlabBytes) {
    slab_bytes_ = kSlabBytes;
    num_slabs_ = capacity / kSlabBytes;
  } else {
    slab_bytes_ = std::max<uint64_t>(kPage, capacity / kPage * kPage);
    num_slabs_ = 1;
  }
  slabs_.resize(num_slabs_);
  for (uint32_t i = 0; i < num_slabs_; ++i) free_slabs_.insert(free_slabs_.end(), i);
}

uint64_t SlabAllocator::SlotBytes(uint64_t bytes) {
  return std::max<uint64_t>(kPage, (bytes + kPage - 1) / kPage * kPage);
}

std::optional<uint32_t> SlabAllocator::TakeSlabs(uint32_t run) {
  if (run == 1) {
    if (free_slabs_.empty()) return std::nullopt;
    uint32_t s = *free_slabs_.begin();
    free_slabs_.erase(free_slabs_.begin());
    return s;
  }
  // First fit over consecutive free slabs.
  uint32_t start = 0, len = 0;
  for (uint32_t s : free_slabs_) {
    if (len > 0 && s == start + len) {
      ++len;
    } else {
      start = s;
      len = 1;
    }
    if (len == run) {
      for (uint32_t i = start; i < start + run; ++i) free_slabs_.erase(i);
      return start;
    }
  }
  return std::nullopt;
}

void SlabAllocator::ReturnSlabs(uint32_t first, uint32_t run) {
  for (uint32_t i = first; i < first + run; ++i) {
    slabs_[i] = Slab{};  // also frees its slot list
    free_slabs_.insert(i);
  }
}

void SlabAllocator::AddPartial(SizeClass& cls, uint32_t slab) {
  slabs_[slab].partial_pos = static_cast<uint32_t>(cls.partial.size());
  cls.partial.push_back(slab);
}

void SlabAllocator::RemovePartial(SizeClass& cls, uint32_t slab) {
  const uint32_t pos = slabs_[slab].partial_pos;
  const uint32_t last = cls.partial.back();
  cls.partial[pos] = last;
  slabs_[last].partial_pos = pos;
  cls.partial.pop_back();
  slabs_[slab].partial_pos = kNotPartial;
}

std::optional<uint64_t> SlabAllocator::Allocate(uint64_t slot_bytes) {
  if (slot_bytes == 0 || slot_bytes > capacity()) return std::nullopt;
  if (slot_bytes > slab_bytes_) {
    const uint32_t run = static_cast<uint32_t>((slot_bytes + slab_bytes_ - 1) / slab_bytes_);
    auto first = TakeSlabs(run);
    if (!first) return std::nullopt;
    slabs_[*first].slot_bytes = slot_bytes;
    slabs_[*first].run = run;
    slabs_[*first].used = 1;
    used_bytes_ += slot_bytes;
    return *first * slab_bytes_;
  }
  SizeClass& cls = classes_[slot_bytes];
  if (cls.partial.empty()) {
    auto fresh = TakeSlabs(1);
    if (!fresh) return std::nullopt;
    Slab& s = slabs_[*fresh];
    s.slot_bytes = slot_bytes;
    const uint32_t n = static_cast<uint32_t>(slab_bytes_ / slot_bytes);
    s.free_slots.resize(n);
    // Reversed so slots are handed out in address order.
    for (uint32_t i = 0; i < n; ++i) s.free_slots[i] = n - 1 - i;
    AddPartial(cls, *fresh);
  }
  const uint32_t index = cls.partial.back();
  Slab& slab = slabs_[index];
  const uint32_t slot = slab.free_slots.back();
  slab.free_slots.pop_back();
  ++slab.used;
  if (slab.free_slots.empty()) RemovePartial(cls, index);
  used_bytes_ += slot_bytes;
  return static_cast<uint64_t>(index) * slab_bytes_ + static_cast<uint64_t>(slot) * slot_bytes;
}

void SlabAllocator::Free(uint64_t offset, uint64_t slot_bytes) {
  const uint32_t index = static_cast<uint32_t>(offset / slab_bytes_);
  Slab& slab = slabs_[index];
  used_bytes_ -= slot_bytes;
  if (slot_bytes > slab_bytes_) {
    ReturnSlabs(index, slab.run);
    return;
  }
  SizeClass& cls = classes_[slot_bytes];
  const uint64_t base = static_cast<uint64_t>(index) * slab_bytes_;
  slab.free_slots.push_back(static_cast<uint32_t>((offset - base) / slot_bytes));
  if (slab.partial_pos == kNotPartial) AddPartial(cls, index);
  if (--slab.used == 0) {
    RemovePartial(cls, index);
    ReturnSlabs(index, 1);
  }
}

}  // namespace kvtier
