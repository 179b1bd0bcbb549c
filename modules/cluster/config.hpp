// The /cluster config slice and how a node name as an operator types it ("rabbit@mq1",
// "mq1", "mq1:25672", "10.0.0.11") becomes a cluster address.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"
#include "core/endpoint.hpp"

namespace mqnode::cluster {

inline constexpr uint16_t kDefaultClusterPort = 25672;

struct ClusterConfig {
  core::Endpoint bind{"0.0.0.0", kDefaultClusterPort};  // /cluster/bind
  // /cluster/advertise: where other nodes reach this one; empty: the bind address when it
  // is a specific one, else this host's name resolved.
  std::string advertise;
  std::vector<std::string> seeds;     // /cluster/seeds: nodes to join on a first start
  unsigned election_timeout_ms = 1000;
  unsigned heartbeat_timeout_ms = 100;
  unsigned snapshot_threshold = 1024;
  std::string cookie_file;  // /node/cookie_file (app/ fills it in); empty: <data_dir>/.cookie
};

// Throws core::ConfigError naming the JSON path.
ClusterConfig parse_cluster_config(core::ConfigNode node);

// "host:port" (numeric) for <node>: a "name@" prefix is dropped, a missing port is the
// cluster port's default, a host name is resolved (getaddrinfo: /etc/hosts, then DNS).
// Throws std::runtime_error naming <node> when it cannot be resolved.
std::string resolve_node(std::string_view node);

}  // namespace mqnode::cluster
