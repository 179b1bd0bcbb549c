#include "core/events.hpp"

namespace mqnode::core {

int EventBus::subscribe_health(HealthHandler handler) {
  int id = next_id_++;
  handlers_.emplace(id, std::move(handler));
  return id;
}

int EventBus::subscribe_membership(MembershipHandler handler) {
  int id = next_id_++;
  membership_.emplace(id, std::move(handler));
  return id;
}

void EventBus::unsubscribe(int id) {
  handlers_.erase(id);
  membership_.erase(id);
}

void EventBus::publish_membership(const MembershipEvent& event) {
  auto handlers = membership_;  // a handler may subscribe or unsubscribe
  for (auto& [id, h] : handlers) h(event);
}

const char* kind_name(MembershipEvent::Kind k) {
  switch (k) {
    case MembershipEvent::Kind::Joined: return "joined";
    case MembershipEvent::Kind::Left: return "left";
    case MembershipEvent::Kind::Leaving: return "leaving";
    case MembershipEvent::Kind::Minority: return "minority";
    case MembershipEvent::Kind::Majority: return "majority";
  }
  return "?";
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
