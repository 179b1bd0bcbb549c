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

asio::awaitable<void> reply_one(std::shared_ptr<Link> link, std::shared_ptr<asio::steady_timer> timer,
                                nlohmann::json reply) {
  co_await write_message(link->socket, reply);
  timer->cancel();
  asio::error_code ignored;
  link->socket.shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> serve_one(std::shared_ptr<Link> link, PeerHandler handler) {
  auto timer = deadline(link, kPeerTimeout);
  std::string error;
  auto request = co_await read_message(link->socket, error);
  if (!request) co_return;
  // The handler may answer later; the reply is written from its callback.
  handler(link->peer, *request, [link, timer](nlohmann::json reply) {
    auto ex = link->socket.get_executor();
    asio::co_spawn(ex, reply_one(link, timer, std::move(reply)), asio::detached);
  });
}

asio::awaitable<void> call_one(std::shared_ptr<Link> link, nlohmann::json request, std::chrono::milliseconds timeout,
                               PeerDone done) {
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
  done(std::move(reply), {});
}

}  // namespace

void serve_peer(Links& links, PeerHandler handler) {
  if (!handler) {
    links.on_accept(Purpose::Peer, nullptr);
    return;
  }
  links.on_accept(Purpose::Peer, [handler](Link link) {
    auto l = std::make_shared<Link>(std::move(link));
    auto ex = l->socket.get_executor();
    asio::co_spawn(ex, serve_one(std::move(l), handler), asio::detached);
  });
}

void peer_call(Links& links, const std::string& address, nlohmann::json request, PeerDone done,
               std::chrono::milliseconds timeout) {
  links.connect(address, Purpose::Peer,
                [request = std::move(request), done = std::move(done), timeout](std::optional<Link> link,
                                                                                std::string error) mutable {
                  if (!link) {
                    done(std::nullopt, std::move(error));
                    return;
                  }
                  auto l = std::make_shared<Link>(std::move(*link));
                  auto ex = l->socket.get_executor();
                  asio::co_spawn(ex, call_one(std::move(l), std::move(request), timeout, std::move(done)),
                                 asio::detached);
                });
}

}  // namespace mqnode::cluster
