// lb::Balancer picks the server for a new session among one tier of a backend (its active
// servers, or its backups). One algorithm per file, as HAProxy's lb_*.c: round_robin.cpp
// (weighted, dynamic), static_rr.cpp, least_conn.cpp, source.cpp. Loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <asio/ip/address.hpp>

#include "lb/config.hpp"

namespace mqnode::lb {

class Server;

struct PickContext {
  const asio::ip::address* client = nullptr;  // for `source`
  Server* avoid = nullptr;                    // a retry with redispatch skips the server that failed
};

class Balancer {
 public:
  virtual ~Balancer() = default;
  // A usable server (Server::usable()) or nullptr when none is.
  virtual Server* pick(const PickContext& ctx) = 0;
  // A server's state or weight changed (up/down, maint, drain, set weight).
  virtual void on_server_change() {}
};

// <servers> outlive the balancer; their order is the configuration order.
std::unique_ptr<Balancer> make_balancer(Algorithm a, std::vector<Server*> servers);

// Factories, one per algorithm file.
std::unique_ptr<Balancer> make_round_robin(std::vector<Server*> servers);
std::unique_ptr<Balancer> make_static_rr(std::vector<Server*> servers);
std::unique_ptr<Balancer> make_least_conn(std::vector<Server*> servers);
std::unique_ptr<Balancer> make_source(std::vector<Server*> servers);

// HAProxy's map for static-rr and source: each server appears <weight> times, interleaved
// smoothly (nginx's smooth weighted round robin run once over the whole cycle), so weights
// 3:1 give a b a a, not a a a b. <weights>[i] is server i's weight; returns indexes.
std::vector<std::size_t> weighted_map(const std::vector<int>& weights);

}  // namespace mqnode::lb
