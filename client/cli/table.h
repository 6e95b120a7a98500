// Table: aligned plain-text columns for the CLI's human output.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace kvtier::cli {

class Table {
 public:
  enum class Align { kLeft, kRight };
  struct Column {
    std::string header;
    Align align = Align::kLeft;
  };

  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

  // One cell per column (missing cells print empty, extra cells are ignored).
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  size_t rows() const { return rows_.size(); }
  // Key/value lists: rows only.
  void HideHeader() { show_header_ = false; }

  // Header (unless hidden), then rows; columns two spaces apart, no trailing spaces.
  void Print(std::ostream& out) const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
  bool show_header_ = true;
};

}  // namespace kvtier::cli
