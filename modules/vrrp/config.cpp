#include "vrrp/config.hpp"

#include <cmath>
#include <optional>
#include <set>

#include <fmt/format.h>

namespace mqnode::vrrp {

namespace {

// "192.168.1.10/24", "192.168.1.10" (/32), "2001:db8::10/64", "fe80::10" (/128).
bool parse_vip(const std::string& s, Vip& out) {
  auto slash = s.find('/');
  if (!parse_ip(std::string_view(s).substr(0, slash), out.addr)) return false;
  const int max = out.addr.v6 ? 128 : 32;
  out.prefix = static_cast<uint8_t>(max);
  if (slash == std::string::npos) return true;
  auto len = std::string_view(s).substr(slash + 1);
  if (len.empty() || len.size() > 3) return false;
  int p = 0;
  for (char c : len) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + (c - '0');
  }
  if (p < 1 || p > max) return false;
  out.prefix = static_cast<uint8_t>(p);
  return true;
}

// A command: a keepalived-style string ("/usr/bin/curl -s 'http://x/'") or an argv array.
std::vector<std::string> parse_command(core::ConfigNode& n, std::string_view key) {
  const auto& v = n.raw(key);
  auto path = n.path_of(key);
  if (v.is_string()) {
    std::string err;
    auto argv = split_command(v.get<std::string>(), err);
    if (!argv) throw core::ConfigError(fmt::format("{}: expected a command line, got {} ({})", path, core::describe(v), err));
    return *argv;
  }
  if (v.is_array() && !v.empty()) {
    std::vector<std::string> argv;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string() || (i == 0 && v[i].get<std::string>().empty()))
        throw core::ConfigError(fmt::format("{}/{}: expected a {}string, got {}", path, i, i == 0 ? "non-empty " : "",
                                            core::describe(v[i])));
      argv.push_back(v[i].get<std::string>());
    }
    return argv;
  }
  throw core::ConfigError(
      fmt::format("{}: expected a command line string or a non-empty array of strings (argv), got {}", path, core::describe(v)));
}

std::chrono::milliseconds seconds_to_ms(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(s * 1000)));
}

ScriptConfig parse_script(std::string name, core::ConfigNode n) {
  ScriptConfig c;
  c.name = std::move(name);
  if (!n.has("script")) n.fail("script", "a command line string or an argv array (required)");
  c.argv = parse_command(n, "script");
  c.interval = seconds_to_ms(n.number("interval", 1, 0.01, 86400));
  c.timeout = n.has("timeout") ? seconds_to_ms(n.number("timeout", 1, 0.01, 86400)) : c.interval;
  c.fall = static_cast<int>(n.integer("fall", 1, 1, 1000));
  c.rise = static_cast<int>(n.integer("rise", 1, 1, 1000));
  c.weight = static_cast<int>(n.integer("weight", 0, -253, 253));
  c.reverse = n.boolean("reverse", false);
  c.init_fail = n.boolean("init_fail", false);
  n.finish();
  return c;
}

