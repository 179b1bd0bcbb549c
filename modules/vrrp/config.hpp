// The /vrrp slice of the config: a list of instances (keepalived's vrrp_instance blocks).
// Parsed and validated once; every error names its JSON pointer.
#pragma once

#include <vector>

#include "core/config.hpp"
#include "vrrp/instance.hpp"
#include "vrrp/track_script.hpp"

namespace mqnode::vrrp {

struct VrrpConfig {
  std::vector<InstanceConfig> instances;
  std::vector<ScriptConfig> track_scripts;  // /vrrp/track_scripts, in name order
  const ScriptConfig* script(std::string_view name) const {
    for (const auto& s : track_scripts)
      if (s.name == name) return &s;
    return nullptr;
  }
};

// Throws core::ConfigError ("/vrrp/instances/0/vrid: expected an integer in 1..255, got ...").
VrrpConfig parse_vrrp_config(core::ConfigNode slice);

}  // namespace mqnode::vrrp
