#include "server/metrics/exposition.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvtier {
namespace {

absl::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// HELP text escapes only backslash and newline (quotes are literal there).
std::string EscapeHelp(absl::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Whole numbers below 2^53 print exactly, without an exponent.
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
    return absl::StrFormat("%d", static_cast<int64_t>(value));
  }
  return absl::StrFormat("%.12g", value);
}

bool IsValidMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && i > 0)) return false;
  }
  return true;
}

void ExpositionWriter::Family(absl::string_view name, MetricType type, absl::string_view help) {
  absl::StrAppend(&out_, "# HELP ", name, " ", EscapeHelp(help), "\n");
  absl::StrAppend(&out_, "# TYPE ", name, " ", TypeName(type), "\n");
}

void ExpositionWriter::Sample(absl::string_view name, const MetricLabels& labels, double value) {
  SampleLine(name, labels, "", "", FormatMetricValue(value));
}

void ExpositionWriter::Sample(absl::string_view name, const MetricLabels& labels, uint64_t value) {
  SampleLine(name, labels, "", "", absl::StrCat(value));
}

void ExpositionWriter::Histogram(absl::string_view name, const MetricLabels& labels,
                                 const HistogramSnapshot& h) {
  const std::string bucket = absl::StrCat(name, "_bucket");
  // One line per bound, then +Inf (always written, even for an empty snapshot) with them all.
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.upper_bounds.size(); ++i) {
    if (i < h.bucket_counts.size()) cumulative += h.bucket_counts[i];
    SampleLine(bucket, labels, "le", FormatMetricValue(h.upper_bounds[i]),
               absl::StrCat(cumulative));
  }
  for (size_t i = h.upper_bounds.size(); i < h.bucket_counts.size(); ++i) {
    cumulative += h.bucket_counts[i];
  }
  SampleLine(bucket, labels, "le", "+Inf", absl::StrCat(cumulative));
  SampleLine(absl::StrCat(name, "_sum"), labels, "", "", FormatMetricValue(h.sum));
  SampleLine(absl::StrCat(name, "_count"), labels, "", "", absl::StrCat(h.count));
}

void ExpositionWriter::SampleLine(absl::string_view name, const MetricLabels& labels,
                                  absl::string_view extra_label, absl::string_view extra_value,
                                  absl::string_view value) {
  out_.append(name.data(), name.size());
  if (!labels.empty() || !extra_label.empty()) {
    out_ += '{';
    bool first = true;
    auto add = [&](absl::string_view label, absl::string_view label_value) {
      if (!first) out_ += ',';
      first = false;
      absl::StrAppend(&out_, label, "=\"", EscapeLabelValue(label_value), "\"");
    };
    for (const auto& [label, label_value] : labels) add(label, label_value);
    if (!extra_label.empty()) add(extra_label, extra_value);
    out_ += '}';
  }
  absl::StrAppend(&out_, " ", value, "\n");
}

}  // namespace kvtier
