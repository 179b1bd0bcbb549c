#include <doctest/doctest.h>

#include "support/config_parse.hpp"

#include "lb/config.hpp"

using namespace mqnode;
using namespace mqnode::lb;

namespace {
LbConfig parse(const std::string& text) { return test::parse_json(parse_lb_config, text, "/lb"); }

std::string error_of(const std::string& text) { return test::config_error_of(parse_lb_config, text, "/lb"); }

const char* kMinimal = R"({
  "frontends": [ { "name": "amqp", "bind": "127.0.0.1:5670", "backend": "rabbitmq" } ],
  "backends": [ { "name": "rabbitmq", "servers": [ { "name": "mq1", "address": "10.0.0.11:5672" } ] } ]
})";
}  // namespace

TEST_CASE("lb config: defaults that never cut a heartbeating AMQP connection") {
  auto c = parse(kMinimal);
  REQUIRE(c.frontends.size() == 1);
  REQUIRE(c.backends.size() == 1);
  const auto& f = c.frontends[0];
  const auto& b = c.backends[0];
  CHECK(f.maxconn == 2000);
  CHECK(f.overflow == OverflowMode::Queue);
  CHECK(f.timeout_client >= Millis(180000));  // 3 × RabbitMQ's 60 s heartbeat
  CHECK(b.timeout_server >= Millis(180000));
  CHECK(b.timeout_tunnel == Millis(0));
  CHECK(b.balance == Algorithm::RoundRobin);
  CHECK(b.retries == 3);
  CHECK(b.redispatch);
  CHECK(b.check.type == CheckType::Tcp);
  CHECK(b.check.inter == Millis(2000));
  CHECK(b.check.rise == 2);
  CHECK(b.check.fall == 3);
  CHECK(b.servers[0].weight == 1);
  CHECK(b.timeout_queue == b.timeout_connect);  // HAProxy: timeout queue defaults to timeout connect
  CHECK(c.splice == SpliceMode::Auto);
  CHECK_FALSE(c.stats.enabled);
}

TEST_CASE("lb config: every key read, fastinter/downinter/timeout default to inter") {
  auto c = parse(R"({
    "frontends": [ { "name": "amqp", "bind": ["127.0.0.1:5670", "[::1]:5670"], "backend": "be",
                     "maxconn": 10, "maxconn_mode": "refuse", "timeout_client_ms": 1000 } ],
    "backends": [ { "name": "be", "balance": "static-rr", "retries": 1, "redispatch": false,
                    "timeout_connect_ms": 100, "timeout_server_ms": 200, "timeout_tunnel_ms": 300,
                    "timeout_queue_ms": 400,
                    "on_marked_down": "shutdown-sessions",
                    "check": { "type": "amqp", "inter_ms": 500, "rise": 1, "fall": 2 },
                    "servers": [ { "name": "a", "address": "127.0.0.1:1", "weight": 0, "backup": true,
                                   "maxconn": 5, "disabled": true, "check": false, "local": true } ] } ],
    "stats": { "bind": "127.0.0.1:8404", "uri": "/stats", "user": "u", "password": "p", "refresh_s": 5,
               "realm": "R", "admin": false },
    "buffer_size": 4096, "log_sessions": false, "splice": "never"
  })");
  const auto& b = c.backends[0];
  CHECK(c.frontends[0].binds.size() == 2);
  CHECK(c.frontends[0].overflow == OverflowMode::Refuse);
  CHECK(b.balance == Algorithm::StaticRr);
  CHECK(b.shutdown_sessions_on_down);
  CHECK(b.check.fastinter == Millis(500));
  CHECK(b.check.downinter == Millis(500));
  CHECK(b.check.timeout == Millis(500));
  CHECK(b.servers[0].local);
  CHECK(c.stats.enabled);
  CHECK(c.stats.refresh_s == 5);
  CHECK(c.buffer_size == 4096);
  CHECK(b.timeout_queue == Millis(400));
  CHECK(c.splice == SpliceMode::Never);
}

TEST_CASE("lb config: errors name the JSON pointer") {
  CHECK(error_of(R"({"frontends": [{"name": "f", "bind": "x:1", "backend": "b"}]})") ==
        "/lb/frontends/0/bind: expected \"address:port\" with a numeric IPv4/IPv6 address, got string \"x:1\"");
  CHECK(error_of(R"({"frontends": [{"name": "f", "bind": "127.0.0.1:1", "backend": "nope"}]})") ==
        "/lb/frontends/0/backend: expected the name of a backend in /lb/backends, got string \"nope\"");
  CHECK(error_of(R"({"backends": [{"name": "b", "balance": "random", "servers": []}]})") ==
        "/lb/backends/0/balance: expected \"roundrobin\", \"static-rr\", \"leastconn\" or \"source\", got string \"random\"");
  CHECK(error_of(R"({"backends": [{"name": "b", "servers": []}]})") ==
        "/lb/backends/0/servers: expected a non-empty array of servers, got array []");
  CHECK(error_of(R"({"backends": [{"name": "b", "servers": [{"name": "s", "address": "1.2.3.4:5", "weight": 300}]}]})") ==
        "/lb/backends/0/servers/0/weight: expected an integer in 0..256, got number 300");
  CHECK(error_of(R"({"backends": [{"name": "b", "servers": [{"name": "s", "address": "1.2.3.4:5"}, {"name": "s", "address": "1.2.3.4:6"}]}]})") ==
        "/lb/backends/0/servers/1/name: duplicate server name \"s\" in backend \"b\"");
  CHECK(error_of(R"({"backends": [{"name": "b", "check": {"inter": 1}, "servers": [{"name": "s", "address": "1.2.3.4:5"}]}]})")
            .starts_with("/lb/backends/0/check/inter: unknown key"));
  CHECK(error_of(R"({"stats": {"bind": "127.0.0.1:1", "user": "a"}})") ==
        "/lb/stats/password: expected both user and password, or neither, got nothing");
  CHECK(error_of(R"({"splice": true})") == "/lb/splice: expected a string, got boolean true");
  CHECK(error_of(R"({"splice": "on"})") == "/lb/splice: expected \"auto\", \"always\" or \"never\", got string \"on\"");
  CHECK(error_of(R"({"stats": {"bind": "127.0.0.1:1", "uri": "x"}})") ==
        "/lb/stats/uri: expected a path starting with '/' without '?', ';' or spaces, got string \"x\"");
  CHECK(error_of(R"({"backends": [{"name": "a/b", "servers": [{"name": "s", "address": "1.2.3.4:5"}]}]})")
            .starts_with("/lb/backends/0/name: expected a name without"));
  CHECK(error_of(R"({"frontend": []})").starts_with("/lb/frontend: unknown key"));
}