InstanceConfig parse_instance(core::ConfigNode n, const VrrpConfig& cfg) {
  InstanceConfig c;
  c.name = n.required_string("name");
  c.interface = n.required_string("interface");
  if (c.interface.size() > 15) n.fail("interface", "an interface name of at most 15 characters");
  c.vrid = static_cast<uint8_t>(n.integer("vrid", 0, 1, 255));
  if (!n.has("vrid")) n.fail("vrid", "an integer in 1..255");
  c.version = static_cast<uint8_t>(n.integer("version", 3, 2, 3));
  c.priority = static_cast<uint8_t>(n.integer("priority", 100, 1, 255));

  // v2 carries whole seconds in 8 bits (RFC 3768 §5.3.7); v3 centiseconds in 12 bits
  // (RFC 5798 §5.2.7).
  if (c.version == 2) {
    double s = n.number("advert_int", 1, 0, 255);
    if (s < 1 || s != std::floor(s))
      n.fail("advert_int", "whole seconds 1..255 (VRRP v2 carries seconds; use version 3 for less)");
    c.interval_cs = static_cast<uint16_t>(s * 100);
  } else {
    double s = n.number("advert_int", 1, 0.01, 40.95);
    double cs = std::round(s * 100);
    if (std::fabs(cs - s * 100) > 1e-6) n.fail("advert_int", "a multiple of 0.01 s (VRRP v3 carries centiseconds)");
    c.interval_cs = static_cast<uint16_t>(cs);
  }
  c.preempt = n.boolean("preempt", true);
  double delay = n.number("preempt_delay", 0, 0, 1000);
  c.preempt_delay = std::chrono::milliseconds(static_cast<int64_t>(delay * 1000));

  if (n.has("auth_pass")) {
    if (c.version != 2) n.fail("auth_pass", "no auth_pass with version 3 (RFC 5798 §9 removed authentication)");
    auto pass = n.required_string("auth_pass");
    // keepalived truncates longer passwords to 8 bytes silently; we refuse instead.
    if (pass.size() > kAuthLen) n.fail("auth_pass", "at most 8 characters (VRRP v2 auth data is 8 bytes)");
    c.auth_type = 1;
    std::copy(pass.begin(), pass.end(), c.auth.begin());
  }

  auto vips = n.strings("vips", {});
  if (vips.empty()) n.fail("vips", "a non-empty array of \"a.b.c.d/len\" or IPv6 \"x:y::z/len\" addresses");
  // 20 IPv4 or 20 IPv6 addresses keep an advert far below the minimum MTU of both families.
  if (vips.size() > 20) n.fail("vips", "at most 20 addresses (one advert must carry them all)");
  for (std::size_t i = 0; i < vips.size(); ++i) {
    Vip v;
    if (!parse_vip(vips[i], v))
      throw core::ConfigError(fmt::format(
          "{}/{}: expected an address with an optional prefix length (\"a.b.c.d/24\", \"2001:db8::10/64\"), got string \"{}\"",
          n.path_of("vips"), i, vips[i]));
    // One family per instance: the advert's address list has one address size (RFC 5798
    // §5.2.9) and goes out on one socket; keepalived refuses the mix as well.
    if (!c.vips.empty() && v.addr.v6 != c.vips.front().addr.v6)
      throw core::ConfigError(fmt::format("{}/{}: {} address {} in an instance whose first vip is {}; use one instance per family",
                                          n.path_of("vips"), i, v.addr.v6 ? "IPv6" : "IPv4", to_string(v.addr),
                                          c.vips.front().addr.v6 ? "IPv6" : "IPv4"));
    if (v.addr.v6 && c.version == 2)
      throw core::ConfigError(fmt::format("{}/{}: IPv6 address {} needs \"version\": 3 (VRRP v2, RFC 3768, is IPv4 only)",
                                          n.path_of("vips"), i, to_string(v.addr)));
    for (const auto& o : c.vips)
      if (o.addr == v.addr)
        throw core::ConfigError(fmt::format("{}/{}: duplicate address {}", n.path_of("vips"), i, to_string(v.addr)));
    c.vips.push_back(v);
  }
  const char* family = c.ipv6() ? "an IPv6" : "an IPv4";
  c.vip_label = n.string("vip_label", "");
  // Linux keeps labels on IPv4 addresses only.
  if (!c.vip_label.empty() && c.ipv6()) n.fail("vip_label", "no label with IPv6 vips (Linux labels IPv4 addresses only)");
  if (!c.vip_label.empty() && (c.vip_label.size() > 15 || c.vip_label.rfind(c.interface, 0) != 0))
    n.fail("vip_label", fmt::format("a label of at most 15 characters starting with the interface name \"{}\" (e.g. \"{}:vip\")",
                                    c.interface, c.interface));

  auto src = n.string("source", "");
  if (!src.empty() && (!parse_ip(src, c.source) || c.source.v6 != c.ipv6()))
    n.fail("source", fmt::format("{} address of the interface (the family of the vips)", family));
  auto peers = n.strings("unicast_peers", {});
  for (std::size_t i = 0; i < peers.size(); ++i) {
    IpAddr p;
    if (!parse_ip(peers[i], p) || p.v6 != c.ipv6())
      throw core::ConfigError(fmt::format("{}/{}: expected {} address (the family of the vips), got string \"{}\"",
                                          n.path_of("unicast_peers"), i, family, peers[i]));
    c.unicast_peers.push_back(p);
  }

  // track: ["lb", {"module": "broker", "weight": -50}]; a bare name (or weight 0) means Fault.
  const auto& tr = n.raw("track");
  if (!tr.is_null() && !tr.is_array()) n.fail("track", "an array of module names or {\"module\", \"weight\"} objects");
  if (tr.is_array()) {
    for (std::size_t i = 0; i < tr.size(); ++i) {
      auto p = fmt::format("{}/{}", n.path_of("track"), i);
      Track t;
      if (tr[i].is_string()) {
        t.name = tr[i].get<std::string>();
      } else if (tr[i].is_object()) {
        core::ConfigNode o(tr[i], p);
        t.name = o.required_string("module");
        t.weight = static_cast<int>(o.integer("weight", 0, -254, 254));
        o.finish();
      } else {
        throw core::ConfigError(fmt::format("{}: expected a module name or an object, got {}", p, core::describe(tr[i])));
      }
      if (t.name.empty()) throw core::ConfigError(fmt::format("{}: expected a module name, got an empty string", p));
      for (const auto& o : c.track)
        if (o.name == t.name) throw core::ConfigError(fmt::format("{}: module '{}' tracked twice", p, t.name));
      c.track.push_back(t);
    }
  }

  // track_script: ["chk_haproxy", {"name": "chk_x", "weight": -20, "reverse": false}], names
  // from /vrrp/track_scripts; weight and reverse default to the script's.
  const auto& ts = n.raw("track_script");
  if (!ts.is_null() && !ts.is_array()) n.fail("track_script", "an array of track script names or {\"name\", \"weight\"} objects");
  for (std::size_t i = 0; ts.is_array() && i < ts.size(); ++i) {
    auto p = fmt::format("{}/{}", n.path_of("track_script"), i);
    Track t;
    t.kind = Track::Kind::Script;
    std::optional<core::ConfigNode> o;
    if (ts[i].is_string()) {
      t.name = ts[i].get<std::string>();
    } else if (ts[i].is_object()) {
      o.emplace(ts[i], p);
      t.name = o->required_string("name");
    } else {
      throw core::ConfigError(fmt::format("{}: expected a track script name or an object, got {}", p, core::describe(ts[i])));
    }
    const auto* sc = cfg.script(t.name);
    if (!sc)
      throw core::ConfigError(fmt::format("{}{}: no track script named \"{}\" in /vrrp/track_scripts", p,
                                          o ? "/name" : "", t.name));
    t.weight = sc->weight;
    t.reverse = sc->reverse;
    if (o) {
      t.weight = static_cast<int>(o->integer("weight", sc->weight, -253, 253));
      t.reverse = o->boolean("reverse", sc->reverse);
      o->finish();
    }
    for (const auto& x : c.track)
      if (x.kind == Track::Kind::Script && x.name == t.name)
        throw core::ConfigError(fmt::format("{}: track script '{}' listed twice", p, t.name));
    c.track.push_back(t);
  }

  // keepalived's notify hooks.
  for (auto [key, field] : {std::pair{"notify_master", &InstanceConfig::notify_master},
                            std::pair{"notify_backup", &InstanceConfig::notify_backup},
                            std::pair{"notify_fault", &InstanceConfig::notify_fault},
                            std::pair{"notify_stop", &InstanceConfig::notify_stop}, std::pair{"notify", &InstanceConfig::notify}})
    if (n.has(key)) c.*field = parse_command(n, key);

  auto garp = n.object("garp");
  c.garp_count = static_cast<int>(garp.integer("count", 3, 0, 100));
  c.garp_interval = std::chrono::milliseconds(garp.integer("interval_ms", 100, 1, 60000));
  garp.finish();
  n.finish();
  return c;
}

}  // namespace

