// The broker's slice of the config ("/broker"): listeners, users, vhosts, permissions and
// the protocol limits. Defaults are RabbitMQ 3.10's; with nothing configured the node has
// vhost "/" and guest/guest, usable from loopback only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "broker/policy.hpp"
#include "broker/queue.hpp"
#include "broker/resource_alarm.hpp"
#include "core/endpoint.hpp"
#include "core/tls.hpp"

namespace mqnode::broker {

struct UserConfig {
  std::string name;
  std::string password_hash;  // base64(salt[4] ‖ sha256(salt ‖ password)), RabbitMQ's scheme
  std::vector<std::string> tags;
};

struct PermissionConfig {
  std::string user, vhost, configure, write, read;
};

// One AMQP listener: plain, or AMQPS with its TLS options (/broker/listeners/N/tls).
struct ListenerConfig {
  core::Endpoint endpoint;
  std::optional<core::tls::TlsOptions> tls;
};

// A vhost's limits (RabbitMQ's set_vhost_limits): negative means no limit, 0 allows none.
struct VhostLimits {
  int64_t max_connections = -1;
  int64_t max_queues = -1;
};

struct BrokerConfig {
  std::string node_name = "mqnode@localhost";  // from /node/name; cluster_name in connection.start
  std::vector<ListenerConfig> listeners{{core::any_address(5672), std::nullopt}};  // RabbitMQ's [::]:5672
  std::vector<UserConfig> users;
  std::vector<std::string> vhosts{"/"};
  std::vector<PermissionConfig> permissions;
  std::vector<std::string> loopback_users{"guest"};
  uint16_t heartbeat_s = 60;
  uint32_t frame_max = 131072;
  uint16_t channel_max = 2047;
  uint64_t max_message_size = 128ull << 20;
  uint32_t handshake_timeout_ms = 10000;
  uint32_t max_connections = 0;  // 0 = unlimited
  uint64_t queue_ram_bytes = Queue::kDefaultRamWindow;  // per queue: the rest is paged to the store
  uint64_t store_backlog_bytes = 64ull << 20;    // message bytes waiting for the disk before publishers pause
  ResourceLimits resources;      // memory high watermark, disk free limit
  PolicySet policies;            // /broker/policies
  std::map<std::string, VhostLimits, std::less<>> vhost_limits;  // /broker/limits, by vhost
};

// Throws core::ConfigError naming the JSON path of the first bad value.
BrokerConfig parse_broker_config(core::ConfigNode node);

}  // namespace mqnode::broker
