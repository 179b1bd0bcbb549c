#include "lb/lb_module.hpp"

#include <algorithm>

#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "core/events.hpp"
#include "lb/stats.hpp"
#include "lb/stats_render.hpp"

namespace mqnode::lb {

using namespace std::chrono_literals;

LbModule::LbModule(core::ModuleContext ctx) : ctx_(std::move(ctx)), log_(ctx_.log) {}

LbModule::~LbModule() {
  if (events_sub_) ctx_.events.unsubscribe(events_sub_);
  if (membership_sub_) ctx_.events.unsubscribe(membership_sub_);
}

void LbModule::configure(core::ConfigNode slice) {
  cfg_ = std::make_shared<const LbConfig>(parse_lb_config(std::move(slice)));
}

Backend* LbModule::find_backend(std::string_view name) const {
  for (const auto& b : backends_)
    if (b->name() == name) return b.get();
  return nullptr;
}

void LbModule::start() {
  auto now = Clock::now();
  buffers_ = std::make_unique<BufferPool>(cfg_->buffer_size);
  sweep_timer_ = std::make_unique<asio::steady_timer>(ctx_.io);
  // Proxy ids as HAProxy numbers them: in configuration order, frontends first here.
  std::vector<int> fe_iids;
  for (std::size_t i = 0; i < cfg_->frontends.size(); ++i) fe_iids.push_back(++last_iid_);
  for (const auto& bc : cfg_->backends) backends_.push_back(std::make_shared<Backend>(bc, ++last_iid_, now));
  for (std::size_t i = 0; i < cfg_->frontends.size(); ++i) {
    const auto& fc = cfg_->frontends[i];
    frontends_.push_back(std::make_shared<Frontend>(*this, fc, backends_[fc.backend_index], fe_iids[i]));
  }
  for (auto& f : frontends_) f->start(ctx_.io, log_);
  if (cfg_->stats.enabled) http_ = make_stats_listener(cfg_->stats);
  start_checks();
  events_sub_ = ctx_.events.subscribe_health([this](std::string_view module, const core::Health& h) {
    if (module == "broker") on_broker_health(h);
  });
  if (const auto* h = ctx_.events.last_health("broker")) on_broker_health(*h);
  // The cluster's membership: logged for now; replicated queues drain and follow on it.
  membership_sub_ = ctx_.events.subscribe_membership([this](const core::MembershipEvent& e) {
    log_.info("cluster membership {} node={}", core::kind_name(e.kind), e.node);
  });
  publish_health();
}

std::unique_ptr<core::http::Server> LbModule::make_stats_listener(const StatsConfig& cfg) {
  auto router = std::make_shared<core::http::Router>();
  add_stats_routes(*router, *this, cfg.uri);
  core::http::ServerOptions opts;
  opts.tls = cfg.tls;
  auto http = std::make_unique<core::http::Server>(ctx_.io, log_.child("stats"), router, opts);
  try {
    http->listen(cfg.bind.resolve());
  } catch (const std::system_error& e) {
    http->stop();
    throw std::runtime_error(
        fmt::format("cannot listen on {} (/lb/stats/bind): {}", cfg.bind.to_string(), e.code().message()));
  }
  auto ep = http->local_endpoint();
  log_.info("stats on {}://{}:{}{}", cfg.tls ? "https" : "http", ep.address().to_string(), ep.port(), cfg.uri);
  return http;
}

namespace {
// std::push_heap and friends build a max-heap; this order makes it a min-heap on the time.
bool later(const std::pair<Clock::time_point, uint64_t>& a, const std::pair<Clock::time_point, uint64_t>& b) {
  return a.first > b.first;
}
}  // namespace

void LbModule::schedule(Clock::time_point at, uint64_t session_id) {
  if (stopping_ || !sweep_timer_) return;
  if (deadlines_.size() > 2 * sessions_.size() + 1024) {
    std::erase_if(deadlines_, [this](const auto& e) {
      auto it = sessions_.find(e.second);
      return it == sessions_.end() || it->second->next_check() != e.first;
    });
    std::make_heap(deadlines_.begin(), deadlines_.end(), later);
  }
  deadlines_.emplace_back(at, session_id);
  std::push_heap(deadlines_.begin(), deadlines_.end(), later);
  if (!in_sweep_ && (!sweep_armed_ || at < sweep_at_)) arm_sweep(at);
}

void LbModule::arm_sweep(Clock::time_point at) {
  sweep_at_ = at;
  sweep_armed_ = true;
  sweep_timer_->expires_at(at);
  // A re-arm cancels the pending wait; a handler already queued is recognised as stale.
  sweep_timer_->async_wait([this, gen = ++sweep_gen_](const asio::error_code& ec) {
    if (ec || gen != sweep_gen_) return;
    sweep();
  });
}

void LbModule::sweep() {
  sweep_armed_ = false;
  in_sweep_ = true;
  auto now = Clock::now();
  while (!deadlines_.empty() && deadlines_.front().first <= now) {
    auto [at, id] = deadlines_.front();
    std::pop_heap(deadlines_.begin(), deadlines_.end(), later);
    deadlines_.pop_back();
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second->next_check() != at) continue;  // ended, or stale entry
    auto s = it->second;  // check_deadline may end it
    s->check_deadline(now);
  }
  in_sweep_ = false;
  if (!deadlines_.empty() && !stopping_) arm_sweep(deadlines_.front().first);
}

