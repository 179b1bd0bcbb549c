// The management module: not a role, every node runs it. It serves the HTTP API
// (http_api.hpp) on the control socket <data_dir>/mqnode.sock (mode 0600: access to the
// file is the authentication, as rabbitmqctl's Erlang cookie) for `mqnode ctl`, and on the
// optional TCP listener /management/bind for rabbitmqadmin, dashboards and Prometheus.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio/steady_timer.hpp>

#include "core/endpoint.hpp"
#include "core/http.hpp"
#include "core/tls.hpp"
#include "core/module.hpp"
#include "mgmt/http_api.hpp"
#include "mgmt/rates.hpp"

namespace mqnode::mgmt {

struct MgmtConfig {
  std::optional<core::Endpoint> bind;  // /management/bind; absent: no TCP listener
  std::optional<core::tls::TlsOptions> tls;  // /management/tls: HTTPS on that listener
  // /management/collect_statistics_interval: how often rates are sampled (RabbitMQ's
  // rabbit.collect_statistics_interval), in ms.
  int64_t collect_statistics_interval_ms = 5000;
};

// Throws core::ConfigError naming the JSON path.
MgmtConfig parse_mgmt_config(core::ConfigNode node);

// The control socket of the node whose data dir is <data_dir>.
std::string control_socket_path(const std::string& data_dir);

class MgmtModule final : public core::Module {
 public:
  // <modules>: the role modules whose status and metrics the API shows; <broker>: the
  // broker module among them, or nullptr. All outlive this module (app/ stops it first).
  MgmtModule(core::ModuleContext ctx, std::vector<const core::Module*> modules, broker::BrokerModule* broker);
  ~MgmtModule() override;

  std::string_view name() const override { return "management"; }
  void configure(core::ConfigNode slice) override;
  // Validates the slice and reads the TLS files again (new HTTPS connections use them);
  // true when nothing else changed (the listener is not rebound at run time, so a new
  // bind needs a restart).
  bool reload(core::ConfigNode slice) override;
  void start() override;
  asio::awaitable<void> stop() override;
  core::Health health() const override;
  void dump(nlohmann::json& out) const override;

  // The TCP listener's address (port 0 resolved), if there is one.
  std::optional<asio::ip::tcp::endpoint> tcp_endpoint() const;

 private:
  // <broker>'s AMQPS listeners and this module's HTTPS one.
  std::vector<core::tls::TlsListener> tls_listeners(const broker::BrokerModule* broker) const;
  // Samples the broker's counters every collect_statistics_interval until stopped.
  asio::awaitable<void> sample_rates();

  core::ModuleContext ctx_;
  MgmtConfig cfg_;
  broker::BrokerModule* broker_;
  Rates rates_;
  asio::steady_timer sample_timer_;
  std::shared_ptr<core::tls::TlsContext> tls_;  // HTTPS: swapped in place on reload
  HttpApi api_;
  std::unique_ptr<core::http::Server> control_;
  std::unique_ptr<core::http::Server> tcp_;
  bool stopped_ = false;
};

}  // namespace mqnode::mgmt
