#include <doctest/doctest.h>

#include "core/events.hpp"
#include "lb/lb_module.hpp"
#include "lb/stats_render.hpp"
#include "test_util.hpp"

using namespace mqnode;
using namespace mqnode::lb;
using namespace mqnode::lb::test;
using namespace std::chrono_literals;

namespace {
// The header of Debian haproxy 2.6.12's `show stat`, verbatim.
const char* kHaproxy26Header =
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,"
    "act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,"
    "check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,"
    "req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,"
    "qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,"
    "check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,"
    "intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,"
    "rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,"
    "agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,"
    "h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,"
    "h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,"
    "h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,"
    "h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    auto p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return out;
}

struct Fixture {
  asio::io_context io;
  core::EventBus events;
  core::ModuleContext ctx{io, core::Logger(std::make_shared<core::LogSink>(), "lb"), {"n", "/tmp"}, events};
  LbModule module{ctx};
  std::vector<std::shared_ptr<Backend>> backends;
  std::vector<std::shared_ptr<Frontend>> frontends;
  Clock::time_point t0{};

  Fixture() {
    BackendConfig bc;
    bc.name = "rabbitmq";
    bc.balance = Algorithm::StaticRr;
    bc.servers = {server_cfg("mq1"), server_cfg("mq2", 3), server_cfg("mq3", 1, true)};
    backends.push_back(std::make_shared<Backend>(bc, 2, t0));
    FrontendConfig fc;
    fc.name = "amqp";
    fc.maxconn = 100;
    frontends.push_back(std::make_shared<Frontend>(module, fc, backends[0], 1));
  }
};
}  // namespace

TEST_CASE("CSV: HAProxy 2.6 header and column order, status words, trailing commas") {
  Fixture f;
  auto& be = *f.backends[0];
  be.find("mq1")->record_check(true, f.t0);
  be.find("mq2")->record_check(false, f.t0);  // first failure: DOWN
  be.find("mq2")->record_check(true, f.t0);
  be.find("mq2")->last_check() = CheckResult{"L4CON", "Layer4 connection problem", 1, true, f.t0};
  be.refresh_state(f.t0);
  f.frontends[0]->stats.stot = 7;
  f.frontends[0]->stats.bin = 1234;
  auto csv = render_csv(stats_rows(f.frontends, f.backends, f.t0 + 5s));
  auto lines = split(csv, '\n');
  REQUIRE(lines.size() == 7);  // header, FRONTEND, 3 servers, BACKEND, then ""
  CHECK(lines[6].empty());
  CHECK(lines[0] == kHaproxy26Header);
  auto header = split(lines[0].substr(2), ',');
  auto col = [&](const std::string& line, const std::string& name) {
    auto v = split(line, ',');
    for (std::size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return v.at(i);
    FAIL("no column " << name);
    return std::string();
  };
  for (std::size_t i = 1; i < 6; ++i) CHECK(split(lines[i], ',').size() == header.size());
  CHECK(col(lines[1], "pxname") == "amqp");
  CHECK(col(lines[1], "svname") == "FRONTEND");
  CHECK(col(lines[1], "status") == "OPEN");
  CHECK(col(lines[1], "slim") == "100");
  CHECK(col(lines[1], "stot") == "7");
  CHECK(col(lines[1], "bin") == "1234");
  CHECK(col(lines[1], "type") == "0");
  CHECK(col(lines[1], "-") == "-");
  CHECK(col(lines[2], "svname") == "mq1");
  CHECK(col(lines[2], "status") == "UP");
  CHECK(col(lines[2], "type") == "2");
  CHECK(col(lines[2], "check_health") == "4");
  CHECK(col(lines[2], "addr") == "127.0.0.1:5672");
  CHECK(col(lines[3], "status") == "DOWN 1/2");
  CHECK(col(lines[3], "check_status") == "L4CON");
  CHECK(col(lines[3], "check_desc") == "Layer4 connection problem");
  CHECK(col(lines[3], "weight") == "3");
  CHECK(col(lines[3], "chkdown") == "1");
  CHECK(col(lines[3], "downtime") == "5");
  CHECK(col(lines[4], "bck") == "1");
  CHECK(col(lines[5], "svname") == "BACKEND");
  CHECK(col(lines[5], "status") == "UP");
  CHECK(col(lines[5], "act") == "1");
  CHECK(col(lines[5], "bck") == "1");
  CHECK(col(lines[5], "weight") == "1");
  CHECK(col(lines[5], "algo") == "static-rr");
  CHECK(col(lines[5], "type") == "1");
  CHECK(col(lines[5], "hrsp_2xx") == "");
}

TEST_CASE("JSON, HTML and Prometheus come from the same rows") {
  Fixture f;
  auto& be = *f.backends[0];
  mark_down(*be.find("mq1"));
  be.find("mq2")->set_maint(true, f.t0);
  auto rows = stats_rows(f.frontends, f.backends, f.t0);
  auto j = nlohmann::json::parse(render_json(rows));
  REQUIRE(j.size() == rows.size());
  bool seen_down = false;
  for (const auto& field : j[1])
    if (field["field"]["name"] == "status") {
      CHECK(field["objType"] == "Server");
      CHECK(field["value"]["value"] == "DOWN");
      seen_down = true;
    }
  CHECK(seen_down);

  StatsConfig sc;
  sc.uri = "/haproxy";
  sc.refresh_s = 30;
  auto html = render_html(rows, sc, "mq1<x>", true);
  CHECK(html.find("<meta http-equiv=\"refresh\" content=\"30\">") != std::string::npos);
  CHECK(html.find("<tr class=\"active_down\" data-server=\"rabbitmq/mq1\"") != std::string::npos);
  CHECK(html.find("<tr class=\"maintain\" data-server=\"rabbitmq/mq2\"") != std::string::npos);
  CHECK(html.find("mq1&lt;x&gt;") != std::string::npos);
  CHECK(render_html(rows, sc, "n", false).find("http-equiv") == std::string::npos);

  mqnode::core::MetricsWriter w;
  write_metrics(w, rows);
  const auto& prom = w.text();
  CHECK(prom.find("mqnode_lb_server_up{proxy=\"rabbitmq\",server=\"mq1\"} 0\n") != std::string::npos);
  CHECK(prom.find("mqnode_lb_server_up{proxy=\"rabbitmq\",server=\"mq3\"} 1\n") != std::string::npos);
  CHECK(prom.find("mqnode_lb_frontend_limit_sessions{proxy=\"amqp\"} 100\n") != std::string::npos);
  CHECK(prom.find("# TYPE mqnode_lb_backend_sessions_total counter\n") != std::string::npos);
}
