// What the stats listener serves, all rendered from the same rows: HAProxy's CSV (`<uri>;csv`,
// HAProxy 2.6's `# pxname,svname,...` header, column order and status words, columns we
// do not have left empty), its typed JSON (`<uri>;json`), an HTML page with auto-refresh,
// Prometheus text (`/metrics`), and HAProxy's runtime API verbs over HTTP POST.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/http.hpp"
#include "core/metrics.hpp"
#include "lb/backend.hpp"

namespace mqnode::lb {

class Frontend;
class LbModule;

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

std::string render_csv(const std::vector<StatsRow>& rows);
std::string render_json(const std::vector<StatsRow>& rows);
std::string render_html(const std::vector<StatsRow>& rows, const StatsConfig& cfg, std::string_view node,
                        bool refresh);
// Prometheus families mqnode_lb_{frontend,backend,server}_* (LbModule::metrics()).
void write_metrics(core::MetricsWriter& out, const std::vector<StatsRow>& rows);

// Runs one HAProxy runtime API command line ("disable server be/srv", "set server be/srv
// state drain", "set weight be/srv 50", "get weight be/srv", "show stat") and returns
// what HAProxy's CLI would print ("" on success for the set verbs).
std::string run_command(LbModule& lb, std::string_view line);

// Registers the stats routes under <uri> (and /metrics) on <router>.
void add_stats_routes(core::http::Router& router, LbModule& lb, const std::string& uri);

}  // namespace mqnode::lb