void LbModule::start_checks() {
  for (auto& b : backends_) {
    Backend* bp = b.get();
    for (const auto& s : b->servers()) {
      if (!s->checked()) continue;
      auto hc = std::make_shared<HealthCheck>(ctx_.io, s, b->config().check,
                                              [this, bp](Server& srv, bool ok) { on_check_result(*bp, srv, ok); });
      checks_.push_back(hc);
    }
  }
  for (auto& hc : checks_) hc->start();
}

void LbModule::stop_checks() {
  for (auto& hc : checks_) hc->stop();
  checks_.clear();
}

namespace {
// The local broker gets no new sessions unless it is healthy: stopping, down, or in a
// resource alarm (Degraded: its publishers are blocked, so new clients are better served
// by another broker; its established sessions stay). Health checks cannot see an alarm.
bool local_broker_unusable(const core::Health& h) {
  return h.state != core::Health::State::Ok;
}
}  // namespace

std::shared_ptr<Frontend> LbModule::find_frontend(std::string_view name) const {
  for (const auto& f : frontends_)
    if (f->name() == name) return f;
  return nullptr;
}

// Addresses a frontend of the same name already listens on keep their acceptor; one held
// by another frontend now is deferred until that one lets it go. On a bind failure the
// acceptors bound here are closed and the error is thrown: nothing has changed.
LbModule::ReloadBinds LbModule::bind_for_reload(const LbConfig& next) {
  ReloadBinds out;
  out.listeners.resize(next.frontends.size());
  auto held_elsewhere = [&](const std::string& bind, const std::string& fe_name) {
    for (auto& f : frontends_)
      for (auto& l : f->listeners())
        if (l.bind == bind && f->name() != fe_name) return true;
    return false;
  };
  try {
    for (std::size_t i = 0; i < next.frontends.size(); ++i) {
      const auto& fc = next.frontends[i];
      auto cur = find_frontend(fc.name);
      for (const auto& b : fc.binds) {
        auto key = b.to_string();
        const Frontend::Listener* have = nullptr;
        if (cur)
          for (auto& l : cur->listeners())
            if (l.bind == key) have = &l;
        if (have) out.listeners[i].push_back(*have);
        else if (held_elsewhere(key, fc.name)) out.deferred.emplace_back(i, b);
        else out.listeners[i].push_back({key, core::listen(ctx_.io, b, fmt::format("/lb/frontends/{}/bind", i))});
      }
    }
    // The stats listener moves (or starts) here too, so a bind failure changes nothing.
    if (next.stats.enabled && (!http_ || next.stats.bind.to_string() != cfg_->stats.bind.to_string()))
      out.http = make_stats_listener(next.stats);
  } catch (const std::exception&) {
    for (std::size_t i = 0; i < out.listeners.size(); ++i)
      for (auto& l : out.listeners[i]) {
        auto cur = find_frontend(next.frontends[i].name);
        bool kept = false;
        if (cur)
          for (auto& o : cur->listeners()) kept |= o.acceptor == l.acceptor;
        asio::error_code ec;
        if (!kept) l.acceptor->close(ec);
      }
    throw;
  }
  return out;
}

