#include "lb/stats_render.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/http.hpp"

namespace mqnode::lb {

namespace http = core::http;

std::string render_csv(const std::vector<StatsRow>& rows) {
  std::string out = "# ";
  for (auto c : csv_columns()) {
    out += c;
    out += ',';
  }
  out += '\n';
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < csv_columns().size(); ++i) {
      if (csv_columns()[i] == "-")
        out += '-';
      else if (i < r.values.size())
        out += r.values[i];  // names are validated free of ',' and newlines
      out += ',';
    }
    out += '\n';
  }
  return out;
}

namespace {
const char* obj_type(const StatsRow& r) {
  const auto& sv = r.get("svname");
  if (sv == "FRONTEND") return "Frontend";
  if (sv == "BACKEND") return "Backend";
  return "Server";
}
}  // namespace

std::string render_json(const std::vector<StatsRow>& rows) {
  // HAProxy's `show stat json`: one array of typed fields per row, non-empty fields only.
  auto all = nlohmann::json::array();
  for (const auto& r : rows) {
    auto fields = nlohmann::json::array();
    for (std::size_t i = 0; i < r.values.size(); ++i) {
      const auto& v = r.values[i];
      if (v.empty() || csv_columns()[i] == "-") continue;
      nlohmann::json f;
      f["objType"] = obj_type(r);
      f["proxyId"] = std::stoi(r.get("iid"));
      f["id"] = std::stoi(r.get("sid"));
      f["field"] = {{"pos", i}, {"name", csv_columns()[i]}};
      f["processNum"] = 1;
      if (numeric(v) && v[0] == '-')
        f["value"] = {{"type", "s64"}, {"value", std::stoll(v)}};
      else if (numeric(v))
        f["value"] = {{"type", "u64"}, {"value", std::stoull(v)}};
      else
        f["value"] = {{"type", "str"}, {"value", v}};
      fields.push_back(std::move(f));
    }
    all.push_back(std::move(fields));
  }
  return all.dump() + "\n";
}

