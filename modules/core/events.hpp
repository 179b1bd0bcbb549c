// In-process notifications between modules on the loop thread. A module publishes its
// health when it changes; subscribers (vrrp tracking, the lb's view of the local broker)
// react in the same turn of the loop instead of polling.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "core/module.hpp"

namespace mqnode::core {

class EventBus {
 public:
  using HealthHandler = std::function<void(std::string_view module, const Health& health)>;

  // Returns an id for unsubscribe(). Handlers run synchronously inside publish_health().
  int subscribe_health(HealthHandler handler);
  void unsubscribe(int id);

  // Records and announces <module>'s health; a repeat of the same state and detail is not
  // announced again.
  void publish_health(std::string_view module, const Health& health);
  // The last health published by <module>, or nullptr if it never published.
  const Health* last_health(std::string_view module) const;

 private:
  std::map<int, HealthHandler> handlers_;
  std::map<std::string, Health, std::less<>> last_;
  int next_id_ = 1;
};

}  // namespace mqnode::core