// The old listener closes (its HTTP connections only; proxied sessions are not its
// business); a changed uri gets new routes on the listener that stays.
void LbModule::reload_stats(const LbConfig& next, const ReloadPlan& plan, std::unique_ptr<core::http::Server> moved) {
  if (moved || !next.stats.enabled) {
    if (http_) {
      http_->stop();
      log_.info("reload: stats listener on {} closed", cfg_->stats.bind.to_string());
    }
    http_ = std::move(moved);
    return;
  }
  if (http_) http_->set_tls(next.stats.tls);  // files read again: new connections use them
  if (http_ && plan.stats_uri_changed) {
    auto router = std::make_shared<core::http::Router>();
    add_stats_routes(*router, *this, next.stats.uri);
    http_->set_router(router);
    log_.info("reload: stats uri is now {}", next.stats.uri);
  }
}

// Backends kept by name take their new settings and servers; established sessions keep
// the old ones. Returns the backends in <next>'s order.
std::vector<std::shared_ptr<Backend>> LbModule::reload_backends(const LbConfig& next, const ReloadPlan& plan,
                                                                Clock::time_point now) {
  std::vector<std::shared_ptr<Backend>> backends;
  for (const auto& bc : next.backends) {
    auto it = std::find_if(backends_.begin(), backends_.end(), [&](auto& b) { return b->name() == bc.name; });
    if (it != backends_.end()) {
      (*it)->reconfigure(bc, now);
      backends.push_back(*it);
    } else {
      backends.push_back(std::make_shared<Backend>(bc, ++last_iid_, now));
    }
  }
  for (const auto& name : plan.backends.added) log_.info("reload: backend {} added", name);
  for (const auto& name : plan.backends.removed)
    log_.info("reload: backend {} removed ({} sessions keep running)", name, find_backend(name)->stats.scur);
  for (const auto& name : plan.backends.changed) log_.info("reload: backend {} changed", name);
  for (const auto& [backend, d] : plan.servers)
    log_.info("reload: backend {} servers added=[{}] removed=[{}] changed=[{}]", backend, fmt::join(d.added, ","),
              fmt::join(d.removed, ","), fmt::join(d.changed, ","));
  return backends;
}

// Frontends kept by name take their new settings and backend for the sessions they accept
// from now on; removed ones stop accepting. Returns the frontends in <next>'s order.
std::vector<std::shared_ptr<Frontend>> LbModule::reload_frontends(const LbConfig& next, const ReloadPlan& plan,
                                                                  const std::vector<std::shared_ptr<Backend>>& backends) {
  std::vector<std::shared_ptr<Frontend>> frontends;
  for (const auto& fc : next.frontends) {
    auto f = find_frontend(fc.name);
    if (f) {
      f->reconfigure(fc, backends[fc.backend_index]);
    } else {
      f = std::make_shared<Frontend>(*this, fc, backends[fc.backend_index], ++last_iid_);
      f->init(ctx_.io, log_);
    }
    frontends.push_back(f);
  }
  for (const auto& name : plan.frontends.added) log_.info("reload: frontend {} added", name);
  for (const auto& name : plan.frontends.removed) {
    auto f = find_frontend(name);
    log_.info("reload: frontend {} removed ({} sessions keep running)", name, f->stats.scur);
    f->stop();
  }
  for (const auto& name : plan.frontends.changed) log_.info("reload: frontend {} changed", name);
  return frontends;
}

