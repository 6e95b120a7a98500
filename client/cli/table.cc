#include "table.h"

#include <algorithm>

namespace kvtier::cli {
namespace {

const std::string& Cell(const std::vector<std::string>& row, size_t i) {
  static const std::string kEmpty;
  return i < row.size() ? row[i] : kEmpty;
}

}  // namespace

void Table::Print(std::ostream& out) const {
  std::vector<size_t> width(columns_.size());
  for (size_t c = 0; c < columns_.size(); ++c) {
    width[c] = show_header_ ? columns_[c].header.size() : 0;
    for (const auto& row : rows_) width[c] = std::max(width[c], Cell(row, c).size());
  }
  auto print_row = [&](auto cell_of) {
    std::string line;
    for (size_t c = 0; c < columns_.size(); ++c) {
      const std::string& cell = cell_of(c);
      const std::string pad(width[c] - cell.size(), ' ');
      if (c > 0) line += "  ";
      if (columns_[c].align == Align::kRight) {
        line += pad + cell;
      } else {
        line += cell;
        if (c + 1 < columns_.size()) line += pad;
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  };
  if (show_header_) {
    print_row([&](size_t c) -> const std::string& { return columns_[c].header; });
  }
  for (const auto& row : rows_) {
    print_row([&](size_t c) -> const std::string& { return Cell(row, c); });
  }
}

}  // namespace kvtier::cli
