// In-process notifications between modules on the loop thread. A module publishes its
// health when it changes; subscribers (vrrp tracking, the lb's view of the local broker)
// react in the same turn of the loop instead of polling. The cluster member publishes
// membership (nodes joined and left, this node leaving, this node in a minority or back
// in the majority) for the lb and the vip to drain and follow on.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "core/module.hpp"

namespace mqnode::core {

// A change of the cluster as this node sees it.
struct MembershipEvent {
  enum class Kind {
    Joined,    // <node> became a member (raft's configuration has it)
    Left,      // <node> is no longer a member (reset, forget_cluster_node, replaced)
    Leaving,   // this node (<node>) is stopping its broker app or leaving the cluster
    Minority,  // this node reaches no majority: metadata writes are refused here
    Majority,  // this node reaches a majority again
  };
  Kind kind;
  std::string node;  // a node name (or the address, when the name is not known yet)
  std::string role;  // "disc" or "ram" for Joined; empty otherwise
};
const char* kind_name(MembershipEvent::Kind k);

class EventBus {
 public:
  using HealthHandler = std::function<void(std::string_view module, const Health& health)>;
  using MembershipHandler = std::function<void(const MembershipEvent& event)>;

  // Returns an id for unsubscribe(). Handlers run synchronously inside publish_health().
  int subscribe_health(HealthHandler handler);
  // The same for membership events (publish_membership()).
  int subscribe_membership(MembershipHandler handler);
  void unsubscribe(int id);

  // Announces <event> to every membership subscriber, in subscription order.
  void publish_membership(const MembershipEvent& event);

  // Records and announces <module>'s health; a repeat of the same state and detail is not
  // announced again.
  void publish_health(std::string_view module, const Health& health);
  // The last health published by <module>, or nullptr if it never published.
  const Health* last_health(std::string_view module) const;

 private:
  std::map<int, HealthHandler> handlers_;
  std::map<int, MembershipHandler> membership_;
  std::map<std::string, Health, std::less<>> last_;
  int next_id_ = 1;
};

}  // namespace mqnode::core
