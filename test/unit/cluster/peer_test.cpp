// Peer requests over real loopback links: replies, and one link reused for a node's next
// request (one connect and handshake, not one per request).
#include <string>

#include <doctest/doctest.h>

#include "cluster/peer.hpp"
#include "support/temp_store.hpp"

using namespace mqnode::cluster;
using mqnode::test::quiet_log;
using mqnode::test::run_until;

namespace {

LinkConfig config_of(std::string name, uint64_t id) {
  LinkConfig c;
  c.self = {std::move(name), id, "127.0.0.1:1"};
  c.cookie = "COOKIE";
  c.cookie_path = "/var/lib/mqnode/.cookie";
  return c;
}

std::shared_ptr<Links> echo_server(asio::io_context& io, const std::string& name, uint64_t id) {
  auto links = Links::create(io, config_of(name, id), quiet_log());
  links->listen(*mqnode::core::parse_endpoint("127.0.0.1:0"));
  serve_peer(*links, [name](const NodeIdentity& from, const nlohmann::json& req, PeerReplyFn reply) {
    reply({{"echo", req.value("n", -1)}, {"from", from.name}, {"by", name}});
  });
  return links;
}

std::string address_of(const Links& l) { return "127.0.0.1:" + std::to_string(l.local_endpoint().port()); }

// One call, run to its end: the reply's "echo", or -1 with the error.
int call(asio::io_context& io, Links& from, const std::string& to, int n, std::string* by = nullptr) {
  std::optional<int> got;
  peer_call(from, to, {{"n", n}}, [&](std::optional<nlohmann::json> reply, std::string error) {
    INFO(error);
    got = reply ? reply->value("echo", -2) : -1;
    if (reply && by) *by = reply->value("by", std::string{});
  });
  run_until(io, [&] { return got.has_value(); });
  return *got;
}

}  // namespace

TEST_CASE("peer: a node's requests to another reuse one link; a link the peer closed is not reused") {
  asio::io_context io;
  auto server = echo_server(io, "mq2", 2);
  auto client = Links::create(io, config_of("mq1", 1), quiet_log());
  const std::string to = address_of(*server);
  for (int n = 0; n < 5; ++n) CHECK(call(io, *client, to, n) == n);
  CHECK(client->stats().connects == 1);
  CHECK(server->stats().authenticated == 1);

  // The server restarts on the same port: the parked link's peer is gone, and the next
  // request goes over a new link instead of failing.
  const auto port = server->local_endpoint().port();
  serve_peer(*server, nullptr);
  server->stop();
  server.reset();
  io.restart();
  io.poll();  // the stopped server's sockets close
  auto again = Links::create(io, config_of("mq2b", 3), quiet_log());
  again->listen(*mqnode::core::parse_endpoint("127.0.0.1:" + std::to_string(port)));
  serve_peer(*again, [](const NodeIdentity&, const nlohmann::json& req, PeerReplyFn reply) {
    reply({{"echo", req.value("n", -1)}, {"by", "mq2b"}});
  });
  std::string by;
  CHECK(call(io, *client, to, 7, &by) == 7);
  CHECK(by == "mq2b");
  CHECK(client->stats().connects == 2);
  serve_peer(*again, nullptr);
  again->stop();
  client->stop();
}
