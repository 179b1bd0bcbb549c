// Exchanges own their bindings and decide where a message goes (AMQP 0-9-1 §3.1.3).
// One subclass per type, each in its own file; the vhost resolves exchange-to-exchange
// hops and alternate exchanges on top of route(). Binding and unbinding cost O(1)
// amortized whatever the number of bindings: the base keeps the bindings in one dense
// vector with a hash index by identity and one by destination, and each type keeps its
// routing index in step through three hooks.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "amqp/field_table.hpp"
#include "broker/exchange/position_sets.hpp"
#include "broker/message.hpp"
#include "broker/message_stats.hpp"

namespace mqnode::broker {

class QueueHandle;
class Exchange;

struct BindingTarget {
  QueueHandle* queue = nullptr;
  Exchange* exchange = nullptr;
  bool operator==(const BindingTarget&) const = default;
};

struct BindingTargetHash {
  std::size_t operator()(const BindingTarget& t) const;
};

struct Binding {
  BindingTarget destination;
  std::string key;
  amqp::FieldTable arguments;
  bool operator==(const Binding&) const = default;
};

struct ExchangeDefinition {
  std::string name;
  std::string type;
  bool durable = false;
  bool auto_delete = false;
  bool internal = false;
  amqp::FieldTable arguments;
};

class Exchange {
 public:
  explicit Exchange(ExchangeDefinition def);
  virtual ~Exchange() = default;
  Exchange(const Exchange&) = delete;  // the identity index points at bindings_
  Exchange& operator=(const Exchange&) = delete;

  const ExchangeDefinition& definition() const { return def_; }
  const std::string& name() const { return def_.name; }
  // publish_in / publish_out for the management API; counting is not a change of the
  // exchange, so routing through a const exchange counts too.
  mutable MessageStats message_stats;
  // "alternate-exchange" argument, else the one a policy gives, else empty.
  std::string alternate_exchange() const;
  void set_policy_alternate_exchange(std::optional<std::string> ae) { policy_alternate_ = std::move(ae); }

  // False if an identical binding exists already (bind is idempotent). O(1) amortized,
  // plus the length of the key for the topic exchange.
  bool bind(Binding b);
  // False if no identical binding existed. O(1) amortized, as bind.
  bool unbind(const Binding& b);
  // Removes every binding to <dest>; returns how many. O(that many): the bindings of
  // other destinations are not visited.
  std::size_t unbind_all(const BindingTarget& dest);
  // In no particular order: an unbind moves the last binding into the hole it leaves.
  const std::vector<Binding>& bindings() const { return bindings_; }

  // Appends the destinations of this exchange's own bindings that match (duplicates
  // allowed; the vhost de-duplicates).
  virtual void route(const Message& msg, std::vector<BindingTarget>& out) const = 0;

 protected:
  // A type's routing index follows bindings() through these, each O(1) (topic: O(words)).
  // bindings()[pos] has just been added.
  virtual void indexed(uint32_t /*pos*/) {}
  // bindings()[pos] is about to be removed.
  virtual void unindexing(uint32_t /*pos*/) {}
  // The binding that was at <from> is now bindings()[to] (a removal filled its hole).
  virtual void moved(uint32_t /*from*/, uint32_t /*to*/) {}

 private:
  // Hashes and compares positions by the binding they hold, and a Binding against them,
  // so bind/unbind find an identical binding without a second copy of it.
  struct IdentityHash {
    using is_transparent = void;
    const std::vector<Binding>* bindings;
    std::size_t operator()(uint32_t pos) const { return (*this)((*bindings)[pos]); }
    std::size_t operator()(const Binding& b) const;
  };
  struct IdentityEqual {
    using is_transparent = void;
    const std::vector<Binding>* bindings;
    bool operator()(uint32_t a, uint32_t b) const { return a == b; }
    bool operator()(const Binding& a, uint32_t b) const { return a == (*bindings)[b]; }
    bool operator()(uint32_t a, const Binding& b) const { return (*bindings)[a] == b; }
  };

  void erase_at(uint32_t pos);

  ExchangeDefinition def_;
  std::optional<std::string> policy_alternate_;
  std::vector<Binding> bindings_;
  std::unordered_set<uint32_t, IdentityHash, IdentityEqual> identity_;
  std::unordered_map<BindingTarget, PositionSet, BindingTargetHash> by_destination_;
  PositionSlots destination_slots_;
};

using ExchangePtr = std::unique_ptr<Exchange>;

inline constexpr std::string_view kExchangeTypes[] = {"direct", "fanout", "topic", "headers"};
bool is_exchange_type(std::string_view type);
// Precondition: is_exchange_type(def.type).
ExchangePtr make_exchange(ExchangeDefinition def);

}  // namespace mqnode::broker
