#include <doctest/doctest.h>

#include "support/config_parse.hpp"

#include "broker/auth.hpp"
#include "broker/config.hpp"

using namespace mqnode;
using nlohmann::json;

namespace {
broker::BrokerConfig parse(const char* text) { return test::parse_json(broker::parse_broker_config, text, "/broker"); }
std::string error_of(const char* text) { return test::config_error_of(broker::parse_broker_config, text, "/broker"); }
}  // namespace

TEST_CASE("broker defaults are RabbitMQ 3.10's") {
  auto c = parse("{}");
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].endpoint.host == "::");  // dual-stack, IPv4 where the host has no IPv6
  CHECK(c.listeners[0].endpoint.port == 5672);
  CHECK(c.listeners[0].endpoint.ipv4_fallback);
  CHECK(c.heartbeat_s == 60);
  CHECK(c.frame_max == 131072);
  CHECK(c.channel_max == 2047);
  CHECK(c.max_message_size == 128u << 20);
  CHECK(c.vhosts == std::vector<std::string>{"/"});
  REQUIRE(c.users.size() == 1);
  CHECK(c.users[0].name == "guest");
  CHECK(broker::check_password(c.users[0].password_hash, "guest"));
  CHECK(c.loopback_users == std::vector<std::string>{"guest"});
  REQUIRE(c.permissions.size() == 1);
  CHECK(c.permissions[0].vhost == "/");
}

TEST_CASE("broker config errors") {
  CHECK(error_of(R"({"listeners": [{"bind": "localhost:5672"}]})") ==
        "/broker/listeners/0/bind: expected \"address:port\" with a numeric IPv4/IPv6 address, got string \"localhost:5672\"");
  CHECK(error_of(R"({"frame_max": 1024})") == "/broker/frame_max: expected an integer in 4096..16777216, got number 1024");
  CHECK(error_of(R"({"heartbeat": 5})").starts_with("/broker/heartbeat: unknown key"));
  CHECK(error_of(R"({"users": [{"name": "a"}]})").starts_with("/broker/users/0/password: expected exactly one of"));
  CHECK(error_of(R"({"users": [{"name": "a", "password_hash": "abc"}]})")
            .starts_with("/broker/users/0/password_hash: expected base64"));
  CHECK(error_of(R"({"users": [{"name": "a", "password": "x"}], "permissions": [{"user": "b"}]})") ==
        "/broker/permissions/0/user: expected a user listed in /broker/users, got \"b\"");
  CHECK(error_of(R"({"users": [{"name": "a", "password": "x"}], "permissions": [{"user": "a", "vhost": "v"}]})")
            .starts_with("/broker/permissions/0/vhost: expected a vhost listed in /broker/vhosts"));
  CHECK(error_of(R"({"users": [{"name": "a", "password": "x"}], "permissions": [{"user": "a", "read": "("}]})")
            .starts_with("/broker/permissions/0/read: expected a regular expression, got \"(\""));
  CHECK(error_of(R"({"users": [{"name": "a", "password": "x"}, {"name": "a", "password": "y"}]})")
            .starts_with("/broker/users/1/name: expected a user name not defined before"));
  CHECK(error_of(R"({"listeners": []})").starts_with("/broker/listeners: expected at least one listener"));
}

TEST_CASE("configured users replace guest; hashes are stored, never passwords") {
  auto c = parse(R"({"users": [{"name": "admin", "password": "s3cret", "tags": ["administrator"]},
                               {"name": "ro", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"}],
                     "permissions": [{"user": "admin"}]})");
  REQUIRE(c.users.size() == 2);
  CHECK(c.users[0].password_hash != "s3cret");
  CHECK(broker::check_password(c.users[0].password_hash, "s3cret"));
  CHECK(broker::check_password(c.users[1].password_hash, "test12"));
  REQUIRE(c.permissions.size() == 1);
  CHECK(c.permissions[0].configure == ".*");
}

TEST_CASE("a listener is an address and port, or a port on every address") {
  auto c = parse(R"({"listeners": [{"port": 5673}, {"bind": "[::]:5674"}, {"bind": "127.0.0.1:0"}]})");
  REQUIRE(c.listeners.size() == 3);
  CHECK(c.listeners[0].endpoint.host == "::");
  CHECK(c.listeners[0].endpoint.port == 5673);
  CHECK(c.listeners[0].endpoint.ipv4_fallback);        // as the default
  CHECK(c.listeners[1].endpoint.host == "::");
  CHECK_FALSE(c.listeners[1].endpoint.ipv4_fallback);  // asked for IPv6: no silent IPv4 instead
  CHECK(c.listeners[2].endpoint.host == "127.0.0.1");
  CHECK(error_of(R"({"listeners": [{"port": 5673, "bind": "0.0.0.0:5672"}]})") ==
        "/broker/listeners/0/bind: expected exactly one of \"bind\" or \"port\", got string \"0.0.0.0:5672\"");
  CHECK(error_of(R"({"listeners": [{}]})") ==
        "/broker/listeners/0/bind: expected exactly one of \"bind\" or \"port\", got nothing");
  CHECK(error_of(R"({"listeners": [{"port": 65536}]})").starts_with("/broker/listeners/0/port: expected"));
}

TEST_CASE("an AMQPS listener: tls options, port 5671 by default") {
  auto c = parse(R"({"listeners": [{"port": 5672}, {"tls": {"certfile": "c.pem", "keyfile": "k.pem"}}]})");
  REQUIRE(c.listeners.size() == 2);
  CHECK_FALSE(c.listeners[0].tls);
  REQUIRE(c.listeners[1].tls);
  CHECK(c.listeners[1].endpoint.port == 5671);
  CHECK(c.listeners[1].tls->path == "/broker/listeners/1/tls");
  CHECK(c.listeners[1].tls->certfile == "c.pem");
  CHECK(error_of(R"({"listeners": [{"port": 1, "tls": {"certfile": "c"}}]})")
            .starts_with("/broker/listeners/0/tls/keyfile: expected"));
}

TEST_CASE("vhost limits as set_vhost_limits") {
  auto c = parse(R"({"vhosts": ["/", "v"], "limits": {"v": {"max-connections": 3, "max-queues": 0}}})");
  REQUIRE(c.vhost_limits.count("v") == 1);
  CHECK(c.vhost_limits.at("v").max_connections == 3);
  CHECK(c.vhost_limits.at("v").max_queues == 0);
  CHECK(c.vhost_limits.count("/") == 0);
  CHECK(error_of(R"({"limits": {"w": {"max-queues": 1}}})").starts_with("/broker/limits/w: expected a vhost listed"));
  CHECK(error_of(R"({"limits": {"/": {"max-queues": -2}}})").starts_with("/broker/limits/~1/max-queues: expected an integer"));
  CHECK(error_of(R"({"limits": {"/": {"max-channels": 1}}})").starts_with("/broker/limits/~1/max-channels: unknown key"));
  CHECK(error_of(R"({"limits": []})").starts_with("/broker/limits: expected an object"));
}
