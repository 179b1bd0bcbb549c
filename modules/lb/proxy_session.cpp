#include "lb/proxy_session.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include "lb/lb_module.hpp"

namespace mqnode::lb {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

std::unique_ptr<char[]> BufferPool::get() {
  ++in_use_;
  if (free_.empty()) return std::make_unique<char[]>(size_);
  auto b = std::move(free_.back());
  free_.pop_back();
  return b;
}

void BufferPool::put(std::unique_ptr<char[]> b) {
  --in_use_;
  if (free_.size() < keep_) free_.push_back(std::move(b));
}

ProxySession::ProxySession(LbModule& lb, Frontend& fe, asio::ip::tcp::socket client, uint64_t id)
    : lb_(lb),
      fe_(fe),
      client_(std::move(client)),
      upstream_(client_.get_executor()),
      timer_(client_.get_executor()),
      id_(id),
      started_(Clock::now()),
      last_activity_(started_) {
  asio::error_code ec;
  auto ep = client_.remote_endpoint(ec);
  if (!ec) {
    peer_addr_ = ep.address();
    peer_ = fmt::format("{}:{}", peer_addr_.to_string(), ep.port());
  }
  const auto& bc = fe_.backend().config();
  idle_ = bc.timeout_tunnel.count() ? bc.timeout_tunnel : std::min(fe_.config().timeout_client, bc.timeout_server);
  connect_deadline_ = started_ + bc.timeout_connect;
}

void ProxySession::start() {
  auto self = shared_from_this();
  asio::co_spawn(client_.get_executor(), [self] { return self->run(); }, asio::detached);
  asio::co_spawn(client_.get_executor(), [self] { return self->watchdog(); }, asio::detached);
}

void ProxySession::close_sockets() {
  closed_ = true;
  asio::error_code ec;
  client_.close(ec);
  upstream_.close(ec);
  timer_.cancel();
}

void ProxySession::kill(const char* code) {
  if (closed_) return;
  term_ = code;
  close_sockets();
}

Clock::time_point ProxySession::deadline() const {
  return phase_ == Phase::Connect ? connect_deadline_ : last_activity_ + idle_;
}

asio::awaitable<void> ProxySession::watchdog() {
  auto self = shared_from_this();
  asio::error_code ec;
  while (!closed_) {
    timer_.expires_at(deadline());
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (closed_) break;
    if (Clock::now() < deadline()) continue;  // activity moved the deadline
    if (phase_ == Phase::Connect) {
      // Ends the pending connect; connect() retries or gives up.
      connect_timed_out_ = true;
      asio::error_code ig;
      upstream_.close(ig);
      connect_deadline_ = Clock::now() + fe_.backend().config().timeout_connect;
    } else {
      term_ = "cD";
      close_sockets();
    }
  }
}

asio::awaitable<bool> ProxySession::connect() {
  Backend& be = fe_.backend();
  const auto& bc = be.config();
  PickContext ctx;
  ctx.client = &peer_addr_;
  Server* failed = nullptr;
  for (int attempt = 0; attempt <= bc.retries && !closed_; ++attempt) {
    Server* s = nullptr;
    if (failed && !bc.redispatch && failed->usable()) {
      s = failed;  // HAProxy retries the same server unless redispatching
    } else {
      ctx.avoid = failed;
      s = be.pick(ctx);
    }
    if (!s) {
      ++be.stats.nosrv;
      term_ = "SC";
      co_return false;
    }
    if (failed) {
      ++be.stats.wretr;
      ++failed->stats.wretr;
      if (s != failed) {
        ++be.stats.wredis;
        ++failed->stats.wredis;
      }
    }
    server_ = s;
    s->session_started(Clock::now());  // counts toward leastconn and maxconn while connecting
    ++be.stats.lbtot;
    connect_deadline_ = Clock::now() + bc.timeout_connect;
    connect_timed_out_ = false;
    timer_.cancel();  // re-arm the watchdog on the new deadline
    asio::error_code ec;
    upstream_ = asio::ip::tcp::socket(client_.get_executor());
    co_await upstream_.async_connect(s->endpoint(), asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !closed_) {
      ++be.stats.stot;
      if (++be.stats.scur > be.stats.smax) be.stats.smax = be.stats.scur;
      co_return true;
    }
    s->session_ended();
    --s->stats.stot;  // only established sessions count as stot, as in HAProxy
    server_ = nullptr;
    if (closed_) co_return false;
    ++s->stats.econ;
    ++be.stats.econ;
    term_ = connect_timed_out_ ? "sC" : "SC";
    lb_.log().debug("connect failed session={} server={}/{} error=\"{}\"", id_, be.name(), s->name(),
                    connect_timed_out_ ? "timeout" : ec.message());
    failed = s;
    ++retries_;
    if (!bc.redispatch && attempt < bc.retries) {
      // HAProxy waits a turn-around second before hitting the same server again.
      asio::steady_timer pause(client_.get_executor());
      pause.expires_after(std::min<Millis>(1000ms, bc.timeout_connect));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  co_return false;
}

asio::awaitable<void> ProxySession::pump(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to, bool from_client) {
  auto& pool = lb_.buffers();
  std::unique_ptr<char[]> buf;
  asio::error_code ec;
  for (;;) {
    if (!buf) {
      // Idle: wait for readability without holding a buffer.
      co_await from.async_wait(asio::socket_base::wait_read, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      buf = pool.get();
    }
    std::size_t n = from.read_some(asio::buffer(buf.get(), pool.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      pool.put(std::move(buf));
      continue;
    }
    if (ec == asio::error::eof) {
      // Half-close: the other side learns that this one has finished sending.
      asio::error_code ig;
      to.shutdown(asio::socket_base::shutdown_send, ig);
      ec = {};
      break;
    }
    if (ec) break;
    last_activity_ = Clock::now();
    co_await asio::async_write(to, asio::buffer(buf.get(), n), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    if (from_client) {
      bytes_in_ += n;
      fe_.stats.bin += n;
      fe_.backend().stats.bin += n;
      server_->stats.bin += n;
    } else {
      bytes_out_ += n;
      fe_.stats.bout += n;
      fe_.backend().stats.bout += n;
      server_->stats.bout += n;
    }
    // A full read means more is probably waiting: keep the buffer and read again.
    if (n < pool.size()) pool.put(std::move(buf));
  }
  if (buf) pool.put(std::move(buf));
  if (ec && !closed_) {
    // A reset or write failure on either side ends both directions.
    if (from_client) {
      term_ = "CD";
      ++server_->stats.cli_abrt;
      ++fe_.backend().stats.cli_abrt;
    } else {
      term_ = "SD";
      ++server_->stats.srv_abrt;
      ++fe_.backend().stats.srv_abrt;
    }
    close_sockets();
  }
}

asio::awaitable<void> ProxySession::run() {
  auto self = shared_from_this();
  asio::error_code ec;
  client_.set_option(asio::ip::tcp::no_delay(true), ec);
  bool ok = co_await connect();
  if (ok) {
    upstream_.set_option(asio::ip::tcp::no_delay(true), ec);
    // read_some after wait_read must never block the loop.
    client_.non_blocking(true, ec);
    upstream_.non_blocking(true, ec);
    phase_ = Phase::Data;
    last_activity_ = Clock::now();
    timer_.cancel();
    co_await (pump(client_, upstream_, true) && pump(upstream_, client_, false));
  }
  phase_ = Phase::Done;
  close_sockets();
  finish();
}

void ProxySession::finish() {
  if (ended_) return;
  ended_ = true;
  auto now = Clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - started_).count();
  --fe_.stats.scur;
  if (server_) {
    server_->session_ended();
    --fe_.backend().stats.scur;  // server_ is set only once connected
  }
  if (lb_.config().log_sessions)
    lb_.log().info("session id={} client={} frontend={} backend={} server={} bytes_in={} bytes_out={} duration_ms={} retries={} term={}",
                   id_, peer_, fe_.name(), fe_.backend().name(), server_ ? server_->name() : "<NOSRV>", bytes_in_,
                   bytes_out_, ms, retries_, term_);
  fe_.release();
  lb_.remove_session(id_);  // may drop the last reference but one (run() holds self)
}

void ProxySession::dump(nlohmann::json& out) const {
  out["id"] = id_;
  out["client"] = peer_;
  out["server"] = server_ ? server_->name() : "";
  out["bytes_in"] = bytes_in_;
  out["bytes_out"] = bytes_out_;
}

}  // namespace mqnode::lb
