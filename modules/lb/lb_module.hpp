// The `lb` role as a core::Module: frontends accepting TCP connections into proxy
// sessions, backends with health-checked servers, the stats/runtime HTTP listener, and
// the view of the local broker's health from the EventBus ("broker" down or stopping →
// its `local` servers are drained).
#pragma once

#include <map>
#include <memory>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "core/http.hpp"
#include "core/module.hpp"
#include "lb/backend.hpp"
#include "lb/config.hpp"
#include "lb/health_check.hpp"
#include "lb/proxy_session.hpp"

namespace mqnode::lb {

class LbModule;

class Frontend {
 public:
  Frontend(LbModule& lb, const FrontendConfig& cfg, Backend& backend, int iid)
      : lb_(lb), cfg_(cfg), backend_(backend), iid_(iid) {}

  const std::string& name() const { return cfg_.name; }
  const FrontendConfig& config() const { return cfg_; }
  Backend& backend() { return backend_; }
  const Backend& backend() const { return backend_; }
  int iid() const { return iid_; }
  LbModule& lb() { return lb_; }

  void start(asio::io_context& io, const core::Logger& log);
  void stop();
  // A session of this frontend ended: wakes an accept loop waiting for a slot.
  void release();
  std::vector<asio::ip::tcp::endpoint> local_endpoints() const;

  FrontendStats stats;

 private:
  asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acc);

  LbModule& lb_;
  FrontendConfig cfg_;
  Backend& backend_;
  int iid_;
  const core::Logger* log_ = nullptr;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors_;
  std::unique_ptr<asio::steady_timer> slot_;  // accept loops wait on it while at maxconn
  bool stopping_ = false;
};

class LbModule final : public core::Module {
 public:
  explicit LbModule(core::ModuleContext ctx);
  ~LbModule() override;

  std::string_view name() const override { return "lb"; }
  void configure(core::ConfigNode slice) override;
  void start() override;
  asio::awaitable<void> stop() override;
  core::Health health() const override;
  void dump(nlohmann::json& out) const override;

  // --- used by frontends, sessions and the stats pages (loop thread) ---
  asio::io_context& io() { return ctx_.io; }
  const core::Logger& log() const { return log_; }
  const LbConfig& config() const { return *cfg_; }
  const std::string& node_name() const { return ctx_.node.name; }
  BufferPool& buffers() { return *buffers_; }
  uint64_t next_session_id() { return ++last_session_id_; }
  void add_session(const ProxySessionPtr& s) { sessions_.emplace(s->id(), s); }
  void remove_session(uint64_t id) { sessions_.erase(id); }
  std::size_t session_count() const { return sessions_.size(); }
  const std::vector<std::unique_ptr<Frontend>>& frontends() const { return frontends_; }
  const std::vector<std::unique_ptr<Backend>>& backends() const { return backends_; }
  Backend* find_backend(std::string_view name) const;

  // Applies a change of a server's admin state/weight (runtime API) or check result:
  // rebalances, logs transitions, kills sessions if configured, republishes health.
  void server_changed(Backend& b, Server& s, bool was_up);
  void on_check_result(Backend& b, Server& s, bool ok);

  // Bound addresses of the frontends / stats listener (port 0 resolves here).
  std::vector<asio::ip::tcp::endpoint> frontend_endpoints() const;

 private:
  void on_broker_health(const core::Health& h);
  void publish_health();

  core::ModuleContext ctx_;
  core::Logger log_;
  std::shared_ptr<const LbConfig> cfg_;
  std::vector<std::unique_ptr<Backend>> backends_;
  std::vector<std::unique_ptr<Frontend>> frontends_;
  std::vector<HealthCheckPtr> checks_;
  std::unique_ptr<BufferPool> buffers_;
  std::map<uint64_t, ProxySessionPtr> sessions_;
  std::unique_ptr<core::http::Server> http_;
  uint64_t last_session_id_ = 0;
  int events_sub_ = 0;
  bool stopping_ = false;
};

}  // namespace mqnode::lb
