// A virtual host: its exchanges, queues and bindings, and message routing across them.
// Every metadata mutation is a MetadataChange passed to commit(): the single seam where the
// store (durable definitions) and the cluster (replicated metadata) hook in later.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "broker/exchange/exchange.hpp"
#include "broker/policy.hpp"
#include "broker/queue.hpp"

namespace mqnode::broker {

struct ExchangeDeclared {
  ExchangeDefinition def;
};
struct ExchangeDeleted {
  std::string name;
};
struct QueueDeclared {
  QueueDefinition def;
};
struct QueueDeleted {
  std::string name;
};
struct BindingChange {
  bool add = true;
  std::string source;
  bool to_exchange = false;  // destination is an exchange (exchange.bind) or a queue
  std::string destination;
  std::string key;
  amqp::FieldTable arguments;
};
using MetadataChange = std::variant<ExchangeDeclared, ExchangeDeleted, QueueDeclared, QueueDeleted, BindingChange>;

class Vhost final : public QueueOwner {
 public:
  // <store>: where durable definitions and persistent messages go (nullptr: memory only).
  // <policies>: defaults for queues and exchanges by name (nullptr: none).
  // <queue_ram_bytes>: each queue's RAM window (see Queue).
  Vhost(std::string name, store::Store* store, const PolicySet* policies = nullptr,
        uint64_t queue_ram_bytes = Queue::kDefaultRamWindow);
  Vhost(const Vhost&) = delete;
  Vhost& operator=(const Vhost&) = delete;

  const std::string& name() const { return name_; }

  // Applies a validated change and writes the durable part of it to the store. Deleting a
  // queue or exchange removes its bindings, cancels its consumers and cascades to
  // auto-delete exchanges that lose their last binding.
  void commit(const MetadataChange& change);
  // Rebuilds durable definitions and messages read from the store at start.
  void restore(const store::Snapshot& snap);
  // Housekeeping (about every 100 ms): message TTLs and x-expires.
  void tick(int64_t now_ms);
  // The policies changed: recomputes every queue's effective arguments (its client
  // arguments merged with the policy that now matches) and every exchange's policy
  // alternate exchange, as RabbitMQ does on set_policy / clear_policy.
  void apply_policies();

  // QueueOwner
  void queue_unused(Queue& q) override;
  void dead_letter(Queue& q, QueueEntry e, DeathReason why) override;

  Exchange* find_exchange(std::string_view name) const;
  QueuePtr find_queue(std::string_view name) const;
  const std::map<std::string, ExchangePtr, std::less<>>& exchanges() const { return exchanges_; }
  const std::map<std::string, QueuePtr, std::less<>>& queues() const { return queues_; }

  // True if <ex> is the source of a binding (exchange.delete if-unused).
  bool exchange_in_use(const Exchange& ex) const;

  // Destination queues of <msg> published to <ex> (the default exchange routes by queue
  // name), following exchange-to-exchange bindings and alternate exchanges, without
  // duplicates. <out> is cleared first.
  void route(const Exchange& ex, const Message& msg, std::vector<Queue*>& out) const;

 private:
  // The policy in force for a queue (<is_queue>) or exchange of this vhost, or nullptr.
  const Policy* policy_for(const std::string& name, bool is_queue) const;
  void apply(const ExchangeDeclared& c);
  void apply(const ExchangeDeleted& c);
  void apply(const QueueDeclared& c);
  void apply(const QueueDeleted& c);
  void apply(const BindingChange& c);
  struct DeadLetter {
    std::string queue;
    QueueArgs args;
    QueueEntry entry;
    DeathReason why;
  };
  void republish(const DeadLetter& d);
  void persist(const MetadataChange& change);
  void remove_bindings_to(const BindingTarget& dest);
  void delete_if_unused_auto_delete(Exchange* ex);
  void route_into(const Exchange& ex, const Message& msg, std::vector<Queue*>& out,
                  std::vector<const Exchange*>& visited) const;

  std::string name_;
  store::Store* store_;
  const PolicySet* policies_;
  uint64_t queue_ram_bytes_;
  bool restoring_ = false;
  // Dead-lettering re-enters queues; work is queued and drained by the outermost call.
  std::deque<DeadLetter> dead_letters_;
  bool dead_lettering_ = false;
  std::map<std::string, ExchangePtr, std::less<>> exchanges_;
  std::map<std::string, QueuePtr, std::less<>> queues_;
};

}  // namespace mqnode::broker
