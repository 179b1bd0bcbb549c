// The Catalog: the one path for metadata. Users, vhosts, permissions, policies, runtime
// parameters, exchanges, queues and bindings change only through propose(Change); apply()
// validates and applies a change deterministically (the same changes in the same order
// give the same state on every node) and derives its cascades itself. A single node
// applies at once and persists the change in the store; a cluster plugs a ChangeLog in
// that orders proposals across nodes and makes every node apply them. Loop thread only.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/post.hpp>

#include "broker/auth.hpp"
#include "broker/change.hpp"
#include "broker/policy.hpp"
#include "broker/vhost.hpp"
#include "core/log.hpp"
#include "broker/remote_queue.hpp"
#include "store/store.hpp"

namespace mqnode::broker {

struct BrokerConfig;

using ProposeDone = std::function<void(ChangeResult)>;

// Where proposals go when the catalog is replicated: it orders <change> among every
// node's, every node then calls Catalog::apply with it, and <done> runs on the proposer
// with apply's result — or with an error when the outcome is unknown or refused (no
// majority, leadership lost): never a success that did not happen.
class ChangeLog {
 public:
  virtual ~ChangeLog() = default;
  virtual void submit(const Change& change, ProposeDone done) = 0;
};

// Live state outside the vhosts that a change affects: connections on a deleted vhost or
// of a deleted user are closed (as RabbitMQ does).
class CatalogObserver {
 public:
  virtual ~CatalogObserver() = default;
  virtual void vhost_deleted(const std::string& vhost) = 0;
  virtual void user_deleted(const std::string& user) = 0;
};

// The default exchange and amq.* exchanges cannot be deleted: the 403 a client gets, or ok.
// Channels check it before permissions, as RabbitMQ does.
ChangeResult refuse_exchange_deletion(const std::string& name, const std::string& vhost);

class Catalog {
 public:
  struct Options {
    std::string node;                          // this node's name (exclusive owners)
    store::Store* store = nullptr;             // durable definitions and messages (nullptr: memory only)
    uint64_t queue_ram_bytes = Queue::kDefaultRamWindow;
    std::vector<std::string> loopback_users{"guest"};
    const core::Clock* clock = &core::Clock::steady();  // message TTLs and queue expiry count with it
  };
  Catalog(Options opts, core::Logger log);
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // <log>: replicate proposals through it from now on (nullptr: apply locally).
  void set_change_log(ChangeLog* log) { change_log_ = log; }
  void set_observer(CatalogObserver* o) { observer_ = o; }
  // <homes>: how queues homed on other nodes are reached (nullptr: every queue is local).
  void set_queue_homes(QueueHomes* homes) { queue_homes_ = homes; }
  QueueHomes* queue_homes() const { return queue_homes_; }

  // The one write path. <done> gets the outcome once the change is applied here (and, on a
  // single node that keeps definitions, committed to its store); with no ChangeLog and
  // nothing to store that is before propose returns.
  void propose(Change change, ProposeDone done);
  // propose() as an asio operation (co_await catalog.async_propose(c, asio::use_awaitable));
  // the outcome is posted to the handler's executor, never delivered inside the call.
  template <class Token>
  auto async_propose(Change change, Token&& token) {
    return asio::async_initiate<Token, void(ChangeResult)>(
        [this](auto handler, Change c) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          propose(std::move(c), [h](ChangeResult r) {
            auto ex = asio::get_associated_executor(*h);
            asio::post(ex, [h, r = std::move(r)]() mutable { std::move (*h)(std::move(r)); });
          });
        },
        token, std::move(change));
  }
  // Validates and applies <change>; persists it when this catalog keeps its own
  // definitions (single node). Deterministic: reads nothing but the catalog and <change>.
  ChangeResult apply(const Change& change);

  // Start-up: the config's definitions (applied, not persisted: the file is read at every
  // start, as RabbitMQ's load_definitions) and what the store kept. Config wins.
  void load(const BrokerConfig& cfg, const store::Snapshot* snap);

