// Builds backends and servers for the lb unit tests without sockets or an io_context.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lb/server.hpp"

namespace mqnode::lb::test {

inline ServerConfig server_cfg(const std::string& name, int weight = 1, bool backup = false, uint32_t maxconn = 0) {
  ServerConfig s;
  s.name = name;
  s.address = core::Endpoint{"127.0.0.1", 5672};
  s.weight = weight;
  s.backup = backup;
  s.maxconn = maxconn;
  return s;
}

struct Servers {
  CheckConfig check;
  std::vector<std::unique_ptr<Server>> owned;
  std::vector<Server*> ptrs;
  Server& add(const ServerConfig& c) {
    owned.push_back(std::make_unique<Server>(c, check, static_cast<int>(owned.size()) + 1, Clock::time_point{}));
    ptrs.push_back(owned.back().get());
    return *owned.back();
  }
};

// Fails the server's checks until it is down.
inline void mark_down(Server& s, int fall = 3) {
  for (int i = 0; i < fall && s.up(); ++i) s.record_check(false, Clock::time_point{});
}

}  // namespace mqnode::lb::test
