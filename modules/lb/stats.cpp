#include "lb/stats.hpp"

#include <unordered_map>

#include <fmt/format.h>

#include "lb/lb_module.hpp"

namespace mqnode::lb {

namespace http = core::http;

const std::vector<std::string_view>& csv_columns() {
  // Copied from Debian's haproxy 2.6.12 `show stat` header (generic columns, then "-" and
  // the SSL/H2/H1 module columns), so scripts that index columns by position still work.
  static const std::vector<std::string_view> kColumns = {
      "pxname", "svname", "qcur", "qmax", "scur", "smax", "slim", "stot", "bin", "bout", "dreq", "dresp",
      "ereq", "econ", "eresp", "wretr", "wredis", "status", "weight", "act", "bck", "chkfail", "chkdown",
      "lastchg", "downtime", "qlimit", "pid", "iid", "sid", "throttle", "lbtot", "tracked", "type", "rate",
      "rate_lim", "rate_max", "check_status", "check_code", "check_duration", "hrsp_1xx", "hrsp_2xx",
      "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other", "hanafail", "req_rate", "req_rate_max", "req_tot",
      "cli_abrt", "srv_abrt", "comp_in", "comp_out", "comp_byp", "comp_rsp", "lastsess", "last_chk",
      "last_agt", "qtime", "ctime", "rtime", "ttime", "agent_status", "agent_code", "agent_duration",
      "check_desc", "agent_desc", "check_rise", "check_fall", "check_health", "agent_rise", "agent_fall",
      "agent_health", "addr", "cookie", "mode", "algo", "conn_rate", "conn_rate_max", "conn_tot",
      "intercepted", "dcon", "dses", "wrew", "connect", "reuse", "cache_lookups", "cache_hits", "srv_icur",
      "src_ilim", "qtime_max", "ctime_max", "rtime_max", "ttime_max", "eint", "idle_conn_cur",
      "safe_conn_cur", "used_conn_cur", "need_conn_est", "uweight", "agg_server_status",
      "agg_server_check_status", "agg_check_status", "-", "ssl_sess", "ssl_reused_sess",
      "ssl_failed_handshake", "h2_headers_rcvd", "h2_data_rcvd", "h2_settings_rcvd", "h2_rst_stream_rcvd",
      "h2_goaway_rcvd", "h2_detected_conn_protocol_errors", "h2_detected_strm_protocol_errors",
      "h2_rst_stream_resp", "h2_goaway_resp", "h2_open_connections", "h2_backend_open_streams",
      "h2_total_connections", "h2_backend_total_streams", "h1_open_connections", "h1_open_streams",
      "h1_total_connections", "h1_total_streams", "h1_bytes_in", "h1_bytes_out", "h1_spliced_bytes_in",
      "h1_spliced_bytes_out"
  };
  return kColumns;
}

namespace {
std::size_t column_index(std::string_view name) {
  static const auto kIndex = [] {
    std::unordered_map<std::string_view, std::size_t> m;
    const auto& cols = csv_columns();
    for (std::size_t i = 0; i < cols.size(); ++i) m.emplace(cols[i], i);
    return m;
  }();
  auto it = kIndex.find(name);
  return it == kIndex.end() ? SIZE_MAX : it->second;
}

std::string num(uint64_t v) { return std::to_string(v); }
std::string num(int64_t v) { return std::to_string(v); }
std::string num(int v) { return std::to_string(v); }
}  // namespace

void StatsRow::set(std::string_view column, std::string value) {
  auto i = column_index(column);
  if (i == SIZE_MAX) return;
  if (values.size() < csv_columns().size()) values.resize(csv_columns().size());
  values[i] = std::move(value);
}

const std::string& StatsRow::get(std::string_view column) const {
  static const std::string kEmpty;
  auto i = column_index(column);
  return i < values.size() ? values[i] : kEmpty;
}

std::vector<StatsRow> stats_rows(const std::vector<std::shared_ptr<Frontend>>& frontends,
                                 const std::vector<std::shared_ptr<Backend>>& backends, Clock::time_point now,
                                 bool stopping) {
  std::vector<StatsRow> rows;
  for (const auto& f : frontends) {
    StatsRow r;
    const auto& st = f->stats;
    r.set("pxname", f->name());
    r.set("svname", "FRONTEND");
    r.set("scur", num(st.scur));
    r.set("smax", num(st.smax));
    r.set("slim", num(uint64_t{f->config().maxconn}));
    r.set("stot", num(st.stot));
    r.set("bin", num(st.bin));
    r.set("bout", num(st.bout));
    r.set("dreq", num(st.dreq));
    r.set("dresp", "0");
    r.set("ereq", num(st.ereq));
    r.set("status", stopping ? "STOP" : "OPEN");
    r.set("pid", "1");
    r.set("iid", num(f->iid()));
    r.set("sid", "0");
    r.set("type", "0");
    r.set("mode", "tcp");
    r.set("conn_tot", num(st.stot));
    r.set("dcon", "0");
    r.set("dses", "0");
    rows.push_back(std::move(r));
  }
  for (const auto& b : backends) {
    const auto& bc = b->config();
    for (const auto& s : b->servers()) {
      StatsRow r;
      const auto& st = s->stats;
      r.set("pxname", b->name());
      r.set("svname", s->name());
      r.set("qcur", "0");  // no per-server queues (HAProxy's exist for persistence)
      r.set("qmax", "0");
      r.set("scur", num(st.scur));
      r.set("smax", num(st.smax));
      if (s->config().maxconn) r.set("slim", num(uint64_t{s->config().maxconn}));
      r.set("stot", num(st.stot));
      r.set("bin", num(st.bin));
      r.set("bout", num(st.bout));
      r.set("dresp", "0");
      r.set("econ", num(st.econ));
      r.set("eresp", num(st.eresp));
      r.set("wretr", num(st.wretr));
      r.set("wredis", num(st.wredis));
      r.set("status", s->status_word());
      r.set("weight", num(s->weight()));
      r.set("act", s->backup() ? "0" : "1");
      r.set("bck", s->backup() ? "1" : "0");
      if (s->checked()) {
        r.set("chkfail", num(st.chkfail));
        r.set("chkdown", num(st.chkdown));
        r.set("downtime", num(s->downtime_s(now)));
      }
      r.set("lastchg", num(s->last_change_s(now)));
      r.set("pid", "1");
      r.set("iid", num(b->iid()));
      r.set("sid", num(s->sid()));
      r.set("lbtot", num(st.lbtot));
      r.set("type", "2");
      r.set("cli_abrt", num(st.cli_abrt));
      r.set("srv_abrt", num(st.srv_abrt));
      r.set("lastsess", num(s->last_session_s(now)));
      if (s->checked()) {
        const auto& c = s->last_check();
        r.set("check_status", c.status);
        if (c.duration_ms >= 0) r.set("check_duration", num(c.duration_ms));
        r.set("check_desc", c.desc);
        r.set("check_rise", num(bc.check.rise));
        r.set("check_fall", num(bc.check.fall));
        r.set("check_health", num(s->health()));
      }
      r.set("addr", s->config().address.to_string());
      r.set("mode", "tcp");
      r.set("uweight", num(s->config().weight));
      rows.push_back(std::move(r));
    }
    StatsRow r;
    const auto& st = b->stats;
    r.set("pxname", b->name());
    r.set("svname", "BACKEND");
    r.set("qcur", num(st.qcur));
    r.set("qmax", num(st.qmax));
    r.set("scur", num(st.scur));
    r.set("smax", num(st.smax));
    r.set("stot", num(st.stot));
    r.set("bin", num(st.bin));
    r.set("bout", num(st.bout));
    r.set("dreq", "0");
    r.set("dresp", "0");
    r.set("econ", num(st.econ));
    r.set("eresp", num(st.eresp));
    r.set("wretr", num(st.wretr));
    r.set("wredis", num(st.wredis));
    r.set("status", b->up() ? "UP" : "DOWN");
    r.set("weight", num(b->total_weight()));
    r.set("act", num(b->active_up()));
    r.set("bck", num(b->backup_up()));
    r.set("chkdown", num(st.chkdown));
    r.set("lastchg", num(b->last_change_s(now)));
    r.set("downtime", num(b->downtime_s(now)));
    r.set("pid", "1");
    r.set("iid", num(b->iid()));
    r.set("sid", "0");
    r.set("lbtot", num(st.lbtot));
    r.set("type", "1");
    r.set("cli_abrt", num(st.cli_abrt));
    r.set("srv_abrt", num(st.srv_abrt));
    r.set("mode", "tcp");
    r.set("algo", algorithm_name(bc.balance));
    rows.push_back(std::move(r));
  }
  return rows;
}

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
bool numeric(const std::string& v) {
  if (v.empty()) return false;
  std::size_t i = v[0] == '-' ? 1 : 0;
  if (i == v.size()) return false;
  for (; i < v.size(); ++i)
    if (v[i] < '0' || v[i] > '9') return false;
  return true;
}

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

// ---- runtime API -----------------------------------------------------------------------

namespace {
std::vector<std::string> words(std::string_view line) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    if (j > i) out.emplace_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

struct Target {
  Backend* backend = nullptr;
  Server* server = nullptr;
  std::string error;
};

Target find_target(LbModule& lb, const std::string& spec) {
  auto slash = spec.find('/');
  if (slash == std::string::npos) return {nullptr, nullptr, "Require 'backend/server'.\n"};
  Target t;
  t.backend = lb.find_backend(spec.substr(0, slash));
  if (!t.backend) return {nullptr, nullptr, "No such backend.\n"};
  t.server = t.backend->find(spec.substr(slash + 1));
  if (!t.server) return {nullptr, nullptr, "No such server.\n"};
  return t;
}

std::string set_weight(LbModule& lb, Target& t, const std::string& arg) {
  if (arg.empty()) return "Require <weight> or <weight%>.\n";
  int w = 0;
  bool pct = arg.back() == '%';
  std::string digits = pct ? arg.substr(0, arg.size() - 1) : arg;
  if (!numeric(digits) || digits[0] == '-' || digits.size() > 6) return "Require <weight> or <weight%>.\n";
  w = std::stoi(digits);
  if (pct) w = t.server->config().weight * w / 100;
  if (w > 256) return "Absolute weight can only be between 0 and 256 inclusive.\n";
  bool was_up = t.server->up();
  t.server->set_weight(w);
  lb.log().info("runtime: set weight {}/{} {}", t.backend->name(), t.server->name(), w);
  lb.server_changed(*t.backend, *t.server, was_up);
  return "";
}

std::string set_state(LbModule& lb, Target& t, std::string_view state) {
  bool was_up = t.server->up();
  auto now = Clock::now();
  if (state == "ready") {
    t.server->set_maint(false, now);
    t.server->set_drain(false);
  } else if (state == "drain") {
    t.server->set_maint(false, now);
    t.server->set_drain(true);
  } else if (state == "maint") {
    t.server->set_maint(true, now);
  } else {
    return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n";
  }
  lb.log().info("runtime: set server {}/{} state {}", t.backend->name(), t.server->name(), state);
  lb.server_changed(*t.backend, *t.server, was_up);
  return "";
}
}  // namespace

std::string run_command(LbModule& lb, std::string_view line) {
  auto w = words(line);
  if (w.empty()) return "";
  auto rows = [&] { return stats_rows(lb.frontends(), lb.backends(), Clock::now()); };
  if (w.size() >= 2 && w[0] == "show" && w[1] == "stat") return render_csv(rows());
  if (w.size() == 3 && (w[0] == "disable" || w[0] == "enable") && w[1] == "server") {
    auto t = find_target(lb, w[2]);
    if (!t.server) return t.error;
    return set_state(lb, t, w[0] == "disable" ? "maint" : "ready");
  }
  if (w.size() >= 3 && w[0] == "get" && w[1] == "weight") {
    auto t = find_target(lb, w[2]);
    if (!t.server) return t.error;
    return fmt::format("{} (initial {})\n", t.server->weight(), t.server->config().weight);
  }
  if (w.size() >= 3 && w[0] == "set" && w[1] == "weight") {
    auto t = find_target(lb, w[2]);
    if (!t.server) return t.error;
    return set_weight(lb, t, w.size() > 3 ? w[3] : "");
  }
  if (w.size() >= 4 && w[0] == "set" && w[1] == "server") {
    auto t = find_target(lb, w[2]);
    if (!t.server) return t.error;
    if (w[3] == "weight") return set_weight(lb, t, w.size() > 4 ? w[4] : "");
    if (w[3] == "state") return set_state(lb, t, w.size() > 4 ? w[4] : "");
    return "'set server <srv>' only supports 'state' and 'weight'.\n";
  }
  return "Unknown command. Supported: show stat; disable server <b>/<s>; enable server <b>/<s>; "
         "set server <b>/<s> state ready|drain|maint; set server <b>/<s> weight <w>[%]; "
         "set weight <b>/<s> <w>[%]; get weight <b>/<s>\n";
}

void add_stats_routes(http::Router& router, LbModule& lb, const std::string& uri) {
  // The uri is fixed per router (a reload that changes it installs a new one); everything
  // else is read per request, so a reload's new credentials, realm, refresh and admin
  // apply at once.
  auto authorized = [&lb](const http::Request& req) {
    const StatsConfig& cfg = lb.config().stats;
    return cfg.user.empty() || http::check_basic_auth(req, cfg.user, cfg.password);
  };
  router.add_prefix("GET", uri, [&lb, uri, authorized](const http::Request& req) {
    const StatsConfig& cfg = lb.config().stats;
    if (!authorized(req)) return http::Response::unauthorized(cfg.realm);
    // <uri>[;csv|;json][;norefresh] as HAProxy, also "<uri>/" and "<uri>?stats".
    std::string_view rest(req.path);
    rest.remove_prefix(uri.size());
    if (rest == "/") rest = "";
    bool csv = false, json = false, refresh = true;
    while (!rest.empty()) {
      if (rest.front() != ';') return http::Response::not_found();
      rest.remove_prefix(1);
      auto opt = rest.substr(0, rest.find(';'));
      rest.remove_prefix(opt.size());
      if (opt == "csv") csv = true;
      else if (opt == "json") json = true;
      else if (opt == "norefresh") refresh = false;
      else if (opt != "up" && !opt.empty()) return http::Response::not_found();
    }
    auto rows = stats_rows(lb.frontends(), lb.backends(), Clock::now());
    if (csv) {
      auto r = http::Response::text(200, render_csv(rows));
      r.content_type = "text/plain";
      return r;
    }
    if (json) return http::Response::json(render_json(rows));
    StatsConfig shown = cfg;
    shown.uri = uri;
    return http::Response::html(render_html(rows, shown, lb.node_name(), refresh));
  });
  auto runtime = [&lb, authorized](const http::Request& req) {
    const StatsConfig& cfg = lb.config().stats;
    if (!authorized(req)) return http::Response::unauthorized(cfg.realm);
    // Changing state needs credentials, as HAProxy's `stats admin` should always have.
    if (!cfg.admin || cfg.user.empty())
      return http::Response::text(403, "403 Forbidden: runtime control needs /lb/stats user, password and admin\n");
    std::string body = req.body;
    auto params = req.params();
    if (params.count("cmd")) body = params["cmd"];
    std::string out;
    std::size_t start = 0;
    while (start <= body.size()) {
      auto nl = body.find_first_of("\n;", start);
      auto line = std::string_view(body).substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      out += run_command(lb, line);
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    return http::Response::text(200, out);
  };
  router.add("POST", uri + "/runtime", runtime);
  router.add("GET", "/metrics", [&lb, authorized](const http::Request& req) {
    const StatsConfig& cfg = lb.config().stats;
    if (!authorized(req)) return http::Response::unauthorized(cfg.realm);
    core::MetricsWriter w;
    lb.metrics(w);
    auto r = http::Response::text(200, w.text());
    r.content_type = core::kMetricsContentType;
    return r;
  });
}

}  // namespace mqnode::lb
