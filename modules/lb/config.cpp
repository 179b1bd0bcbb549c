#include "lb/config.hpp"

#include <algorithm>
#include <set>

#include <fmt/format.h>

namespace mqnode::lb {

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::RoundRobin: return "roundrobin";
    case Algorithm::StaticRr: return "static-rr";
    case Algorithm::LeastConn: return "leastconn";
    case Algorithm::Source: return "source";
  }
  return "?";
}

const char* check_type_name(CheckType t) {
  switch (t) {
    case CheckType::None: return "none";
    case CheckType::Tcp: return "tcp";
    case CheckType::Amqp: return "amqp";
  }
  return "?";
}

const char* splice_mode_name(SpliceMode m) {
  switch (m) {
    case SpliceMode::Auto: return "auto";
    case SpliceMode::Always: return "always";
    case SpliceMode::Never: return "never";
  }
  return "?";
}

namespace {

constexpr int64_t kMaxMs = 24LL * 3600 * 1000 * 30;  // 30 days

core::Endpoint endpoint(core::ConfigNode& n, std::string_view key, const std::string& value) {
  auto ep = core::parse_endpoint(value);
  if (!ep) n.fail(key, "\"address:port\" with a numeric IPv4/IPv6 address");
  return *ep;
}

std::vector<core::Endpoint> binds(core::ConfigNode& n) {
  const auto& v = n.raw("bind");
  std::vector<core::Endpoint> out;
  auto one = [&](const nlohmann::json& e, const std::string& path) {
    if (!e.is_string()) throw core::ConfigError(fmt::format("{}: expected \"address:port\", got {}", path, core::describe(e)));
    auto ep = core::parse_endpoint(e.get<std::string>());
    if (!ep)
      throw core::ConfigError(fmt::format("{}: expected \"address:port\" with a numeric IPv4/IPv6 address, got {}", path,
                                          core::describe(e)));
    out.push_back(*ep);
  };
  if (v.is_string()) {
    one(v, n.path_of("bind"));
  } else if (v.is_array() && !v.empty()) {
    for (std::size_t i = 0; i < v.size(); ++i) one(v[i], fmt::format("{}/{}", n.path_of("bind"), i));
  } else {
    n.fail("bind", "\"address:port\" or a non-empty array of them");
  }
  return out;
}

Millis ms(core::ConfigNode& n, std::string_view key, Millis def, int64_t min = 0) {
  return Millis(n.integer(key, def.count(), min, kMaxMs));
}

void check_name(core::ConfigNode& n, std::string_view key, const std::string& name) {
  // Names appear in CSV rows and runtime commands ("backend/server").
  for (char c : name)
    if (c == ',' || c == '/' || c == '\n' || c == '"' || c == ' ')
      n.fail(key, "a name without ',', '/', '\"', spaces or newlines");
}

CheckConfig parse_check(core::ConfigNode n) {
  CheckConfig c;
  auto type = n.string("type", "tcp");
  if (type == "tcp") c.type = CheckType::Tcp;
  else if (type == "amqp") c.type = CheckType::Amqp;
  else if (type == "none") c.type = CheckType::None;
  else n.fail("type", "\"tcp\", \"amqp\" or \"none\"");
  c.inter = ms(n, "inter_ms", c.inter, 10);
  c.fastinter = ms(n, "fastinter_ms", c.inter, 10);
  c.downinter = ms(n, "downinter_ms", c.inter, 10);
  c.timeout = ms(n, "timeout_ms", c.inter, 10);
  c.rise = static_cast<int>(n.integer("rise", c.rise, 1, 1000));
  c.fall = static_cast<int>(n.integer("fall", c.fall, 1, 1000));
  n.finish();
  return c;
}

ServerConfig parse_server(core::ConfigNode n) {
  ServerConfig s;
  s.name = n.required_string("name");
  check_name(n, "name", s.name);
  s.address = endpoint(n, "address", n.required_string("address"));
  if (s.address.port == 0) n.fail("address", "a port in 1..65535");
  s.weight = static_cast<int>(n.integer("weight", s.weight, 0, 256));
  s.backup = n.boolean("backup", s.backup);
  s.maxconn = static_cast<uint32_t>(n.integer("maxconn", s.maxconn, 0, 1000000));
  s.disabled = n.boolean("disabled", s.disabled);
  s.check = n.boolean("check", s.check);
  s.local = n.boolean("local", s.local);
  n.finish();
  return s;
}

BackendConfig parse_backend(core::ConfigNode n) {
  BackendConfig b;
  b.name = n.required_string("name");
  check_name(n, "name", b.name);
  auto bal = n.string("balance", "roundrobin");
  if (bal == "roundrobin") b.balance = Algorithm::RoundRobin;
  else if (bal == "static-rr") b.balance = Algorithm::StaticRr;
  else if (bal == "leastconn") b.balance = Algorithm::LeastConn;
  else if (bal == "source") b.balance = Algorithm::Source;
  else n.fail("balance", "\"roundrobin\", \"static-rr\", \"leastconn\" or \"source\"");
  b.retries = static_cast<int>(n.integer("retries", b.retries, 0, 100));
  b.redispatch = n.boolean("redispatch", b.redispatch);
  b.timeout_connect = ms(n, "timeout_connect_ms", b.timeout_connect, 1);
  b.timeout_queue = ms(n, "timeout_queue_ms", b.timeout_connect, 1);
  b.timeout_server = ms(n, "timeout_server_ms", b.timeout_server, 1);
  b.timeout_tunnel = ms(n, "timeout_tunnel_ms", b.timeout_tunnel, 0);
  auto omd = n.string("on_marked_down", "none");
  if (omd == "shutdown-sessions") b.shutdown_sessions_on_down = true;
  else if (omd != "none") n.fail("on_marked_down", "\"none\" or \"shutdown-sessions\"");
  b.check = parse_check(n.object("check"));
  std::set<std::string> names;
  for (auto& s : n.objects("servers")) {
    auto path = s.path();
    b.servers.push_back(parse_server(std::move(s)));
    if (!names.insert(b.servers.back().name).second)
      throw core::ConfigError(fmt::format("{}/name: duplicate server name \"{}\" in backend \"{}\"", path,
                                          b.servers.back().name, b.name));
  }
  if (b.servers.empty()) n.fail("servers", "a non-empty array of servers");
  n.finish();
  return b;
}

FrontendConfig parse_frontend(core::ConfigNode n) {
  FrontendConfig f;
  f.name = n.required_string("name");
  check_name(n, "name", f.name);
  f.binds = binds(n);
  f.backend = n.required_string("backend");
  f.maxconn = static_cast<uint32_t>(n.integer("maxconn", f.maxconn, 1, 10000000));
  auto mode = n.string("maxconn_mode", "queue");
  if (mode == "queue") f.overflow = OverflowMode::Queue;
  else if (mode == "refuse") f.overflow = OverflowMode::Refuse;
  else n.fail("maxconn_mode", "\"queue\" or \"refuse\"");
  f.timeout_client = ms(n, "timeout_client_ms", f.timeout_client, 1);
  n.finish();
  return f;
}

StatsConfig parse_stats(core::ConfigNode n) {
  StatsConfig s;
  if (!n.has("bind")) {
    n.finish();
    return s;
  }
  s.enabled = true;
  s.bind = endpoint(n, "bind", n.required_string("bind"));
  s.uri = n.string("uri", s.uri);
  if (s.uri.empty() || s.uri.front() != '/' || s.uri.find_first_of("?; ") != std::string::npos)
    n.fail("uri", "a path starting with '/' without '?', ';' or spaces");
  s.user = n.string("user", "");
  s.password = n.string("password", "");
  if (s.user.empty() != s.password.empty()) n.fail(s.user.empty() ? "user" : "password", "both user and password, or neither");
  if (s.user.find(':') != std::string::npos) n.fail("user", "a user name without ':' (HTTP basic auth)");
  s.realm = n.string("realm", s.realm);
  s.refresh_s = static_cast<int>(n.integer("refresh_s", s.refresh_s, 0, 86400));
  s.admin = n.boolean("admin", s.admin);
  if (n.has("tls")) s.tls = std::make_shared<core::tls::TlsContext>(core::tls::parse_tls_options(n.object("tls")));
  n.finish();
  return s;
}

}  // namespace