namespace {
// HAProxy's row classes: the colour says the state at a glance.
std::string row_class(const StatsRow& r) {
  const auto& st = r.get("status");
  std::string tier = r.get("bck") == "1" ? "backup" : "active";
  if (st == "MAINT") return "maintain";
  if (st == "DRAIN") return tier + "_draining";
  if (st == "NOLB") return tier + "_nolb";
  if (st == "no check") return tier + "_no_check";
  if (st.starts_with("DOWN ")) return tier + "_going_up";
  if (st.starts_with("UP ")) return tier + "_going_down";
  if (st == "DOWN") return tier + "_down";
  return tier + "_up";
}

std::string human_duration(const std::string& secs) {
  if (!numeric(secs)) return secs;
  long long s = std::stoll(secs);
  if (s < 0) return "";
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{}m", s / 3600, (s / 60) % 60);
  return fmt::format("{}d{}h", s / 86400, (s / 3600) % 24);
}

constexpr std::string_view kStyle = R"(body { font-family: arial, helvetica, sans-serif; font-size: 12px; background: white; }
th,td { font-size: 10px; }
h1 { font-size: x-large; margin-bottom: 0.5em; }
table.tbl { border-collapse: collapse; border-style: none; margin-bottom: 1em; }
table.tbl td { text-align: right; border: 1px solid gray; padding: 2px 3px; white-space: nowrap; }
table.tbl td.ac { text-align: center; }
table.tbl td.al { text-align: left; }
table.tbl th { border: 1px solid gray; background: #20D0D0; }
table.tbl th.pxname { background: #b00040; color: #ffff40; font-weight: bold; text-align: left; padding: 2px 3px; }
.frontend { background: #e8e8d0; }
.backend { background: #e8e8d0; }
.active_down { background: #ff9090; }
.active_going_up { background: #ffd020; }
.active_going_down { background: #ffffa0; }
.active_up { background: #c0ffc0; }
.active_nolb { background: #20a0ff; }
.active_draining { background: #20a0FF; }
.active_no_check { background: #e0e0e0; }
.backup_down { background: #ff9090; }
.backup_going_up { background: #ff80ff; }
.backup_going_down { background: #c060ff; }
.backup_up { background: #b0d0ff; }
.backup_nolb { background: #90b0e0; }
.backup_draining { background: #cc9900; }
.backup_no_check { background: #e0e0e0; }
.maintain { background: #c07820; }
)";
}  // namespace

std::string render_html(const std::vector<StatsRow>& rows, const StatsConfig& cfg, std::string_view node,
                        bool refresh) {
  using http::html_escape;
  std::string out = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n<title>Statistics Report for mqnode lb</title>\n";
  if (refresh && cfg.refresh_s > 0) out += fmt::format("<meta http-equiv=\"refresh\" content=\"{}\">\n", cfg.refresh_s);
  out += fmt::format("<style>\n{}</style>\n</head><body>\n", kStyle);
  out += fmt::format("<h1>mqnode lb statistics</h1>\n<p>node <b>{}</b>{}; <a href=\"{};csv\">CSV export</a>, "
                     "<a href=\"{};json\">JSON export</a>{}</p>\n",
                     html_escape(node), refresh && cfg.refresh_s ? fmt::format(", refresh every {} s", cfg.refresh_s) : "",
                     html_escape(cfg.uri), html_escape(cfg.uri),
                     refresh && cfg.refresh_s ? fmt::format(", <a href=\"{};norefresh\">stop refresh</a>", html_escape(cfg.uri)) : "");
  std::string current;
  auto close_table = [&] {
    if (!current.empty()) out += "</table>\n";
  };
  for (const auto& r : rows) {
    const auto& px = r.get("pxname");
    const auto& sv = r.get("svname");
    bool new_table = px != current || sv == "FRONTEND";
    if (new_table) {
      close_table();
      current = px;
      out += fmt::format(
          "<table class=\"tbl\" data-proxy=\"{0}\">\n<tr><th class=\"pxname\" colspan=\"17\">{0}</th></tr>\n"
          "<tr><th></th><th>Cur</th><th>Max</th><th>Limit</th><th>Total</th><th>LbTot</th><th>Last</th>"
          "<th>Bytes In</th><th>Bytes Out</th><th>Denied</th><th>Errors Conn</th><th>Retr</th><th>Redis</th>"
          "<th>Status</th><th>LastChk</th><th>Wght</th><th>Act/Bck</th><th>Chk</th><th>Dwn</th><th>Dwntme</th></tr>\n",
          html_escape(px));
    }
    std::string cls = sv == "FRONTEND" ? "frontend" : sv == "BACKEND" ? "backend" : row_class(r);
    std::string status = r.get("status");
    std::string lastchk;
    if (!r.get("check_status").empty())
      lastchk = fmt::format("{}{}", r.get("check_status"),
                            r.get("check_duration").empty() ? "" : " in " + r.get("check_duration") + "ms");
    std::string lastchg = human_duration(r.get("lastchg"));
    out += fmt::format(
        "<tr class=\"{}\" data-server=\"{}/{}\" title=\"{}\"><td class=\"al\">{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td class=\"ac status\">{}{}</td><td class=\"al\">{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td></tr>\n",
        cls, html_escape(px), html_escape(sv), html_escape(r.get("check_desc")), html_escape(sv), r.get("scur"),
        r.get("smax"), r.get("slim"), r.get("stot"), r.get("lbtot"), human_duration(r.get("lastsess")), r.get("bin"),
        r.get("bout"), r.get("dreq"), r.get("econ"), r.get("wretr"), r.get("wredis"), html_escape(status),
        lastchg.empty() || sv == "FRONTEND" ? "" : " " + lastchg, html_escape(lastchk), r.get("weight"), r.get("act"),
        r.get("bck"), r.get("chkfail"), r.get("chkdown"), human_duration(r.get("downtime")));
  }
  close_table();
  out += "</body></html>\n";
  return out;
}

void write_metrics(core::MetricsWriter& out, const std::vector<StatsRow>& rows) {
  using Type = core::MetricsWriter::Type;
  struct Metric {
    std::string_view column, name;
    Type type;
    std::string_view help;
  };
  static constexpr Metric kMetrics[] = {
      {"scur", "current_sessions", Type::Gauge, "Current number of active sessions."},
      {"smax", "max_sessions", Type::Gauge, "Maximum observed number of active sessions."},
      {"slim", "limit_sessions", Type::Gauge, "Configured session limit."},
      {"stot", "sessions_total", Type::Counter, "Total number of sessions."},
      {"qcur", "current_queue", Type::Gauge, "Sessions waiting for a server slot (servers' maxconn)."},
      {"qmax", "max_queue", Type::Gauge, "Maximum observed number of sessions waiting for a slot."},
      {"bin", "bytes_in_total", Type::Counter, "Bytes received from clients."},
      {"bout", "bytes_out_total", Type::Counter, "Bytes sent to clients."},
      {"dreq", "denied_connections_total", Type::Counter, "Connections refused over maxconn."},
      {"econ", "connection_errors_total", Type::Counter, "Failed connections to servers, queue timeouts included."},
      {"wretr", "retry_warnings_total", Type::Counter, "Connection retries."},
      {"wredis", "redispatch_warnings_total", Type::Counter, "Retries redispatched to another server."},
      {"lbtot", "loadbalanced_total", Type::Counter, "Times a server was selected."},
      {"chkfail", "check_failures_total", Type::Counter, "Failed health checks."},
      {"chkdown", "check_up_down_total", Type::Counter, "UP to DOWN transitions."},
      {"downtime", "downtime_seconds_total", Type::Counter, "Total time spent down."},
      {"weight", "weight", Type::Gauge, "Effective weight."},
      {"act", "active_servers", Type::Gauge, "Active servers up (BACKEND) or 1 for an active server."},
      {"bck", "backup_servers", Type::Gauge, "Backup servers up (BACKEND) or 1 for a backup server."},
      {"check_health", "check_health", Type::Gauge, "HAProxy's health counter: 0..rise+fall-1, up at >= rise."},
  };
  auto kind = [](const StatsRow& r) -> std::string_view {
    const auto& sv = r.get("svname");
    return sv == "FRONTEND" ? "frontend" : sv == "BACKEND" ? "backend" : "server";
  };
  auto sample = [&](const StatsRow& r, double v) {
    if (kind(r) == "server")
      out.sample({{"proxy", r.get("pxname")}, {"server", r.get("svname")}}, v);
    else
      out.sample({{"proxy", r.get("pxname")}}, v);
  };
  for (std::string_view k : {"frontend", "backend", "server"}) {
    out.family(fmt::format("mqnode_lb_{}_up", k), Type::Gauge, fmt::format("1 when the {} takes new sessions.", k));
    for (const auto& r : rows) {
      if (kind(r) != k) continue;
      const auto& st = r.get("status");
      sample(r, st == "OPEN" || st == "UP" || st == "no check" || st.starts_with("UP ") ? 1 : 0);
    }
    for (const auto& m : kMetrics) {
      bool started = false;
      for (const auto& r : rows) {
        if (kind(r) != k || !numeric(r.get(m.column))) continue;
        if (!started) out.family(fmt::format("mqnode_lb_{}_{}", k, m.name), m.type, m.help);
        started = true;
        sample(r, std::stod(r.get(m.column)));
      }
    }
  }
}

}  // namespace mqnode::lb
