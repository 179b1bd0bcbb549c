// The rows every stats view is rendered from: one per frontend, server and backend, with
// HAProxy 2.6's CSV columns (`show stat`), the columns we do not have left empty.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lb/backend.hpp"

namespace mqnode::lb {

class Frontend;

// HAProxy 2.6's CSV columns, in order (the header of `show stat`).
const std::vector<std::string_view>& csv_columns();

struct StatsRow {
  std::vector<std::string> values;  // one per csv_columns()
  void set(std::string_view column, std::string value);
  const std::string& get(std::string_view column) const;
};

// One row per frontend, then per backend its servers and its BACKEND row (HAProxy's order
// is configuration order; ours lists the frontends first).
std::vector<StatsRow> stats_rows(const std::vector<std::shared_ptr<Frontend>>& frontends,
                                 const std::vector<std::shared_ptr<Backend>>& backends, Clock::time_point now,
                                 bool stopping = false);

// <v> is a decimal integer, optionally negative: a row value JSON types as s64/u64, or a
// weight typed into the runtime API.
bool numeric(const std::string& v);

}  // namespace mqnode::lb
