#include "lb/lb_module.hpp"

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

void Frontend::start(asio::io_context& io, const core::Logger& log) {
  log_ = &log;
  slot_ = std::make_unique<asio::steady_timer>(io);
  for (const auto& b : cfg_.binds) {
    auto acc = core::listen(io, b, fmt::format("/lb/frontends, \"{}\"", cfg_.name));
    log.info("frontend {} listening on {}:{} backend={}", cfg_.name, acc->local_endpoint().address().to_string(),
             acc->local_endpoint().port(), backend_.name());
    asio::co_spawn(io, accept_loop(*acc), asio::detached);
    acceptors_.push_back(std::move(acc));
  }
}

void Frontend::stop() {
  stopping_ = true;
  for (auto& a : acceptors_) {
    asio::error_code ec;
    a->close(ec);
  }
  if (slot_) slot_->cancel();
}

void Frontend::release() {
  if (slot_) slot_->cancel_one();
}

std::vector<asio::ip::tcp::endpoint> Frontend::local_endpoints() const {
  std::vector<asio::ip::tcp::endpoint> out;
  for (const auto& a : acceptors_) {
    asio::error_code ec;
    out.push_back(a->local_endpoint(ec));
  }
  return out;
}

asio::awaitable<void> Frontend::accept_loop(asio::ip::tcp::acceptor& acc) {
  asio::error_code ec;
  asio::steady_timer backoff(acc.get_executor());
  while (!stopping_) {
    if (stats.scur >= cfg_.maxconn && cfg_.overflow == OverflowMode::Queue) {
      // Leave new connections in the kernel's accept queue until a session ends.
      ++stats.queued;
      ++stats.qcur;
      if (stats.qcur > stats.qmax) stats.qmax = stats.qcur;
      while (stats.scur >= cfg_.maxconn && !stopping_) {
        slot_->expires_at(asio::steady_timer::time_point::max());
        co_await slot_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      --stats.qcur;
      if (stopping_) break;
    }
    asio::ip::tcp::socket sock(acc.get_executor());
    co_await acc.async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) break;
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
    auto s = std::make_shared<ProxySession>(lb_, *this, std::move(sock), lb_.next_session_id());
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
  // Proxy ids as HAProxy numbers them: in configuration order, frontends first here.
  int iid = 0;
  std::vector<int> fe_iids;
  for (std::size_t i = 0; i < cfg_->frontends.size(); ++i) fe_iids.push_back(++iid);
  for (const auto& bc : cfg_->backends) backends_.push_back(std::make_unique<Backend>(bc, ++iid, now));
  for (std::size_t i = 0; i < cfg_->frontends.size(); ++i) {
    const auto& fc = cfg_->frontends[i];
    frontends_.push_back(std::make_unique<Frontend>(*this, fc, *backends_[fc.backend_index], fe_iids[i]));
  }
  for (auto& b : backends_) {
    Backend* bp = b.get();
    for (const auto& s : b->servers()) {
      if (!s->checked()) continue;
      auto hc = std::make_shared<HealthCheck>(ctx_.io, *s, b->config().check,
                                              [this, bp](Server& srv, bool ok) { on_check_result(*bp, srv, ok); });
      checks_.push_back(hc);
    }
  }
  for (auto& f : frontends_) f->start(ctx_.io, log_);
  if (cfg_->stats.enabled) {
    auto router = std::make_shared<core::http::Router>();
    add_stats_routes(*router, *this);
    http_ = std::make_unique<core::http::Server>(ctx_.io, log_.child("stats"), router);
    try {
      http_->listen(cfg_->stats.bind.resolve());
    } catch (const std::system_error& e) {
      throw std::runtime_error(fmt::format("cannot listen on {} (/lb/stats/bind): {}", cfg_->stats.bind.to_string(),
                                           e.code().message()));
    }
    auto ep = http_->local_endpoint();
    log_.info("stats on http://{}:{}{}", ep.address().to_string(), ep.port(), cfg_->stats.uri);
  }
  for (auto& hc : checks_) hc->start();
  events_sub_ = ctx_.events.subscribe_health([this](std::string_view module, const core::Health& h) {
    if (module == "broker") on_broker_health(h);
  });
  if (const auto* h = ctx_.events.last_health("broker")) on_broker_health(*h);
  publish_health();
}

void LbModule::on_broker_health(const core::Health& h) {
  bool down = h.state == core::Health::State::Down;
  for (auto& b : backends_)
    for (const auto& s : b->servers()) {
      if (!s->config().local || s->local_down() == down) continue;
      bool was_up = s->up();
      s->set_local_down(down);
      log_.info("server {}/{} local broker {}: {}", b->name(), s->name(), down ? "down" : "up",
                down ? (h.detail.empty() ? "down" : h.detail) : "taking new sessions again");
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
  for (auto& hc : checks_) hc->stop();
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
}

std::vector<asio::ip::tcp::endpoint> LbModule::frontend_endpoints() const {
  std::vector<asio::ip::tcp::endpoint> out;
  for (const auto& f : frontends_)
    for (auto& e : f->local_endpoints()) out.push_back(e);
  return out;
}

}  // namespace mqnode::lb