LbConfig parse_lb_config(core::ConfigNode slice) {
  LbConfig cfg;
  std::set<std::string> backend_names, frontend_names;
  for (auto& b : slice.objects("backends")) {
    auto path = b.path();
    cfg.backends.push_back(parse_backend(std::move(b)));
    if (!backend_names.insert(cfg.backends.back().name).second)
      throw core::ConfigError(fmt::format("{}/name: duplicate backend name \"{}\"", path, cfg.backends.back().name));
  }
  for (auto& f : slice.objects("frontends")) {
    auto path = f.path();
    auto fe = parse_frontend(std::move(f));
    if (!frontend_names.insert(fe.name).second)
      throw core::ConfigError(fmt::format("{}/name: duplicate frontend name \"{}\"", path, fe.name));
    auto it = std::find_if(cfg.backends.begin(), cfg.backends.end(), [&](const auto& b) { return b.name == fe.backend; });
    if (it == cfg.backends.end())
      throw core::ConfigError(fmt::format("{}/backend: expected the name of a backend in /lb/backends, got string \"{}\"", path, fe.backend));
    fe.backend_index = static_cast<std::size_t>(it - cfg.backends.begin());
    cfg.frontends.push_back(std::move(fe));
  }
  cfg.stats = parse_stats(slice.object("stats"));
  cfg.buffer_size = static_cast<std::size_t>(slice.integer("buffer_size", static_cast<int64_t>(cfg.buffer_size), 1024, 16 << 20));
  cfg.log_sessions = slice.boolean("log_sessions", cfg.log_sessions);
  auto splice = slice.string("splice", splice_mode_name(cfg.splice));
  if (splice == "auto") cfg.splice = SpliceMode::Auto;
  else if (splice == "always") cfg.splice = SpliceMode::Always;
  else if (splice == "never") cfg.splice = SpliceMode::Never;
  else slice.fail("splice", "\"auto\", \"always\" or \"never\"");
  slice.finish();
  return cfg;
}

}  // namespace mqnode::lb
