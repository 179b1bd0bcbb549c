#include "broker/config.hpp"

#include <limits>
#include <regex>

#include <fmt/format.h>

#include "broker/auth.hpp"

namespace mqnode::broker {

namespace {
void check_regex(core::ConfigNode& n, std::string_view key, const std::string& value) {
  try {
    std::regex re(value);
  } catch (const std::regex_error& e) {
    throw core::ConfigError(fmt::format("{}: expected a regular expression, got \"{}\" ({})",
                                        n.path_of(key), value, e.what()));
  }
}
}  // namespace

BrokerConfig parse_broker_config(core::ConfigNode node) {
  BrokerConfig c;
  if (node.has("listeners")) {
    c.listeners.clear();
    for (auto& l : node.objects("listeners")) {
      ListenerConfig lc;
      if (l.has("tls")) lc.tls = core::tls::parse_tls_options(l.object("tls"));
      if (l.has("bind") && l.has("port")) l.fail("bind", "exactly one of \"bind\" or \"port\"");
      if (l.has("bind")) {
        auto ep = core::parse_endpoint(l.required_string("bind"));
        if (!ep) l.fail("bind", "\"address:port\" with a numeric IPv4/IPv6 address");
        lc.endpoint = *ep;
      } else if (l.has("port")) {
        // Every address, as RabbitMQ's listeners.tcp.default = PORT.
        lc.endpoint = core::any_address(static_cast<uint16_t>(l.integer("port", 0, 0, 65535)));
      } else if (lc.tls) {
        lc.endpoint = core::any_address(5671);  // AMQPS: RabbitMQ's listeners.ssl.default
      } else {
        l.fail("bind", "exactly one of \"bind\" or \"port\"");
      }
      l.finish();
      c.listeners.push_back(std::move(lc));
    }
    if (c.listeners.empty()) node.fail("listeners", "at least one listener");
  }
  bool users_given = node.has("users");
  for (auto& u : node.objects("users")) {
    UserConfig uc;
    uc.name = u.required_string("name");
    bool has_pw = u.has("password"), has_hash = u.has("password_hash");
    if (has_pw == has_hash) u.fail("password", "exactly one of \"password\" or \"password_hash\"");
    if (has_pw) {
      uc.password_hash = hash_password(u.string("password", ""));
    } else {
      uc.password_hash = u.required_string("password_hash");
      if (!valid_password_hash(uc.password_hash))
        u.fail("password_hash", "base64 of a 4-byte salt and a SHA-256 digest (mqnode hash_password)");
    }
    uc.tags = u.strings("tags", {});
    u.finish();
    for (const auto& o : c.users)
      if (o.name == uc.name) u.fail("name", "a user name not defined before");
    c.users.push_back(std::move(uc));
  }
  c.vhosts = node.strings("vhosts", c.vhosts);
  for (std::size_t i = 0; i < c.vhosts.size(); ++i)
    if (c.vhosts[i].empty() || c.vhosts[i].size() > 255)
      throw core::ConfigError(fmt::format("{}/{}: expected a vhost name of 1..255 characters", node.path_of("vhosts"), i));
  for (auto& p : node.objects("permissions")) {
    PermissionConfig pc;
    pc.user = p.required_string("user");
    pc.vhost = p.string("vhost", "/");
    pc.configure = p.string("configure", ".*");
    pc.write = p.string("write", ".*");
    pc.read = p.string("read", ".*");
    check_regex(p, "configure", pc.configure);
    check_regex(p, "write", pc.write);
    check_regex(p, "read", pc.read);
    p.finish();
    if (std::find(c.vhosts.begin(), c.vhosts.end(), pc.vhost) == c.vhosts.end())
      p.fail("vhost", "a vhost listed in /broker/vhosts");
    c.permissions.push_back(std::move(pc));
  }
  if (!users_given) {
    // RabbitMQ's out-of-the-box user (loopback only, see loopback_users).
    c.users.push_back({"guest", hash_password("guest"), {"administrator"}});
    if (!node.has("permissions")) c.permissions.push_back({"guest", "/", ".*", ".*", ".*"});
  }
  for (std::size_t i = 0; i < c.permissions.size(); ++i) {
    const auto& pc = c.permissions[i];
    if (std::none_of(c.users.begin(), c.users.end(), [&](const UserConfig& u) { return u.name == pc.user; }))
      throw core::ConfigError(fmt::format("{}/{}/user: expected a user listed in /broker/users, got \"{}\"",
                                          node.path_of("permissions"), i, pc.user));
  }
  for (auto& pn : node.objects("policies")) {
    Policy p = parse_policy(pn);
    if (std::find(c.vhosts.begin(), c.vhosts.end(), p.vhost) == c.vhosts.end())
      throw core::ConfigError(fmt::format("{}/vhost: expected a vhost listed in /broker/vhosts, got \"{}\"", pn.path(), p.vhost));
    for (const auto& o : c.policies.all())
      if (o.name == p.name && o.vhost == p.vhost)
        throw core::ConfigError(fmt::format("{}/name: expected a policy name not defined before in vhost \"{}\"", pn.path(), p.vhost));
    c.policies.add(std::move(p));
  }
  if (node.has("limits")) {
    // {"<vhost>": {"max-connections": N, "max-queues": N}}, as rabbitmqctl set_vhost_limits.
    const auto& raw = node.raw("limits");
    if (!raw.is_object()) node.fail("limits", "an object of vhost names to their limits");
    core::ConfigNode limits(raw, node.path_of("limits"));
    for (const auto& [vhost, v] : raw.items()) {
      if (std::find(c.vhosts.begin(), c.vhosts.end(), vhost) == c.vhosts.end())
        limits.fail(vhost, "a vhost listed in /broker/vhosts");
      core::ConfigNode l = limits.object(vhost);
      VhostLimits vl;
      vl.max_connections = l.integer("max-connections", -1, -1, std::numeric_limits<int32_t>::max());
      vl.max_queues = l.integer("max-queues", -1, -1, std::numeric_limits<int32_t>::max());
      l.finish();
      c.vhost_limits[vhost] = vl;
    }
    limits.finish();
  }
  c.loopback_users = node.strings("loopback_users", c.loopback_users);
  c.heartbeat_s = static_cast<uint16_t>(node.integer("heartbeat_s", c.heartbeat_s, 0, 65535));
  c.frame_max = static_cast<uint32_t>(node.integer("frame_max", c.frame_max, 4096, 1 << 24));
  c.channel_max = static_cast<uint16_t>(node.integer("channel_max", c.channel_max, 1, 65535));
  c.max_message_size = static_cast<uint64_t>(node.integer("max_message_size", static_cast<int64_t>(c.max_message_size), 1, 512ll << 20));
  c.handshake_timeout_ms = static_cast<uint32_t>(node.integer("handshake_timeout_ms", c.handshake_timeout_ms, 100, 3600000));
  c.max_connections = static_cast<uint32_t>(node.integer("max_connections", 0, 0, 10000000));
  c.queue_ram_bytes = static_cast<uint64_t>(
      node.integer("queue_ram_bytes", static_cast<int64_t>(c.queue_ram_bytes), 64 << 10, 1ll << 40));
  c.store_backlog_bytes = static_cast<uint64_t>(
      node.integer("store_backlog_bytes", static_cast<int64_t>(c.store_backlog_bytes), 1 << 20, 1ll << 40));
  c.resources.memory_relative = node.number("vm_memory_high_watermark", c.resources.memory_relative, 0.0, 1.0);
  c.resources.memory_absolute =
      static_cast<uint64_t>(node.integer("vm_memory_high_watermark_bytes", 0, 0, std::numeric_limits<int64_t>::max()));
  c.resources.disk_free_limit = static_cast<uint64_t>(
      node.integer("disk_free_limit_bytes", static_cast<int64_t>(c.resources.disk_free_limit), 0,
                   std::numeric_limits<int64_t>::max()));
  node.finish();
  return c;
}

}  // namespace mqnode::broker
