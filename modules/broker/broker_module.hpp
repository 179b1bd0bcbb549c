// The `disc` and `ram` roles as a core::Module: listeners accepting AMQP connections into a
// Broker and, with /cluster, the node's cluster membership (its catalog replicated by raft).
// The broker "app" (listeners, connections, raft) can be stopped and started again at run
// time (mqnode ctl stop_app / start_app) while the process, the store and the cluster port
// stay up.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include <asio/ip/tcp.hpp>

#include "broker/broker.hpp"
#include "broker/cluster_member.hpp"
#include "broker/queue_links.hpp"
#include "broker/config.hpp"
#include "core/accept.hpp"
#include "core/cert_expiry.hpp"
#include "core/module.hpp"

namespace mqnode::broker {

class BrokerModule final : public core::Module {
 public:
  // <ram>: a RAM node (needs /cluster): a standby in the cluster's raft group.
  explicit BrokerModule(core::ModuleContext ctx, bool ram = false) : ctx_(std::move(ctx)), ram_(ram) {}
  ~BrokerModule() override;

  std::string_view name() const override { return "broker"; }
  void configure(core::ConfigNode slice) override;
  // SIGHUP: the TLS listeners read their certificate, key and CA files again (new
  // handshakes use them, connections up keep theirs). Anything else changed needs a
  // restart: returns false (app/ says so in the log).
  bool reload(core::ConfigNode slice) override;
  void start() override;
  asio::awaitable<void> stop() override;
  core::Health health() const override;
  void dump(nlohmann::json& out) const override;
  void metrics(core::MetricsWriter& out) const override;

  // The running broker (nullptr before start()): how the management API reaches
  // policies, users and queues.
  Broker* broker() { return broker_.get(); }

  // Bound addresses (port 0 in the config resolves here).
  std::vector<asio::ip::tcp::endpoint> local_endpoints() const;
  // The AMQPS listeners bound now (none while the app is stopped), with their options.
  std::vector<core::tls::TlsListener> tls_listeners() const;

  // Cluster mode: app/ hands the /cluster slice over before start(). Without it the node
  // is a single broker keeping its definitions in the store.
  void set_cluster(cluster::ClusterConfig cfg) { cluster_cfg_ = std::move(cfg); }
  // mqnode ctl's node commands: stop_app, start_app, await_startup, and the cluster's
  // (ClusterMember::command). <done> gets the reply once, on the loop.
  void command(const std::string& op, const nlohmann::json& args, CommandDone done);

 private:
  asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor, uint64_t generation,
                                    const core::tls::TlsContext* tls);
  void publish_health();
  nlohmann::json node_facts() const;  // alarms and AMQP listeners, for cluster_status
  asio::awaitable<void> housekeeping();
  // The broker app: listeners (and raft, in a cluster) up, or down with every connection closed.
  void start_app();
  asio::awaitable<void> stop_app();
  asio::awaitable<void> stop_app_then(CommandDone done);

  core::ModuleContext ctx_;
  BrokerConfig cfg_;
  // Per listener of cfg_: its TLS context, or nullptr for plain AMQP.
  std::vector<core::tls::TlsContextPtr> tls_;
  std::unique_ptr<store::Store> store_;  // declared before broker_: outlives it
  std::unique_ptr<Broker> broker_;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors_;
  bool ram_ = false;
  std::optional<cluster::ClusterConfig> cluster_cfg_;
  std::unique_ptr<ClusterMember> cluster_;
  std::shared_ptr<QueueLinks> queue_links_;  // while the app runs in a cluster
  bool app_running_ = false;
  uint64_t app_generation_ = 0;  // start_app counts; an accept loop of an earlier one ends
  bool stopping_ = false;
  core::FdReserve fd_reserve_;  // refuses connections cleanly when out of descriptors
  std::chrono::steady_clock::time_point fd_warned_at_{};
  uint64_t fd_refused_ = 0;  // since the last log line about it
};

}  // namespace mqnode::broker