bool LbModule::reload(core::ConfigNode slice) {
  // 1. Validate everything; nothing has changed if this throws.
  auto next = std::make_shared<const LbConfig>(parse_lb_config(std::move(slice)));
  if (stopping_ || !buffers_) return true;
  const ReloadPlan plan = plan_reload(*cfg_, *next);
  // 2. Bind the new addresses before touching anything, so a bind failure changes nothing.
  ReloadBinds binds = bind_for_reload(*next);
  // 3. Apply. Settings that need a restart are reported and kept.
  if (plan.buffer_size_changed)
    log_.warn("reload: /lb/buffer_size changes at the next restart (keeping {})", cfg_->buffer_size);
  reload_stats(*next, plan, std::move(binds.http));
  auto now = Clock::now();
  stop_checks();
  auto backends = reload_backends(*next, plan, now);
  auto frontends = reload_frontends(*next, plan, backends);
  for (std::size_t i = 0; i < frontends.size(); ++i) frontends[i]->set_listeners(std::move(binds.listeners[i]));
  // Addresses that moved from one frontend to another: free now, bound now.
  for (auto& [i, b] : binds.deferred) {
    try {
      auto ls = frontends[i]->listeners();
      ls.push_back({b.to_string(), core::listen(ctx_.io, b, fmt::format("/lb/frontends/{}/bind", i))});
      frontends[i]->set_listeners(std::move(ls));
    } catch (const std::exception& e) {
      log_.error("reload: {}", e.what());
    }
  }
  backends_ = std::move(backends);
  frontends_ = std::move(frontends);
  cfg_ = next;
  const auto* broker = ctx_.events.last_health("broker");
  for (auto& b : backends_) {
    for (const auto& s : b->servers())
      if (s->config().local && broker) s->set_local_down(local_broker_unusable(*broker));
    b->on_server_change();
    b->dispatch(now);  // a raised maxconn or weight, a new server: queued sessions go now
    b->refresh_state(now);
  }
  start_checks();
  publish_health();
  log_.info("reload: {} frontends, {} backends; established sessions keep their config", frontends_.size(),
            backends_.size());
  return true;
}

void LbModule::on_broker_health(const core::Health& h) {
  bool drain = local_broker_unusable(h);
  for (auto& b : backends_)
    for (const auto& s : b->servers()) {
      if (!s->config().local || s->local_down() == drain) continue;
      bool was_up = s->up();
      s->set_local_down(drain);
      if (drain)
        log_.warn("server {}/{} drained: local broker unhealthy: {}", b->name(), s->name(),
                  h.detail.empty() ? "down" : h.detail);
      else
        log_.info("server {}/{}: local broker healthy again, taking new sessions", b->name(), s->name());
      server_changed(*b, *s, was_up);
    }
}

void LbModule::on_check_result(Backend& b, Server& s, bool ok) {
  bool was_up = s.up();
  s.record_check(ok, Clock::now());
  if (!ok)
    log_.debug("server {}/{} check failed status={} desc=\"{}\" duration_ms={} now={}", b.name(), s.name(),
               s.last_check().status, s.last_check().desc, s.last_check().duration_ms, s.status_word());
  if (s.up() != was_up) server_changed(b, s, was_up);
}

void LbModule::server_changed(Backend& b, Server& s, bool was_up) {
  auto now = Clock::now();
  b.on_server_change();
  b.dispatch(now);
  if (was_up && !s.up()) {
    log_.warn("server {}/{} is DOWN, reason: {}, {} active and {} backup servers left, {} sessions active", b.name(),
              s.name(), s.last_check().desc, b.active_up(), b.backup_up(), s.stats.scur);
    if (b.config().shutdown_sessions_on_down) {
      std::vector<ProxySessionPtr> victims;
      for (auto& [id, sess] : sessions_)
        if (sess->server() == &s) victims.push_back(sess);
      for (auto& v : victims) v->kill("DD");
    }
  } else if (!was_up && s.up()) {
    log_.warn("server {}/{} is UP, {} active and {} backup servers online", b.name(), s.name(), b.active_up(),
              b.backup_up());
  }
  if (b.refresh_state(now)) {
    if (b.up())
      log_.warn("backend {} is UP again", b.name());
    else
      log_.error("backend {} has no server available!", b.name());
  }
  publish_health();
}

