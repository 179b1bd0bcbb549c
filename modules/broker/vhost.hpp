// A virtual host: its exchanges, queues and bindings, and message routing across them.
// Its definitions change only through the Catalog, which validates a change and then calls
// the apply() overloads here; they enact it on the live objects (queues, consumers,
// routing indexes) and write its durable part to the store while the catalog persists.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "broker/change.hpp"
#include "broker/exchange/exchange.hpp"
#include "broker/policy.hpp"
#include "broker/queue.hpp"
#include "broker/remote_queue.hpp"

namespace mqnode::broker {

class Catalog;

class Vhost final : public QueueOwner {
 public:
  // <catalog>: where this vhost's own proposals go (auto-delete, x-expires) and whether
  // changes are persisted; its store keeps durable definitions and persistent messages.
  // <policies>: defaults for queues and exchanges by name.
  Vhost(std::string name, Catalog& catalog, const PolicySet& policies, uint64_t queue_ram_bytes);
  Vhost(const Vhost&) = delete;
  Vhost& operator=(const Vhost&) = delete;

  const std::string& name() const { return name_; }

  // Catalog only: enact a change the catalog validated. Deleting a queue or exchange
  // removes its bindings, cancels its consumers and cascades to auto-delete exchanges that
  // lose their last binding.
  void apply(const DeclareExchange& c);
  void apply(const DeleteExchange& c);
  void apply(const DeclareQueue& c);
  void apply(const DeleteQueue& c);
  void apply(const Bind& c);
  // Catalog only: the vhost is being deleted: every queue goes (consumers cancelled) and
  // every durable definition leaves the store.
  void remove_all();
  // Rebuilds durable definitions and messages read from the store at start.
  void restore(const store::Snapshot& snap);
  // Housekeeping (about every 100 ms): message TTLs; queues unused past x-expires are
  // proposed for deletion.
  void tick(int64_t now_ms);
  // The policies changed: recomputes every queue's effective arguments (its client
  // arguments merged with the policy that now matches) and every exchange's policy
  // alternate exchange, as RabbitMQ does on set_policy / clear_policy.
  void apply_policies();

  // QueueOwner
  void queue_unused(Queue& q) override;
  void dead_letter(Queue& q, QueueEntry e, DeathReason why) override;

  Exchange* find_exchange(std::string_view name) const;
  // Any queue of the vhost, wherever its home is.
  QueueHandlePtr find_queue(std::string_view name) const;
  // A queue homed on this node.
  QueuePtr find_local_queue(std::string_view name) const;
  const std::map<std::string, ExchangePtr, std::less<>>& exchanges() const { return exchanges_; }
  // The queues homed on this node, and every queue of the vhost.
  const std::map<std::string, QueuePtr, std::less<>>& queues() const { return queues_; }
  const std::map<std::string, QueueHandlePtr, std::less<>>& all_queues() const { return handles_; }

  // True if <ex> is the source of a binding (exchange.delete if-unused).
  bool exchange_in_use(const Exchange& ex) const;

  // Destination queues of <msg> published to <ex> (the default exchange routes by queue
  // name), following exchange-to-exchange bindings and alternate exchanges, without
  // duplicates. <out> is cleared first.
  void route(const Exchange& ex, const Message& msg, std::vector<QueueHandle*>& out) const;

  // The one publish path, for clients and dead-lettering alike: routes <msg> from <ex> and
  // enqueues it in every destination <admit> accepts (empty: all). <scratch> is the
  // caller's routing buffer, reused across publishes. <settled> goes with the message to
  // destinations homed on other nodes (PublishOutcome::remote says how many will call it).
  PublishOutcome publish(const Exchange& ex, const MessagePtr& msg, std::vector<QueueHandle*>& scratch,
                         const std::function<bool(const QueueHandle&)>& admit = {}, const Settled& settled = {});

 private:
  // The policy in force for a queue (<is_queue>) or exchange of this vhost, or nullptr.
  const Policy* policy_for(const std::string& name, bool is_queue) const;
  // Proposes deleting <queue> for <why> (its home's decision); a refusal is logged.
  void propose_delete(const std::string& queue, DeleteReason why);
  struct DeadLetter {
    std::string queue;
    QueueArgs args;
    QueueEntry entry;
    DeathReason why;
  };
  void republish(const DeadLetter& d);
  template <class C>
  void persist(const C& change);
  void remove_bindings_to(const BindingTarget& dest);
  void delete_if_unused_auto_delete(Exchange* ex);
  void route_into(const Exchange& ex, const Message& msg, std::vector<QueueHandle*>& out,
                  std::vector<const Exchange*>& visited) const;

  std::string name_;
  Catalog& catalog_;
  store::Store* store_;
  const PolicySet& policies_;
  uint64_t queue_ram_bytes_;
  // Dead-lettering re-enters queues; work is queued and drained by the outermost call.
  std::deque<DeadLetter> dead_letters_;
  bool dead_lettering_ = false;
  std::map<std::string, ExchangePtr, std::less<>> exchanges_;
  std::map<std::string, QueuePtr, std::less<>> queues_;
  std::map<std::string, std::shared_ptr<RemoteQueue>, std::less<>> remote_queues_;
  std::map<std::string, QueueHandlePtr, std::less<>> handles_;  // both of the above
};

}  // namespace mqnode::broker
