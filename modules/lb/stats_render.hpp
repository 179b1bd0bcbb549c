// The stats rows as HAProxy shows them: CSV (`<uri>;csv`, the `# pxname,svname,...` header,
// status words), typed JSON (`<uri>;json`), the HTML page with auto-refresh, and Prometheus
// text (`/metrics`).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/metrics.hpp"
#include "lb/config.hpp"
#include "lb/stats_rows.hpp"

namespace mqnode::lb {

std::string render_csv(const std::vector<StatsRow>& rows);
std::string render_json(const std::vector<StatsRow>& rows);
std::string render_html(const std::vector<StatsRow>& rows, const StatsConfig& cfg, std::string_view node,
                        bool refresh);
// Prometheus families mqnode_lb_{frontend,backend,server}_* (LbModule::metrics()).
void write_metrics(core::MetricsWriter& out, const std::vector<StatsRow>& rows);

}  // namespace mqnode::lb
