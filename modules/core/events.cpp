#include "core/events.hpp"

namespace mqnode::core {

int EventBus::subscribe_health(HealthHandler handler) {
  int id = next_id_++;
  handlers_.emplace(id, std::move(handler));
  return id;
}

void EventBus::unsubscribe(int id) {
  handlers_.erase(id);
}

void EventBus::publish_health(std::string_view module, const Health& health) {
  auto it = last_.find(module);
  if (it != last_.end() && it->second.state == health.state && it->second.detail == health.detail) return;
  last_.insert_or_assign(std::string(module), health);
  // Copy: a handler may subscribe or unsubscribe.
  auto handlers = handlers_;
  for (auto& [id, h] : handlers) h(module, health);
}

const Health* EventBus::last_health(std::string_view module) const {
  auto it = last_.find(module);
  return it == last_.end() ? nullptr : &it->second;
}

}  // namespace mqnode::core
