#include "cluster/peer.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

namespace mqnode::cluster {

namespace {

using asio::ip::tcp;

// One frame's payload decoded as CBOR; nullopt and <error> on I/O or bad bytes.
asio::awaitable<std::optional<nlohmann::json>> read_message(tcp::socket& sock, std::string& error) {
  uint8_t header[kFrameHeaderSize];
  asio::error_code ec;
  co_await asio::async_read(sock, asio::buffer(header), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    error = ec == asio::error::operation_aborted ? "timed out" : ec.message();
    co_return std::nullopt;
  }
  const std::size_t n = (std::size_t{header[0]} << 24) | (std::size_t{header[1]} << 16) |
                        (std::size_t{header[2]} << 8) | header[3];
  if (n > kMaxPeerFrame) {
    error = fmt::format("peer message of {} bytes is over the limit", n);
    co_return std::nullopt;
  }
  std::vector<uint8_t> payload(n);
  co_await asio::async_read(sock, asio::buffer(payload), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    error = ec == asio::error::operation_aborted ? "timed out" : ec.message();
    co_return std::nullopt;
  }
  auto j = nlohmann::json::from_cbor(payload, true, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    error = "peer message is not a CBOR map";
    co_return std::nullopt;
  }
  co_return j;
}

asio::awaitable<asio::error_code> write_message(tcp::socket& sock, const nlohmann::json& msg) {
  std::vector<uint8_t> out;
  append_frame(out, nlohmann::json::to_cbor(msg));
  asio::error_code ec;
  co_await asio::async_write(sock, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
  co_return ec;
}

// Closes the link's socket when <timeout> passes first: pending reads end with an error.
std::shared_ptr<asio::steady_timer> deadline(const std::shared_ptr<Link>& link, std::chrono::milliseconds timeout) {
  auto t = std::make_shared<asio::steady_timer>(link->socket.get_executor(), timeout);
  t->async_wait([link](const asio::error_code& ec) {
    if (ec) return;
    asio::error_code ignored;
    link->socket.close(ignored);
  });
  return t;
}

// A served link and what serves it. <links>: the handler is valid while they are not
// stopped (its owner unregisters it and stops them together).
struct Served {
  std::shared_ptr<Link> link;
  std::weak_ptr<Links> links;
  PeerHandler handler;
};

asio::awaitable<void> serve_one(Served s, std::chrono::milliseconds wait);

// Writes <reply>, then waits on the same link for the caller's next request.
asio::awaitable<void> reply_one(Served s, nlohmann::json reply) {
  auto timer = deadline(s.link, kPeerTimeout);
  const asio::error_code ec = co_await write_message(s.link->socket, reply);
  timer->cancel();
  if (!ec) co_await serve_one(std::move(s), kPeerIdle);
}

asio::awaitable<void> serve_one(Served s, std::chrono::milliseconds wait) {
  auto timer = deadline(s.link, wait);
  std::string error;
  auto request = co_await read_message(s.link->socket, error);
  timer->cancel();
  if (!request) co_return;  // the caller closed it, or it idled out: nothing to say
  auto links = s.links.lock();
  if (!links || links->stopped()) co_return;
  // The handler may answer later; the reply is written from its callback.
  s.handler(s.link->peer, *request, [s](nlohmann::json reply) {
    auto ex = s.link->socket.get_executor();
    asio::co_spawn(ex, reply_one(s, std::move(reply)), asio::detached);
  });
}

// <done> gets the reply; the link then goes back to <links>' parking for the next call.
asio::awaitable<void> call_one(std::weak_ptr<Links> links, std::string address, std::shared_ptr<Link> link,
                               nlohmann::json request, std::chrono::milliseconds timeout, PeerDone done) {
  auto timer = deadline(link, timeout);
  asio::error_code ec = co_await write_message(link->socket, request);
  if (ec) {
    timer->cancel();
    done(std::nullopt, fmt::format("sending to {}: {}", link->peer.name, ec.message()));
    co_return;
  }
  std::string error;
  auto reply = co_await read_message(link->socket, error);
  timer->cancel();
  if (!reply) {
    done(std::nullopt, fmt::format("no reply from {}: {}", link->peer.name, error));
    co_return;
  }
  if (auto l = links.lock()) l->park(address, std::move(*link));
  done(std::move(reply), {});
}

}  // namespace

void serve_peer(Links& links, PeerHandler handler) {
  if (!handler) {
    links.on_accept(Purpose::Peer, nullptr);
    return;
  }
  std::weak_ptr<Links> weak = links.shared_from_this();
  links.on_accept(Purpose::Peer, [weak, handler](Link link) {
    auto l = std::make_shared<Link>(std::move(link));
    if (auto links = weak.lock()) links->close_on_stop(l);
    auto ex = l->socket.get_executor();
    asio::co_spawn(ex, serve_one(Served{std::move(l), weak, handler}, kPeerTimeout), asio::detached);
  });
}

void peer_call(Links& links, const std::string& address, nlohmann::json request, PeerDone done,
               std::chrono::milliseconds timeout) {
  std::weak_ptr<Links> weak = links.shared_from_this();
  auto call = [weak, address, request = std::move(request), done = std::move(done), timeout](
                  std::optional<Link> link, std::string error) mutable {
    if (!link) {
      done(std::nullopt, std::move(error));
      return;
    }
    auto l = std::make_shared<Link>(std::move(*link));
    auto ex = l->socket.get_executor();
    asio::co_spawn(ex, call_one(weak, std::move(address), std::move(l), std::move(request), timeout, std::move(done)),
                   asio::detached);
  };
  if (auto parked = links.take_parked(address, Purpose::Peer)) return call(std::move(parked), {});
  links.connect(address, Purpose::Peer, std::move(call));
}

}  // namespace mqnode::cluster
