// Roles on the command line (--role=disc,lb,vip) and the modules they need, in start order.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/module.hpp"

namespace mqnode::app {

enum class Role { Disc, Ram, Lb, Vip };

// Parses "disc,lb,vip"; throws core::ConfigError on unknown or conflicting roles.
std::vector<Role> parse_roles(const std::string& list);

// One module per role, in dependency order (broker before lb before vrrp).
std::vector<std::unique_ptr<core::Module>> make_modules(const std::vector<Role>& roles, const core::ModuleContext& ctx);

}  // namespace mqnode::app
