#include "lb/lb_module.hpp"

#include <algorithm>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "core/events.hpp"
#include "lb/stats.hpp"

namespace mqnode::lb {

using namespace std::chrono_literals;

// ---- frontend --------------------------------------------------------------------------

void Frontend::init(asio::io_context& io, const core::Logger& log) {
  log_ = &log;
  slot_ = std::make_unique<asio::steady_timer>(io);
}

void Frontend::start(asio::io_context& io, const core::Logger& log) {
  init(io, log);
  std::vector<Listener> ls;
  for (const auto& b : cfg_.binds)
    ls.push_back({b.to_string(), core::listen(io, b, fmt::format("/lb/frontends, \"{}\"", cfg_.name))});
  set_listeners(std::move(ls));
}

void Frontend::set_listeners(std::vector<Listener> next) {
  for (auto& old : listeners_) {
    bool kept = std::any_of(next.begin(), next.end(), [&](const Listener& l) { return l.acceptor == old.acceptor; });
    if (kept) continue;
    asio::error_code ec;
    auto ep = old.acceptor->local_endpoint(ec);
    log_->info("frontend {} stopped listening on {}:{}", cfg_.name, ep.address().to_string(), ep.port());
    old.acceptor->close(ec);
  }
  for (auto& l : next) {
    bool had = std::any_of(listeners_.begin(), listeners_.end(), [&](const Listener& o) { return o.acceptor == l.acceptor; });
    if (had) continue;
    log_->info("frontend {} listening on {}:{} backend={}", cfg_.name, l.acceptor->local_endpoint().address().to_string(),
               l.acceptor->local_endpoint().port(), backend_->name());
    spawn_accept_loop(l.acceptor);
  }
  listeners_ = std::move(next);
}

void Frontend::reconfigure(const FrontendConfig& cfg, std::shared_ptr<Backend> backend) {
  cfg_ = cfg;
  backend_ = std::move(backend);
  if (slot_) slot_->cancel();  // a raised maxconn frees waiting accept loops
}

void Frontend::spawn_accept_loop(const AcceptorPtr& acc) {
  auto self = shared_from_this();
  asio::co_spawn(acc->get_executor(), [self, acc] { return self->accept_loop(acc); }, asio::detached);
}

void Frontend::stop() {
  stopping_ = true;
  for (auto& l : listeners_) {
    asio::error_code ec;
    l.acceptor->close(ec);
  }
  if (slot_) slot_->cancel();
}

void Frontend::release() {
  if (slot_) slot_->cancel_one();
}

std::vector<asio::ip::tcp::endpoint> Frontend::local_endpoints() const {
  std::vector<asio::ip::tcp::endpoint> out;
  for (const auto& l : listeners_) {
    asio::error_code ec;
    out.push_back(l.acceptor->local_endpoint(ec));
  }
  return out;
}

asio::awaitable<void> Frontend::accept_loop(AcceptorPtr acc) {
  asio::error_code ec;
  asio::steady_timer backoff(acc->get_executor());
  // An acceptor closed by a reload (bind removed) or by stop() ends its loop.
  while (!stopping_ && acc->is_open()) {
    if (stats.scur >= cfg_.maxconn && cfg_.overflow == OverflowMode::Queue) {
      // Leave new connections in the kernel's accept queue until a session ends.
      ++stats.queued;
      ++stats.qcur;
      if (stats.qcur > stats.qmax) stats.qmax = stats.qcur;
      while (stats.scur >= cfg_.maxconn && cfg_.overflow == OverflowMode::Queue && !stopping_ && acc->is_open()) {
        slot_->expires_at(asio::steady_timer::time_point::max());
        co_await slot_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      --stats.qcur;
      if (stopping_ || !acc->is_open()) break;
    }
    asio::ip::tcp::socket sock(acc->get_executor());
    co_await acc->async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_ || !acc->is_open()) break;
    if (ec) {
      log_->warn("accept failed frontend={} error=\"{}\"", cfg_.name, ec.message());
      backoff.expires_after(100ms);
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (stats.scur >= cfg_.maxconn) {
      ++stats.dreq;
      log_->warn("connection refused frontend={} maxconn={} reached", cfg_.name, cfg_.maxconn);
      continue;  // closed as it goes out of scope
    }
    ++stats.stot;
    if (++stats.scur > stats.smax) stats.smax = stats.scur;
    auto s = std::make_shared<ProxySession>(lb_, shared_from_this(), std::move(sock), lb_.next_session_id());
    lb_.add_session(s);
    s->start();
  }
}

// ---- module ----------------------------------------------------------------------------

LbModule::LbModule(core::ModuleContext ctx) : ctx_(std::move(ctx)), log_(ctx_.log) {}

LbModule::~LbModule() {
  if (events_sub_) ctx_.events.unsubscribe(events_sub_);
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
  publish_health();
}

std::unique_ptr<core::http::Server> LbModule::make_stats_listener(const StatsConfig& cfg) {
  auto router = std::make_shared<core::http::Router>();
  add_stats_routes(*router, *this, cfg.uri);
  auto http = std::make_unique<core::http::Server>(ctx_.io, log_.child("stats"), router);
  try {
    http->listen(cfg.bind.resolve());
  } catch (const std::system_error& e) {
    http->stop();
    throw std::runtime_error(
        fmt::format("cannot listen on {} (/lb/stats/bind): {}", cfg.bind.to_string(), e.code().message()));
  }
  auto ep = http->local_endpoint();
  log_.info("stats on http://{}:{}{}", ep.address().to_string(), ep.port(), cfg.uri);
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

bool LbModule::reload(core::ConfigNode slice) {
  // 1. Validate everything; nothing has changed if this throws.
  auto next = std::make_shared<const LbConfig>(parse_lb_config(std::move(slice)));
  if (stopping_ || !buffers_) return true;
  const LbConfig& old = *cfg_;
  // 2. Bind the new addresses before touching anything, so a bind failure changes nothing.
  //    Addresses a frontend of the same name already listens on keep their acceptor.
  std::vector<std::vector<Frontend::Listener>> listeners(next->frontends.size());
  std::vector<std::pair<std::size_t, core::Endpoint>> deferred;  // held by another frontend now
  auto find_fe = [&](const std::string& name) -> std::shared_ptr<Frontend> {
    for (auto& f : frontends_)
      if (f->name() == name) return f;
    return nullptr;
  };
  auto held_elsewhere = [&](const std::string& bind, const std::string& fe_name) {
    for (auto& f : frontends_)
      for (auto& l : f->listeners())
        if (l.bind == bind && f->name() != fe_name) return true;
    return false;
  };
  std::unique_ptr<core::http::Server> new_http;
  try {
    for (std::size_t i = 0; i < next->frontends.size(); ++i) {
      const auto& fc = next->frontends[i];
      auto cur = find_fe(fc.name);
      for (const auto& b : fc.binds) {
        auto key = b.to_string();
        const Frontend::Listener* have = nullptr;
        if (cur)
          for (auto& l : cur->listeners())
            if (l.bind == key) have = &l;
        if (have) listeners[i].push_back(*have);
        else if (held_elsewhere(key, fc.name)) deferred.emplace_back(i, b);
        else listeners[i].push_back({key, core::listen(ctx_.io, b, fmt::format("/lb/frontends/{}/bind", i))});
      }
    }
    // The stats listener moves (or starts) here too, so a bind failure changes nothing.
    if (next->stats.enabled && (!http_ || next->stats.bind.to_string() != old.stats.bind.to_string()))
      new_http = make_stats_listener(next->stats);
  } catch (const std::exception&) {
    for (std::size_t i = 0; i < listeners.size(); ++i)
      for (auto& l : listeners[i]) {
        auto cur = find_fe(next->frontends[i].name);
        bool kept = false;
        if (cur)
          for (auto& o : cur->listeners()) kept |= o.acceptor == l.acceptor;
        asio::error_code ec;
        if (!kept) l.acceptor->close(ec);
      }
    throw;
  }
  // 3. Apply. Settings that need a restart are reported and kept.
  if (next->buffer_size != old.buffer_size)
    log_.warn("reload: /lb/buffer_size changes at the next restart (keeping {})", old.buffer_size);
  // Stats: the old listener closes (its HTTP connections only; proxied sessions are not
  // its business), a changed uri gets new routes on the listener that stays.
  if (new_http || !next->stats.enabled) {
    if (http_) {
      http_->stop();
      log_.info("reload: stats listener on {} closed", old.stats.bind.to_string());
    }
    http_ = std::move(new_http);
  } else if (http_ && next->stats.uri != old.stats.uri) {
    auto router = std::make_shared<core::http::Router>();
    add_stats_routes(*router, *this, next->stats.uri);
    http_->set_router(router);
    log_.info("reload: stats uri is now {}", next->stats.uri);
  }
  auto now = Clock::now();
  stop_checks();
  std::vector<std::shared_ptr<Backend>> backends;
  for (const auto& bc : next->backends) {
    auto it = std::find_if(backends_.begin(), backends_.end(), [&](auto& b) { return b->name() == bc.name; });
    if (it != backends_.end()) {
      (*it)->reconfigure(bc, now);
      backends.push_back(*it);
    } else {
      backends.push_back(std::make_shared<Backend>(bc, ++last_iid_, now));
      log_.info("reload: backend {} added", bc.name);
    }
  }
  for (auto& b : backends_)
    if (std::none_of(backends.begin(), backends.end(), [&](auto& n) { return n == b; }))
      log_.info("reload: backend {} removed ({} sessions keep running)", b->name(), b->stats.scur);
  std::vector<std::shared_ptr<Frontend>> frontends;
  for (std::size_t i = 0; i < next->frontends.size(); ++i) {
    const auto& fc = next->frontends[i];
    auto f = find_fe(fc.name);
    if (f) {
      f->reconfigure(fc, backends[fc.backend_index]);
    } else {
      f = std::make_shared<Frontend>(*this, fc, backends[fc.backend_index], ++last_iid_);
      f->init(ctx_.io, log_);
      log_.info("reload: frontend {} added", fc.name);
    }
    frontends.push_back(f);
  }
  for (auto& f : frontends_)
    if (std::none_of(frontends.begin(), frontends.end(), [&](auto& n) { return n == f; })) {
      log_.info("reload: frontend {} removed ({} sessions keep running)", f->name(), f->stats.scur);
      f->stop();
    }
  for (std::size_t i = 0; i < frontends.size(); ++i) frontends[i]->set_listeners(std::move(listeners[i]));
  // Addresses that moved from one frontend to another: free now, bound now.
  for (auto& [i, b] : deferred) {
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
