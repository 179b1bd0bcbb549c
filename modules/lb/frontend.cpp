#include "lb/frontend.hpp"

#include <algorithm>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "lb/lb_module.hpp"

namespace mqnode::lb {

using namespace std::chrono_literals;

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

}  // namespace mqnode::lb
