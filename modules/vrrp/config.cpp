#include "vrrp/config.hpp"

#include <cmath>
#include <set>

#include <fmt/format.h>

namespace mqnode::vrrp {

namespace {

// "192.168.1.10/24" or "192.168.1.10" (/32).
bool parse_vip(const std::string& s, Vip& out) {
  auto slash = s.find('/');
  if (!parse_ip4(std::string_view(s).substr(0, slash), out.addr)) return false;
  out.prefix = 32;
  if (slash == std::string::npos) return true;
  auto len = std::string_view(s).substr(slash + 1);
  if (len.empty() || len.size() > 2) return false;
  int p = 0;
  for (char c : len) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + (c - '0');
  }
  if (p < 1 || p > 32) return false;
  out.prefix = static_cast<uint8_t>(p);
  return true;
}

InstanceConfig parse_instance(core::ConfigNode n) {
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
  if (vips.empty()) n.fail("vips", "a non-empty array of \"a.b.c.d/len\" addresses");
  if (vips.size() > 20) n.fail("vips", "at most 20 addresses (one advert must carry them all)");
  for (std::size_t i = 0; i < vips.size(); ++i) {
    Vip v;
    if (!parse_vip(vips[i], v))
      throw core::ConfigError(fmt::format("{}/{}: expected an IPv4 address \"a.b.c.d\" or \"a.b.c.d/len\", got string \"{}\"",
                                          n.path_of("vips"), i, vips[i]));
    for (const auto& o : c.vips)
      if (o.addr == v.addr)
        throw core::ConfigError(fmt::format("{}/{}: duplicate address {}", n.path_of("vips"), i, ip4_to_string(v.addr)));
    c.vips.push_back(v);
  }
  c.vip_label = n.string("vip_label", "");
  if (!c.vip_label.empty() && (c.vip_label.size() > 15 || c.vip_label.rfind(c.interface, 0) != 0))
    n.fail("vip_label", fmt::format("a label of at most 15 characters starting with the interface name \"{}\" (e.g. \"{}:vip\")",
                                    c.interface, c.interface));

  auto src = n.string("source", "");
  if (!src.empty() && !parse_ip4(src, c.source)) n.fail("source", "an IPv4 address of the interface");
  auto peers = n.strings("unicast_peers", {});
  for (std::size_t i = 0; i < peers.size(); ++i) {
    Ip4 p;
    if (!parse_ip4(peers[i], p))
      throw core::ConfigError(fmt::format("{}/{}: expected an IPv4 address, got string \"{}\"", n.path_of("unicast_peers"), i, peers[i]));
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
        t.module = tr[i].get<std::string>();
      } else if (tr[i].is_object()) {
        core::ConfigNode o(tr[i], p);
        t.module = o.required_string("module");
        t.weight = static_cast<int>(o.integer("weight", 0, -254, 254));
        o.finish();
      } else {
        throw core::ConfigError(fmt::format("{}: expected a module name or an object, got {}", p, core::describe(tr[i])));
      }
      if (t.module.empty()) throw core::ConfigError(fmt::format("{}: expected a module name, got an empty string", p));
      for (const auto& o : c.track)
        if (o.module == t.module) throw core::ConfigError(fmt::format("{}: module '{}' tracked twice", p, t.module));
      c.track.push_back(t);
    }
  }

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
  auto insts = slice.objects("instances");
  std::set<std::string> names;
  std::set<std::pair<std::string, int>> vrids;
  for (auto& n : insts) {
    auto path = n.path();
    auto c = parse_instance(std::move(n));
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
