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
#include "lb/frontend.hpp"
#include "lb/health_check.hpp"
#include "lb/proxy_session.hpp"
#include "lb/reload_plan.hpp"

namespace mqnode::lb {

class LbModule final : public core::Module {
 public:
  explicit LbModule(core::ModuleContext ctx);
  ~LbModule() override;

  std::string_view name() const override { return "lb"; }
  void configure(core::ConfigNode slice) override;
  void start() override;
  // SIGHUP: see docs/lb.md "Reload". Throws ConfigError (nothing changed) or
  // std::runtime_error when a new bind address cannot be bound (nothing changed).
  bool reload(core::ConfigNode slice) override;
  asio::awaitable<void> stop() override;
  core::Health health() const override;
  void dump(nlohmann::json& out) const override;
  // mqnode_lb_{frontend,backend,server}_* from the stats rows (also the stats listener's
  // own /metrics).
  void metrics(core::MetricsWriter& out) const override;

  // --- used by frontends, sessions and the stats pages (loop thread) ---
  asio::io_context& io() { return ctx_.io; }
  const core::Logger& log() const { return log_; }
  const LbConfig& config() const { return *cfg_; }
  const std::shared_ptr<const LbConfig>& config_ptr() const { return cfg_; }
  const std::string& node_name() const { return ctx_.node.name; }
  BufferPool& buffers() { return *buffers_; }
  PipePool& pipes() { return pipes_; }
  // Bytes the pumps moved with splice(2) (part of the byte counters, not extra).
  void add_spliced(std::size_t n) { spliced_bytes_ += n; }
  uint64_t next_session_id() { return ++last_session_id_; }
  void add_session(const ProxySessionPtr& s) { sessions_.emplace(s->id(), s); }
  // Session timeouts: one module-wide min-heap of (deadline, session id) and one timer.
  // An entry is only a reminder: when it comes due the session re-checks its current
  // deadline (activity only moves it later) and schedules again or times out. Entries
  // of ended sessions are dropped when due, or compacted away when they pile up.
  void schedule(Clock::time_point at, uint64_t session_id);
  void remove_session(uint64_t id) { sessions_.erase(id); }
  std::size_t session_count() const { return sessions_.size(); }
  const std::vector<std::shared_ptr<Frontend>>& frontends() const { return frontends_; }
  const std::vector<std::shared_ptr<Backend>>& backends() const { return backends_; }
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
  void start_checks();
  void stop_checks();
  // A stats listener for <cfg> (bound, routes for its uri); throws naming /lb/stats/bind.
  std::unique_ptr<core::http::Server> make_stats_listener(const StatsConfig& cfg);
  void arm_sweep(Clock::time_point at);
  void sweep();

  // --- reload, in its order: bind (may throw, nothing changed), then apply ---
  struct ReloadBinds {
    std::vector<std::vector<Frontend::Listener>> listeners;  // per frontend of the new config
    std::vector<std::pair<std::size_t, core::Endpoint>> deferred;  // held by another frontend now
    std::unique_ptr<core::http::Server> http;  // the stats listener at its new address
  };
  std::shared_ptr<Frontend> find_frontend(std::string_view name) const;
  ReloadBinds bind_for_reload(const LbConfig& next);
  void reload_stats(const LbConfig& next, const ReloadPlan& plan, std::unique_ptr<core::http::Server> moved);
  std::vector<std::shared_ptr<Backend>> reload_backends(const LbConfig& next, const ReloadPlan& plan,
                                                        Clock::time_point now);
  std::vector<std::shared_ptr<Frontend>> reload_frontends(const LbConfig& next, const ReloadPlan& plan,
                                                          const std::vector<std::shared_ptr<Backend>>& backends);

  core::ModuleContext ctx_;
  core::Logger log_;
  std::shared_ptr<const LbConfig> cfg_;
  std::vector<std::shared_ptr<Backend>> backends_;
  std::vector<std::shared_ptr<Frontend>> frontends_;
  std::vector<HealthCheckPtr> checks_;
  std::unique_ptr<BufferPool> buffers_;
  PipePool pipes_;
  uint64_t spliced_bytes_ = 0;
  std::map<uint64_t, ProxySessionPtr> sessions_;
  std::vector<std::pair<Clock::time_point, uint64_t>> deadlines_;  // min-heap on the time
  std::unique_ptr<asio::steady_timer> sweep_timer_;
  Clock::time_point sweep_at_{};
  uint64_t sweep_gen_ = 0;
  bool sweep_armed_ = false, in_sweep_ = false;
  std::unique_ptr<core::http::Server> http_;
  uint64_t last_session_id_ = 0;
  int events_sub_ = 0;
  int membership_sub_ = 0;
  int last_iid_ = 0;
  bool stopping_ = false;
};

}  // namespace mqnode::lb
