// Exchanges own their bindings and decide where a message goes (AMQP 0-9-1 §3.1.3).
// One subclass per type, each in its own file; the vhost resolves exchange-to-exchange
// hops and alternate exchanges on top of route().
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "amqp/field_table.hpp"
#include "broker/message.hpp"

namespace mqnode::broker {

class Queue;
class Exchange;

struct BindingTarget {
  Queue* queue = nullptr;
  Exchange* exchange = nullptr;
  bool operator==(const BindingTarget&) const = default;
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
  explicit Exchange(ExchangeDefinition def) : def_(std::move(def)) {}
  virtual ~Exchange() = default;

  const ExchangeDefinition& definition() const { return def_; }
  const std::string& name() const { return def_.name; }
  // "alternate-exchange" argument, else the one a policy gives, else empty.
  std::string alternate_exchange() const;
  void set_policy_alternate_exchange(std::optional<std::string> ae) { policy_alternate_ = std::move(ae); }

  // False if an identical binding exists already (bind is idempotent).
  bool bind(Binding b);
  // False if no identical binding existed.
  bool unbind(const Binding& b);
  // Removes every binding to <dest>; returns how many.
  std::size_t unbind_all(const BindingTarget& dest);
  const std::vector<Binding>& bindings() const { return bindings_; }

  // Appends the destinations of this exchange's own bindings that match (duplicates
  // allowed; the vhost de-duplicates).
  virtual void route(const Message& msg, std::vector<BindingTarget>& out) const = 0;

 protected:
  // Rebuild any index after bindings_ changed.
  virtual void reindex() {}
  std::vector<Binding> bindings_;

 private:
  ExchangeDefinition def_;
  std::optional<std::string> policy_alternate_;
};

using ExchangePtr = std::unique_ptr<Exchange>;

inline constexpr std::string_view kExchangeTypes[] = {"direct", "fanout", "topic", "headers"};
bool is_exchange_type(std::string_view type);
// Precondition: is_exchange_type(def.type).
ExchangePtr make_exchange(ExchangeDefinition def);

}  // namespace mqnode::broker
