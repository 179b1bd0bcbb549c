// What a reload changes, worked out from the old and the new /lb slices alone: the
// frontends, backends and servers (of backends kept by name) that are added, removed or
// changed (same name, other settings), and the settings that wait for a restart.
// LbModule::reload() applies it to the live objects; being pure, it is unit-tested.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "lb/config.hpp"

namespace mqnode::lb {

struct NameDiff {
  std::vector<std::string> added;    // in the new config's order
  std::vector<std::string> removed;  // in the old config's order
  std::vector<std::string> changed;  // in the new config's order
  bool empty() const { return added.empty() && removed.empty() && changed.empty(); }
  bool operator==(const NameDiff&) const = default;
};

struct ReloadPlan {
  NameDiff frontends;
  NameDiff backends;  // changed: the backend's own settings (balance, timeouts, check, ...)
  // The server changes of each backend kept by name, only those with some, in new order.
  std::vector<std::pair<std::string, NameDiff>> servers;
  bool stats_uri_changed = false;
  bool buffer_size_changed = false;  // applies at the next restart only
};

ReloadPlan plan_reload(const LbConfig& old, const LbConfig& next);

}  // namespace mqnode::lb
