#include "cluster/config.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <charconv>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

namespace mqnode::cluster {

ClusterConfig parse_cluster_config(core::ConfigNode node) {
  ClusterConfig cfg;
  const std::string bind = node.string("bind", cfg.bind.to_string());
  auto ep = core::parse_endpoint(bind);
  if (!ep) throw core::ConfigError(fmt::format("{}: expected \"address:port\", got \"{}\"", node.path_of("bind"), bind));
  cfg.bind = *ep;
  cfg.advertise = node.string("advertise", "");
  if (!cfg.advertise.empty() && !core::parse_endpoint(cfg.advertise))
    throw core::ConfigError(
        fmt::format("{}: expected a numeric \"address:port\", got \"{}\"", node.path_of("advertise"), cfg.advertise));
  cfg.seeds = node.strings("seeds", {});
  cfg.election_timeout_ms = static_cast<unsigned>(node.integer("election_timeout_ms", cfg.election_timeout_ms, 100, 60000));
  cfg.heartbeat_timeout_ms =
      static_cast<unsigned>(node.integer("heartbeat_timeout_ms", cfg.heartbeat_timeout_ms, 10, 10000));
  if (cfg.heartbeat_timeout_ms >= cfg.election_timeout_ms)
    throw core::ConfigError(fmt::format("{}: must be less than election_timeout_ms ({}), got {}",
                                        node.path_of("heartbeat_timeout_ms"), cfg.election_timeout_ms,
                                        cfg.heartbeat_timeout_ms));
  cfg.snapshot_threshold = static_cast<unsigned>(node.integer("snapshot_threshold", cfg.snapshot_threshold, 16, 1 << 20));
  node.finish();
  return cfg;
}

std::string resolve_node(std::string_view node) {
  std::string_view host = node.substr(node.find('@') == std::string_view::npos ? 0 : node.find('@') + 1);
  uint16_t port = kDefaultClusterPort;
  // "host:port" and "[v6]:port" carry a port; a bare IPv6 address has colons but none.
  const auto colon = host.rfind(':');
  if (colon != std::string_view::npos && (host.find(':') == colon || host.front() == '[')) {
    unsigned p = 0;
    const auto digits = host.substr(colon + 1);
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), p);
    if (ec != std::errc() || ptr != digits.data() + digits.size() || p == 0 || p > 65535)
      throw std::runtime_error(fmt::format("node \"{}\": expected a port 1..65535 after ':'", node));
    port = static_cast<uint16_t>(p);
    host = host.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) throw std::runtime_error(fmt::format("node \"{}\" names no host", node));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string h(host);
  if (int rc = getaddrinfo(h.c_str(), nullptr, &hints, &found); rc != 0)
    throw std::runtime_error(fmt::format("cannot resolve the host of node \"{}\": {}", node, gai_strerror(rc)));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
  char text[NI_MAXHOST] = {};
  if (getnameinfo(found->ai_addr, found->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) != 0)
    throw std::runtime_error(fmt::format("cannot resolve the host of node \"{}\"", node));
  return core::Endpoint{text, port}.to_string();
}

}  // namespace mqnode::cluster
