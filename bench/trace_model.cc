#include "bench/trace_model.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvtier::bench {
namespace {

// Reads an unsigned integer field; a missing or negative field is an error.
absl::Status GetUnsigned(const nlohmann::json& j, const char* field, uint64_t* out) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": missing or not a count"));
  }
  *out = it->get<uint64_t>();
  return absl::OkStatus();
}

absl::StatusOr<TraceRequest> ParseLine(const std::string& line) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  TraceRequest r;
  uint64_t ts = 0;
  if (absl::Status s = GetUnsigned(j, "timestamp", &ts); !s.ok()) return s;
  r.timestamp_ms = static_cast<int64_t>(ts);
  if (absl::Status s = GetUnsigned(j, "input_length", &r.input_length); !s.ok()) return s;
  if (absl::Status s = GetUnsigned(j, "output_length", &r.output_length); !s.ok()) return s;
  auto ids = j.find("hash_ids");
  if (ids == j.end() || !ids->is_array()) {
    return absl::InvalidArgumentError("hash_ids: missing or not an array");
  }
  r.hash_ids.reserve(ids->size());
  for (const auto& id : *ids) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0) {
      return absl::InvalidArgumentError("hash_ids: an element is not a non-negative integer");
    }
    r.hash_ids.push_back(id.get<uint64_t>());
  }
  return r;
}

}  // namespace

absl::StatusOr<std::vector<TraceRequest>> ParseTrace(std::istream& in, size_t limit) {
  std::vector<TraceRequest> out;
  std::string line;
  for (size_t line_no = 1; (limit == 0 || out.size() < limit) && std::getline(in, line);
       ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto r = ParseLine(line);
    if (!r.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", r.status().message()));
    }
    out.push_back(std::move(*r));
  }
  if (in.bad()) return absl::DataLossError("read error");
  return out;
}

absl::StatusOr<std::vector<TraceRequest>> LoadTrace(const std::string& path, size_t limit) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--trace: cannot open '", path, "'"));
  auto trace = ParseTrace(in, limit);
  if (!trace.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", trace.status().message()));
  }
  return trace;
}

TraceShape ShapeOf(const std::vector<TraceRequest>& trace) {
  TraceShape shape;
  std::unordered_set<uint64_t> ids;
  for (const TraceRequest& r : trace) {
    ++shape.requests;
    shape.block_refs += r.hash_ids.size();
    ids.insert(r.hash_ids.begin(), r.hash_ids.end());
  }
  shape.distinct_blocks = ids.size();
  return shape;
}

size_t InfiniteCacheSim::Request(std::span<const uint64_t> ids) {
  size_t hits = 0;
  while (hits < ids.size() && seen_.contains(ids[hits])) ++hits;
  seen_.insert(ids.begin(), ids.end());
  count_.refs += ids.size();
  count_.hits += hits;
  return hits;
}

void LruCacheSim::Touch(std::list<uint64_t>::iterator it) {
  order_.splice(order_.begin(), order_, it);
}

void LruCacheSim::Insert(uint64_t id) {
  if (capacity_ == 0) return;
  if (index_.size() >= capacity_) {
    index_.erase(order_.back());
    order_.pop_back();
    ++evictions_;
  }
  order_.push_front(id);
  index_[id] = order_.begin();
}

size_t LruCacheSim::Request(std::span<const uint64_t> ids) {
  size_t hits = 0;
  for (; hits < ids.size(); ++hits) {
    auto it = index_.find(ids[hits]);
    if (it == index_.end()) break;
    Touch(it->second);
  }
  for (size_t i = hits; i < ids.size(); ++i) {
    auto it = index_.find(ids[i]);
    if (it != index_.end()) {
      Touch(it->second);
    } else {
      Insert(ids[i]);
    }
  }
  count_.refs += ids.size();
  count_.hits += hits;
  return hits;
}

}  // namespace kvtier::bench