void LbModule::publish_health() {
  ctx_.events.publish_health(name(), health());
}

asio::awaitable<void> LbModule::stop() {
  stopping_ = true;
  for (auto& f : frontends_) f->stop();
  stop_checks();
  if (sweep_timer_) sweep_timer_->cancel();
  deadlines_.clear();
  if (http_) http_->stop();
  publish_health();
  auto sessions = sessions_;
  if (!sessions.empty()) log_.info("closing {} proxied sessions", sessions.size());
  for (auto& [id, s] : sessions) s->kill("KD");
  // Let the sessions' coroutines run their bookkeeping (and session log lines).
  asio::steady_timer t(ctx_.io);
  asio::error_code ec;
  for (int i = 0; i < 50 && !sessions_.empty(); ++i) {
    t.expires_after(10ms);
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

core::Health LbModule::health() const {
  if (stopping_) return {core::Health::State::Down, "stopping"};
  if (backends_.empty() && cfg_ && !cfg_->backends.empty()) return {core::Health::State::Down, "not started"};
  std::string down, degraded;
  for (const auto& b : backends_) {
    if (!b->up()) {
      down += (down.empty() ? "" : ", ") + b->name();
      continue;
    }
    for (const auto& s : b->servers())
      if (!s->backup() && !s->in_rotation()) {
        degraded += (degraded.empty() ? "" : ", ") + b->name() + "/" + s->name();
      }
  }
  if (!down.empty()) return {core::Health::State::Down, "no server available in backend " + down};
  if (!degraded.empty()) return {core::Health::State::Degraded, "not in rotation: " + degraded};
  return {core::Health::State::Ok, ""};
}

void LbModule::dump(nlohmann::json& out) const {
  auto now = Clock::now();
  auto& fes = out["frontends"] = nlohmann::json::array();
  for (const auto& f : frontends_) {
    nlohmann::json j;
    j["name"] = f->name();
    j["backend"] = f->backend().name();
    j["maxconn"] = f->config().maxconn;
    f->stats.dump(j["stats"]);
    fes.push_back(std::move(j));
  }
  auto& bes = out["backends"] = nlohmann::json::array();
  for (const auto& b : backends_) {
    nlohmann::json j;
    b->dump(j, now);
    bes.push_back(std::move(j));
  }
  out["sessions"] = sessions_.size();
  out["buffers_in_use"] = buffers_ ? buffers_->in_use() : 0;
  out["pipes_in_use"] = pipes_.in_use();
  out["spliced_bytes"] = spliced_bytes_;
}

void LbModule::metrics(core::MetricsWriter& out) const {
  write_metrics(out, stats_rows(frontends_, backends_, Clock::now(), stopping_));
  out.family("mqnode_lb_spliced_bytes_total", core::MetricsWriter::Type::Counter,
             "Bytes proxied with splice(2) instead of a user-space buffer (both directions).");
  out.sample(static_cast<double>(spliced_bytes_));
  out.family("mqnode_lb_pipes_in_use", core::MetricsWriter::Type::Gauge, "Pipes held by byte pumps now.");
  out.sample(static_cast<double>(pipes_.in_use()));
}

std::vector<asio::ip::tcp::endpoint> LbModule::frontend_endpoints() const {
  std::vector<asio::ip::tcp::endpoint> out;
  for (const auto& f : frontends_)
    for (auto& e : f->local_endpoints()) out.push_back(e);
  return out;
}

}  // namespace mqnode::lb
