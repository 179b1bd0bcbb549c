#include "lb/stats_rows.hpp"

#include <unordered_map>

#include "lb/frontend.hpp"

namespace mqnode::lb {

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

bool numeric(const std::string& v) {
  if (v.empty()) return false;
  std::size_t i = v[0] == '-' ? 1 : 0;
  if (i == v.size()) return false;
  for (; i < v.size(); ++i)
    if (v[i] < '0' || v[i] > '9') return false;
  return true;
}

}  // namespace mqnode::lb