  const std::string& node() const { return opts_.node; }
  const core::Clock& clock() const { return *opts_.clock; }
  store::Store* store() const { return opts_.store; }
  Vhost* find_vhost(std::string_view name) const;
  const std::map<std::string, std::unique_ptr<Vhost>, std::less<>>& vhosts() const { return vhosts_; }
  const AccessControl& access() const { return access_; }
  const PolicySet& policies() const { return policies_; }
  using ParameterKey = std::tuple<std::string, std::string, std::string>;  // component, vhost, name
  const std::map<ParameterKey, nlohmann::json>& parameters() const { return parameters_; }
  // Users' limits by user ({"max-connections": 10}); a user without any is absent.
  const std::map<std::string, nlohmann::json, std::less<>>& user_limits() const { return user_limits_; }
  // <user>'s limit <name> ("max-connections", "max-channels"); negative: none.
  int64_t user_limit(std::string_view user, std::string_view name) const;
  // True while applied changes are written to the store (Vhost persists through this).
  bool persisting() const { return opts_.store && persist_ && !change_log_; }
  bool replicated() const { return change_log_ != nullptr; }
  bool resetting() const { return resetting_; }

  // A replicated catalog's queues are rebuilt from the raft log (at start_app, from a
  // snapshot) while the persistent messages of those homed here stay in the store: they
  // are held here until the queue's declaration is applied again, which claims them.
  struct StoredMessage {
    uint64_t id = 0;
    uint8_t priority = 0;
    uint64_t body_size = 0;
  };
  void hold_stored_messages(const std::vector<store::MessageRecord>& messages);
  std::vector<StoredMessage> claim_stored_messages(const std::string& vhost, const std::string& queue);
  const core::Logger& log() const { return log_; }

  // The changes that rebuild this catalog's definitions from empty, in an order apply()
  // accepts (vhosts, users, permissions, parameters, policies, then per vhost exchanges,
  // queues, bindings): what a replicated catalog's snapshot holds. The default and amq.*
  // exchanges are left out (every vhost makes them).
  std::vector<Change> definitions() const;
  // Forgets every definition (connections on the vhosts are closed through the observer,
  // consumers cancelled); the store is not touched. Then <changes> are applied in order:
  // a replicated catalog restoring a snapshot.
  void reset(const std::vector<Change>& changes);

 private:
  ChangeResult apply(const DeclareExchange& c);
  ChangeResult apply(const DeleteExchange& c);
  ChangeResult apply(const DeclareQueue& c);
  ChangeResult apply(const DeleteQueue& c);
  ChangeResult apply(const Bind& c);
  ChangeResult apply(const SetPolicy& c);
  ChangeResult apply(const ClearPolicy& c);
  ChangeResult apply(const PutVhost& c);
  ChangeResult apply(const DeleteVhost& c);
  ChangeResult apply(const PutUser& c);
  ChangeResult apply(const DeleteUser& c);
  ChangeResult apply(const SetPermissions& c);
  ChangeResult apply(const ClearPermissions& c);
  ChangeResult apply(const SetParameter& c);
  ChangeResult apply(const ClearParameter& c);
  ChangeResult apply(const SetUserLimits& c);
  // The vhost <name>, or a 404 result naming it.
  Vhost* vhost_of(const std::string& name, ChangeResult& error) const;
  // Users, vhosts, permissions and parameters: the store's definitions table keeps the
  // change itself under (kind, key).
  void persist_definition(const char* kind, const std::string& key, const Change& c);
  void forget_definition(const char* kind, const std::string& key);
  void restore(const store::Snapshot& snap, const PolicySet& config_policies);

  Options opts_;
  core::Logger log_;
  ChangeLog* change_log_ = nullptr;
  CatalogObserver* observer_ = nullptr;
  bool persist_ = true;
  QueueHomes* queue_homes_ = nullptr;
  bool resetting_ = false;
  std::map<std::pair<std::string, std::string>, std::vector<StoredMessage>> held_messages_;  // by vhost, queue
  AccessControl access_;
  PolicySet policies_;
  std::map<ParameterKey, nlohmann::json> parameters_;
  std::map<std::string, nlohmann::json, std::less<>> user_limits_;
  std::map<std::string, std::unique_ptr<Vhost>, std::less<>> vhosts_;
};

}  // namespace mqnode::broker