VrrpConfig parse_vrrp_config(core::ConfigNode slice) {
  VrrpConfig cfg;
  const auto& scripts = slice.raw("track_scripts");
  if (!scripts.is_null() && !scripts.is_object())
    slice.fail("track_scripts", "an object of named scripts ({\"chk_haproxy\": {\"script\": ..., \"interval\": 5}})");
  if (scripts.is_object())
    for (const auto& [name, v] : scripts.items()) {
      auto p = fmt::format("{}/{}", slice.path_of("track_scripts"), name);
      if (!v.is_object()) throw core::ConfigError(fmt::format("{}: expected an object, got {}", p, core::describe(v)));
      if (name.empty()) throw core::ConfigError(fmt::format("{}: expected a non-empty script name", p));
      cfg.track_scripts.push_back(parse_script(name, core::ConfigNode(v, p)));
    }
  auto insts = slice.objects("instances");
  std::set<std::string> names;
  std::set<std::pair<std::string, int>> vrids;
  for (auto& n : insts) {
    auto path = n.path();
    auto c = parse_instance(std::move(n), cfg);
    if (!names.insert(c.name).second)
      throw core::ConfigError(fmt::format("{}/name: duplicate instance name \"{}\"", path, c.name));
    if (!vrids.insert({c.interface, c.vrid}).second)
      throw core::ConfigError(fmt::format("{}/vrid: VRID {} is already used on interface {}", path, c.vrid, c.interface));
    cfg.instances.push_back(std::move(c));
  }
  slice.finish();
  return cfg;
}

}  // namespace mqnode::vrrp
