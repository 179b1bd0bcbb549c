#include <doctest/doctest.h>

#include "cluster/config.hpp"
#include "support/config_parse.hpp"

using namespace mqnode::cluster;
using mqnode::test::config_error_of;
using mqnode::test::parse_json;

TEST_CASE("/cluster: defaults, values, and errors that name the path") {
  auto d = parse_json(parse_cluster_config, "{}", "/cluster");
  CHECK(d.bind.to_string() == "0.0.0.0:25672");
  CHECK(d.seeds.empty());
  CHECK(d.election_timeout_ms == 1000);
  auto c = parse_json(parse_cluster_config,
                      R"({"bind": "10.0.0.1:4000", "seeds": ["rabbit@mq1"], "election_timeout_ms": 2000,
                          "heartbeat_timeout_ms": 200, "advertise": "10.0.0.1:4000"})",
                      "/cluster");
  CHECK(c.bind.to_string() == "10.0.0.1:4000");
  CHECK(c.seeds == std::vector<std::string>{"rabbit@mq1"});
  CHECK(c.heartbeat_timeout_ms == 200);
  CHECK(config_error_of(parse_cluster_config, R"({"bind": "mq1:25672"})", "/cluster").starts_with("/cluster/bind:"));
  CHECK(config_error_of(parse_cluster_config, R"({"heartbeat_timeout_ms": 1000})", "/cluster")
            .starts_with("/cluster/heartbeat_timeout_ms: must be less than"));
  CHECK(config_error_of(parse_cluster_config, R"({"seed": []})", "/cluster").find("/cluster/seed") != std::string::npos);
}

TEST_CASE("node names as operators type them resolve to cluster addresses") {
  CHECK(resolve_node("127.0.0.1") == "127.0.0.1:25672");
  CHECK(resolve_node("rabbit@127.0.0.1") == "127.0.0.1:25672");
  CHECK(resolve_node("rabbit@127.0.0.1:4001") == "127.0.0.1:4001");
  CHECK(resolve_node("[::1]:4001") == "[::1]:4001");
  const auto local = resolve_node("localhost:4002");  // /etc/hosts
  CHECK((local == "127.0.0.1:4002" || local == "[::1]:4002"));
  CHECK_THROWS_WITH_AS(resolve_node("rabbit@no-such-host.invalid"), doctest::Contains("cannot resolve"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(resolve_node("mq1:x"), doctest::Contains("expected a port"), std::runtime_error);
}
