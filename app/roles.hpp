// Roles on the command line (--role=disc,lb,vip) and the modules behind them. Adding a
// module means one case in make_module() and one in config_key().
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/module.hpp"

namespace mqnode::app {

enum class Role { Disc, Ram, Lb, Vip };
inline constexpr Role kAllRoles[] = {Role::Disc, Role::Lb, Role::Vip};

// Parses "disc,lb,vip" into roles in start order (broker, lb, vrrp); throws
// core::ConfigError on unknown or conflicting roles.
std::vector<Role> parse_roles(const std::string& list);

// The top-level config key its module reads: "broker", "lb", "vrrp".
std::string_view config_key(Role role);

// Throws core::ConfigError when this build has no module for <role>.
std::unique_ptr<core::Module> make_module(Role role, const core::ModuleContext& ctx);

}  // namespace mqnode::app
