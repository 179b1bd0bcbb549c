#include "cluster/link.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <utility>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

namespace mqnode::cluster {

using asio::ip::tcp;

namespace {
constexpr std::size_t kLimiterPruneAt = 4096;
}  // namespace

bool LogLimiter::allow(const std::string& key, Clock::time_point now, std::size_t& suppressed) {
  if (entries_.size() >= kLimiterPruneAt) {
    std::erase_if(entries_, [&](const auto& kv) { return now - kv.second.last >= interval_; });
  }
  auto [it, fresh] = entries_.try_emplace(key, Entry{now, 0});
  if (!fresh && now - it->second.last < interval_) {
    ++it->second.suppressed;
    return false;
  }
  suppressed = std::exchange(it->second.suppressed, 0);
  it->second.last = now;
  return true;
}

// How a handshake over a socket ended.
struct Links::Outcome {
  enum class Kind { Ok, Refused, Timeout, Io } kind = Kind::Ok;
  HandshakeFailure refused;  // Refused
  std::string io_error;      // Io
};

std::shared_ptr<Links> Links::create(asio::io_context& io, LinkConfig cfg, core::Logger log) {
  return std::shared_ptr<Links>(new Links(io, std::move(cfg), std::move(log)));
}

Links::Links(asio::io_context& io, LinkConfig cfg, core::Logger log)
    : io_(io), cfg_(std::move(cfg)), log_(std::move(log)), limiter_(cfg_.log_interval) {}

void Links::on_accept(Purpose purpose, AcceptHandler handler) {
  if (handler) {
    handlers_[purpose] = std::move(handler);
  } else {
    handlers_.erase(purpose);
  }
}

void Links::listen(const core::Endpoint& bind) {
  acceptor_ = core::listen(io_, bind, "/cluster/bind");
  if (cfg_.self.address.empty()) {
    const auto ep = acceptor_->local_endpoint();
    cfg_.self.address = core::Endpoint{ep.address().to_string(), ep.port()}.to_string();
  }
  asio::co_spawn(io_, [self = shared_from_this()] { return self->accept_loop(); }, asio::detached);
}

tcp::endpoint Links::local_endpoint() const { return acceptor_->local_endpoint(); }

void Links::stop() {
  stopped_ = true;
  asio::error_code ig;
  if (acceptor_) acceptor_->close(ig);
  for (const auto& s : handshaking_) s->close(ig);
  parked_.clear();
  for (const auto& weak : std::exchange(close_on_stop_, {}))
    if (auto link = weak.lock()) link->socket.close(ig);
}

void Links::close_on_stop(std::weak_ptr<Link> link) {
  if (close_on_stop_.size() >= 64) std::erase_if(close_on_stop_, [](const auto& w) { return w.expired(); });
  close_on_stop_.push_back(std::move(link));
}

void Links::park(const std::string& address, Link link) {
  if (stopped_ || !link.socket.is_open()) return;
  auto& idle = parked_[{address, link.purpose}];
  if (idle.size() >= kMaxParked) return;  // the link closes as it goes
  idle.push_back({std::move(link), std::chrono::steady_clock::now()});
}

std::optional<Link> Links::take_parked(const std::string& address, Purpose purpose) {
  auto it = parked_.find({address, purpose});
  if (it == parked_.end()) return std::nullopt;
  auto& idle = it->second;
  const auto now = std::chrono::steady_clock::now();
  while (!idle.empty()) {
    Parked p = std::move(idle.back());
    idle.pop_back();
    if (now - p.since > kParkedFor) continue;
    // A peer that restarted or timed the link out has closed it: a read would see the end
    // (0) or a reset; a live idle link has nothing to read (EAGAIN).
    uint8_t byte;
    const ssize_t n = ::recv(p.link.socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return std::move(p.link);
  }
  parked_.erase(it);
  return std::nullopt;
}

void Links::dump(nlohmann::json& out) const {
#define MQ_DUMP(name) out[#name] = stats_.name;
  MQ_CLUSTER_LINK_STATS(MQ_DUMP)
#undef MQ_DUMP
}

asio::awaitable<void> Links::accept_loop() {
  asio::steady_timer backoff(io_);
  while (!stopped_) {
    auto sock = std::make_shared<tcp::socket>(io_);
    asio::error_code ec;
    co_await acceptor_->async_accept(*sock, asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    if (ec) {
      log_.warn("accept failed bind={} error=\"{}\"", acceptor_->local_endpoint(ec).address().to_string(),
                ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    ++stats_.accepted;
    if (inbound_handshakes_ >= cfg_.max_handshakes) {
      ++stats_.refused_busy;
      std::size_t suppressed = 0;
      if (limiter_.allow("busy", LogLimiter::Clock::now(), suppressed)) {
        log_.warn("link refused reason=\"{} accepted connections are in their handshake already\" action=\"find who "
                  "opens connections to the cluster port without completing a handshake\" suppressed={}",
                  inbound_handshakes_, suppressed);
      }
      continue;  // the socket closes as it goes
    }
    asio::co_spawn(io_, [self = shared_from_this(), sock] { return self->serve(sock); }, asio::detached);
  }
}

asio::awaitable<Links::Outcome> Links::run(std::shared_ptr<tcp::socket> sock, Handshake& h,
                                           std::optional<tcp::endpoint> dial_to) {
  handshaking_.insert(sock);
  // The deadline closes the socket, which ends whichever connect, read or write is pending.
  // A connect is the handshake's first step: a black-holed peer costs handshake_timeout.
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer deadline(io_);
  deadline.expires_after(cfg_.handshake_timeout);
  deadline.async_wait([sock, timed_out](const asio::error_code& e) {
    if (e) return;
    *timed_out = true;
    asio::error_code ig;
    sock->close(ig);
  });
  asio::error_code ec;
  if (dial_to) co_await sock->async_connect(*dial_to, asio::redirect_error(asio::use_awaitable, ec));
  // Every link's traffic is requests and replies: the handshake's last message followed by
  // a request is write-write-read, which Nagle would hold for the peer's delayed ACK (40 ms
  // on every forwarded metadata change).
  if (!ec) sock->set_option(tcp::no_delay(true), ec);
  while (!ec) {
    const auto out = h.take_output();
    if (!out.empty()) co_await asio::async_write(*sock, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    if (ec || h.done() || h.failed()) break;
    // Exactly what the handshake wants: bytes after it belong to whoever gets the socket.
    std::vector<uint8_t> in(h.wanted());
    co_await asio::async_read(*sock, asio::buffer(in), asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) h.feed(in);
  }
  deadline.cancel();
  handshaking_.erase(sock);
  Outcome o;
  if (h.failed()) {
    o.kind = Outcome::Kind::Refused;
    o.refused = h.failure();
  } else if (*timed_out) {
    o.kind = Outcome::Kind::Timeout;
  } else if (ec || !h.done()) {
    o.kind = Outcome::Kind::Io;
    o.io_error = ec ? ec.message() : "closed";
  }
  co_return o;
}

std::string Links::report(const Outcome& o, const std::string& peer, std::string_view direction) {
  std::string reason, action;
  switch (o.kind) {
    case Outcome::Kind::Ok:
      return {};
    case Outcome::Kind::Timeout:
      ++stats_.timeouts;
      reason = fmt::format("no complete handshake within {}ms", cfg_.handshake_timeout.count());
      action = "check that the peer is an mqnode node and that nothing between the nodes holds the connection";
      break;
    case Outcome::Kind::Io:
      ++stats_.io_errors;
      reason = fmt::format("connection lost during the handshake: {}", o.io_error);
      action = "check that the peer is up and reachable";
      break;
    case Outcome::Kind::Refused:
      reason = fmt::format("{}: {}", to_string(o.refused.code), o.refused.detail);
      switch (o.refused.code) {
        case HandshakeError::BadCookie:
          ++stats_.refused_cookie;
          action = fmt::format("copy {} from an existing node of the cluster to every node (mode 0400) and restart it",
                               cfg_.cookie_path);
          break;
        case HandshakeError::VersionMismatch:
          ++stats_.refused_version;
          action = "run the same mqnode version on every node";
          break;
        case HandshakeError::NameClash:
          ++stats_.refused_name_clash;
          action = "give every node its own /node/name";
          break;
        case HandshakeError::Malformed:
          ++stats_.refused_malformed;
          action = "only mqnode nodes should connect to the cluster port; a port scanner needs nothing";
          break;
      }
      break;
  }
  // Keyed by address without the port: a peer that retries comes from a new port each time.
  const auto colon = peer.rfind(':');
  const std::string key = std::string(direction) + " " + peer.substr(0, colon);
  std::size_t suppressed = 0;
  if (limiter_.allow(key, LogLimiter::Clock::now(), suppressed)) {
    log_.warn("link refused direction={} peer={} reason=\"{}\" action=\"{}\" suppressed={}", direction, peer, reason,
              action, suppressed);
  }
  return fmt::format("{} ({})", reason, action);
}

asio::awaitable<void> Links::serve(std::shared_ptr<tcp::socket> sock) {
  asio::error_code ec;
  const auto remote = sock->remote_endpoint(ec);
  const std::string peer = ec ? "unknown" : fmt::format("{}:{}", remote.address().to_string(), remote.port());
  Handshake h = Handshake::accept(cfg_.self, cfg_.cookie, random_nonce());
  ++inbound_handshakes_;
  const Outcome o = co_await run(sock, h, std::nullopt);
  --inbound_handshakes_;
  if (o.kind != Outcome::Kind::Ok) {
    report(o, peer, "in");
    co_return;
  }
  if (stopped_) co_return;
  ++stats_.authenticated;
  auto it = handlers_.find(h.purpose());
  if (it == handlers_.end()) {
    ++stats_.unhandled_purpose;
    log_.warn("link closed peer={} node={} purpose={} reason=\"nothing on this node serves that purpose yet\"", peer,
              h.peer().name, to_string(h.purpose()));
    co_return;
  }
  log_.debug("link up direction=in peer={} node={} id={} purpose={}", peer, h.peer().name, h.peer().id,
             to_string(h.purpose()));
  it->second(Link{std::move(*sock), h.peer(), h.purpose()});
}

void Links::connect(const std::string& address, Purpose purpose, ConnectHandler done) {
  asio::co_spawn(io_, [self = shared_from_this(), address, purpose, done = std::move(done)]() mutable {
    return self->dial(std::move(address), purpose, std::move(done));
  }, asio::detached);
}

asio::awaitable<void> Links::dial(std::string address, Purpose purpose, ConnectHandler done) {
  if (stopped_) {
    done(std::nullopt, "the cluster links are stopped");
    co_return;
  }
  const auto ep = core::parse_endpoint(address);
  if (!ep) {
    done(std::nullopt, fmt::format("cluster address '{}': expected a numeric host:port", address));
    co_return;
  }
  ++stats_.connects;
  auto sock = std::make_shared<tcp::socket>(io_);
  Handshake h = Handshake::initiate(cfg_.self, cfg_.cookie, purpose, random_nonce());
  const Outcome o = co_await run(sock, h, ep->resolve());
  if (o.kind != Outcome::Kind::Ok) {
    done(std::nullopt, report(o, address, "out"));
    co_return;
  }
  if (stopped_) {
    done(std::nullopt, "the cluster links are stopped");
    co_return;
  }
  ++stats_.authenticated;
  log_.debug("link up direction=out peer={} node={} id={} purpose={}", address, h.peer().name, h.peer().id,
             to_string(purpose));
  done(Link{std::move(*sock), h.peer(), purpose}, {});
}

}  // namespace mqnode::cluster
