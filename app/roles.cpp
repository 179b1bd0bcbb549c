#include "roles.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "broker/broker_module.hpp"
#include "lb/lb_module.hpp"
#include "vrrp/vrrp_module.hpp"

namespace mqnode::app {

std::vector<Role> parse_roles(const std::string& list) {
  std::vector<Role> roles;
  std::size_t start = 0;
  for (;;) {
    auto comma = list.find(',', start);
    auto item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    Role r;
    if (item == "disc") r = Role::Disc;
    else if (item == "ram") r = Role::Ram;
    else if (item == "lb") r = Role::Lb;
    else if (item == "vip") r = Role::Vip;
    else throw core::ConfigError(fmt::format("--role: expected a comma list of disc, ram, lb, vip; got \"{}\"", item));
    if (std::find(roles.begin(), roles.end(), r) == roles.end()) roles.push_back(r);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  bool disc = std::find(roles.begin(), roles.end(), Role::Disc) != roles.end();
  bool ram = std::find(roles.begin(), roles.end(), Role::Ram) != roles.end();
  if (disc && ram) throw core::ConfigError("--role: disc and ram exclude each other (a node is one kind of broker)");
  std::sort(roles.begin(), roles.end());
  return roles;
}

std::string_view config_key(Role role) {
  switch (role) {
    case Role::Disc:
    case Role::Ram:
      return "broker";
    case Role::Lb:
      return "lb";
    case Role::Vip:
      return "vrrp";
  }
  return "";
}

std::unique_ptr<core::Module> make_module(Role role, const core::ModuleContext& ctx) {
  core::ModuleContext child{ctx.io, ctx.log.child(config_key(role)), ctx.node, ctx.events};
  switch (role) {
    case Role::Disc:
      return std::make_unique<broker::BrokerModule>(child);
    case Role::Ram:
      return std::make_unique<broker::BrokerModule>(child, /*ram=*/true);
    case Role::Lb:
      return std::make_unique<lb::LbModule>(child);
    case Role::Vip:
      return std::make_unique<vrrp::VrrpModule>(child);
  }
  return nullptr;
}

}  // namespace mqnode::app
