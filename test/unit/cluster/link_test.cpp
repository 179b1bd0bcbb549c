#include <string>

#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <doctest/doctest.h>

#include "cluster/link.hpp"
#include "support/temp_store.hpp"

using namespace mqnode::cluster;
using mqnode::test::quiet_log;
using mqnode::test::run_until;
using namespace std::chrono_literals;

namespace {

LinkConfig config_of(std::string name, uint64_t id, std::string cookie) {
  LinkConfig c;
  c.self = {std::move(name), id, "127.0.0.1:1"};
  c.cookie = std::move(cookie);
  c.cookie_path = "/var/lib/mqnode/.cookie";
  return c;
}

std::shared_ptr<Links> listening(asio::io_context& io, LinkConfig cfg) {
  auto links = Links::create(io, std::move(cfg), quiet_log());
  links->listen(*mqnode::core::parse_endpoint("127.0.0.1:0"));
  return links;
}

std::string address_of(const Links& l) { return "127.0.0.1:" + std::to_string(l.local_endpoint().port()); }

}  // namespace

TEST_CASE("links: an authenticated socket reaches the handler for its purpose, with what follows the handshake") {
  asio::io_context io;
  auto b = listening(io, config_of("mq2", 2, "COOKIE"));
  std::optional<Link> accepted;
  b->on_accept(Purpose::Raft, [&](Link l) { accepted.emplace(std::move(l)); });
  auto a = Links::create(io, config_of("mq1", 1, "COOKIE"), quiet_log());
  std::optional<Link> connected;
  std::string error = "pending";
  a->connect(address_of(*b), Purpose::Raft, [&](std::optional<Link> l, std::string e) {
    error = std::move(e);
    if (l) {
      connected.emplace(std::move(*l));
      // Raft writes as soon as it has the socket: nothing of it may be lost to the handshake.
      asio::write(connected->socket, asio::buffer(std::string_view("raft bytes")));
    }
  });
  run_until(io, [&] { return connected && accepted; });
  CHECK(error.empty());
  CHECK(connected->peer.name == "mq2");
  CHECK(connected->peer.id == 2);
  CHECK(accepted->peer.name == "mq1");
  CHECK(accepted->peer.address == "127.0.0.1:1");
  CHECK(accepted->purpose == Purpose::Raft);
  std::string got(10, '\0');
  asio::read(accepted->socket, asio::buffer(got));
  CHECK(got == "raft bytes");
  CHECK(b->stats().authenticated == 1);
  CHECK(a->stats().authenticated == 1);
  b->stop();
}

TEST_CASE("links: a wrong cookie is refused on both sides, and the error says which file to copy") {
  asio::io_context io;
  auto b = listening(io, config_of("mq2", 2, "COOKIE"));
  bool handed = false;
  b->on_accept(Purpose::Raft, [&](Link) { handed = true; });
  auto a = Links::create(io, config_of("mq1", 1, "OTHER"), quiet_log());
  std::string error;
  bool done = false;
  a->connect(address_of(*b), Purpose::Raft, [&](std::optional<Link> l, std::string e) {
    CHECK_FALSE(l);
    error = std::move(e);
    done = true;
  });
  run_until(io, [&] { return done && b->stats().refused_cookie == 1; });
  CHECK(error.find("cookie mismatch") != std::string::npos);
  CHECK(error.find("copy /var/lib/mqnode/.cookie from an existing node") != std::string::npos);
  CHECK(a->stats().refused_cookie == 1);
  CHECK_FALSE(handed);
  b->stop();
}

TEST_CASE("links: a silent peer is dropped at the deadline, an unknown purpose is closed, stop() ends it all") {
  asio::io_context io;
  auto cfg = config_of("mq2", 2, "COOKIE");
  cfg.handshake_timeout = 200ms;
  auto b = listening(io, cfg);
  asio::ip::tcp::socket silent(io);
  silent.connect(b->local_endpoint());
  run_until(io, [&] { return b->stats().timeouts == 1; });

  auto a = Links::create(io, config_of("mq1", 1, "COOKIE"), quiet_log());
  bool connected = false;
  a->connect(address_of(*b), Purpose::Peer, [&](std::optional<Link> l, std::string) { connected = l.has_value(); });
  run_until(io, [&] { return b->stats().unhandled_purpose == 1; });
  CHECK(connected);

  asio::ip::tcp::socket pending(io);
  pending.connect(b->local_endpoint());
  run_until(io, [&] { return b->stats().accepted == 3; });
  const auto address = address_of(*b);
  b->stop();
  std::string refusal;
  a->connect(address, Purpose::Raft, [&](std::optional<Link>, std::string e) { refusal = std::move(e); });
  run_until(io, [&] { return a->stats().io_errors == 1 && b->stats().io_errors == 1 && !refusal.empty(); });
  CHECK(refusal.find("connection") != std::string::npos);
}

TEST_CASE("links: connections beyond max_handshakes are closed at once") {
  asio::io_context io;
  auto cfg = config_of("mq2", 2, "COOKIE");
  cfg.max_handshakes = 1;
  auto b = listening(io, cfg);
  asio::ip::tcp::socket silent(io), flood(io);
  silent.connect(b->local_endpoint());
  run_until(io, [&] { return b->stats().accepted == 1; });
  flood.connect(b->local_endpoint());
  run_until(io, [&] { return b->stats().refused_busy == 1; });
  char byte;
  asio::error_code ec;
  flood.read_some(asio::buffer(&byte, 1), ec);
  CHECK(ec == asio::error::eof);
  b->stop();
}

TEST_CASE("links: a bad address is an error, not a crash") {
  asio::io_context io;
  auto a = Links::create(io, config_of("mq1", 1, "COOKIE"), quiet_log());
  std::string error;
  a->connect("mq2.example:25672", Purpose::Raft, [&](std::optional<Link>, std::string e) { error = std::move(e); });
  run_until(io, [&] { return !error.empty(); });
  CHECK(error.find("mq2.example:25672") != std::string::npos);
}

TEST_CASE("log limiter: one line per key and interval, then how many were held back") {
  LogLimiter limiter(60s);
  const auto t0 = LogLimiter::Clock::time_point{} + 1h;
  std::size_t suppressed = 99;
  CHECK(limiter.allow("in 10.0.0.9", t0, suppressed));
  CHECK(suppressed == 0);
  CHECK_FALSE(limiter.allow("in 10.0.0.9", t0 + 1s, suppressed));
  CHECK_FALSE(limiter.allow("in 10.0.0.9", t0 + 59s, suppressed));
  CHECK(limiter.allow("in 10.0.0.8", t0 + 59s, suppressed));
  CHECK(limiter.allow("in 10.0.0.9", t0 + 60s, suppressed));
  CHECK(suppressed == 2);
  for (int i = 0; i < 10000; ++i) limiter.allow("in 10.1." + std::to_string(i), t0 + 61s + std::chrono::seconds(i), suppressed);
}
