// The `disc` role as a core::Module: listeners accepting AMQP connections into a Broker.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include <asio/ip/tcp.hpp>

#include "broker/broker.hpp"
#include "broker/config.hpp"
#include "core/module.hpp"

namespace mqnode::broker {

class BrokerModule final : public core::Module {
 public:
  explicit BrokerModule(core::ModuleContext ctx) : ctx_(std::move(ctx)) {}

  std::string_view name() const override { return "broker"; }
  void configure(core::ConfigNode slice) override;
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

 private:
  asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor);
  void publish_health();
  asio::awaitable<void> housekeeping();

  core::ModuleContext ctx_;
  BrokerConfig cfg_;
  std::unique_ptr<store::Store> store_;  // declared before broker_: outlives it
  std::unique_ptr<Broker> broker_;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors_;
  bool stopping_ = false;
};

}  // namespace mqnode::broker
