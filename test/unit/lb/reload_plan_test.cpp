// plan_reload(): which frontends, backends and servers a reload adds, removes and changes,
// from the two /lb slices alone.
#include <doctest/doctest.h>

#include "support/config_parse.hpp"

#include "lb/reload_plan.hpp"

using namespace mqnode;
using namespace mqnode::lb;

namespace {

LbConfig parse(const std::string& text) { return test::parse_json(parse_lb_config, text, "/lb"); }

using Names = std::vector<std::string>;

const char* kOld = R"({
  "frontends": [ { "name": "amqp", "bind": "127.0.0.1:5670", "backend": "rabbitmq" },
                 { "name": "mgmt", "bind": "127.0.0.1:15670", "backend": "mgmt" } ],
  "backends": [ { "name": "rabbitmq", "servers": [ { "name": "mq1", "address": "10.0.0.11:5672" },
                                                   { "name": "mq2", "address": "10.0.0.12:5672" } ] },
                { "name": "mgmt", "servers": [ { "name": "mq1", "address": "10.0.0.11:15672" } ] } ]
})";

}  // namespace

TEST_CASE("the same config plans nothing") {
  auto p = plan_reload(parse(kOld), parse(kOld));
  CHECK(p.frontends.empty());
  CHECK(p.backends.empty());
  CHECK(p.servers.empty());
  CHECK_FALSE(p.stats_uri_changed);
  CHECK_FALSE(p.buffer_size_changed);
}

TEST_CASE("frontends and backends added, removed and changed, by name") {
  auto p = plan_reload(parse(kOld), parse(R"({
    "frontends": [ { "name": "amqp", "bind": "127.0.0.1:5670", "backend": "rabbitmq", "maxconn": 10 },
                   { "name": "amqps", "bind": "127.0.0.1:5671", "backend": "rabbitmq" } ],
    "backends": [ { "name": "rabbitmq", "balance": "leastconn",
                    "servers": [ { "name": "mq1", "address": "10.0.0.11:5672" },
                                 { "name": "mq2", "address": "10.0.0.12:5672" } ] } ]
  })"));
  CHECK(p.frontends == NameDiff{Names{"amqps"}, Names{"mgmt"}, Names{"amqp"}});
  CHECK(p.backends == NameDiff{Names{}, Names{"mgmt"}, Names{"rabbitmq"}});
  CHECK(p.servers.empty());  // rabbitmq's servers are the same; mgmt's went with it
}

TEST_CASE("servers of a kept backend: added, removed, changed; the backend itself unchanged") {
  auto p = plan_reload(parse(kOld), parse(R"({
    "frontends": [ { "name": "amqp", "bind": "127.0.0.1:5670", "backend": "rabbitmq" },
                   { "name": "mgmt", "bind": "127.0.0.1:15670", "backend": "mgmt" } ],
    "backends": [ { "name": "rabbitmq", "servers": [ { "name": "mq2", "address": "10.0.0.12:5672", "weight": 5 },
                                                     { "name": "mq3", "address": "10.0.0.13:5672" } ] },
                  { "name": "mgmt", "servers": [ { "name": "mq1", "address": "10.0.0.21:15672" } ] } ]
  })"));
  CHECK(p.frontends.empty());
  CHECK(p.backends.empty());
  REQUIRE(p.servers.size() == 2);
  CHECK(p.servers[0].first == "rabbitmq");
  CHECK(p.servers[0].second == NameDiff{Names{"mq3"}, Names{"mq1"}, Names{"mq2"}});
  CHECK(p.servers[1].first == "mgmt");
  CHECK(p.servers[1].second == NameDiff{Names{}, Names{}, Names{"mq1"}});  // a new address
}

TEST_CASE("a frontend whose backend only moved in the list is unchanged") {
  auto p = plan_reload(parse(kOld), parse(R"({
    "frontends": [ { "name": "amqp", "bind": "127.0.0.1:5670", "backend": "rabbitmq" },
                   { "name": "mgmt", "bind": "127.0.0.1:15670", "backend": "mgmt" } ],
    "backends": [ { "name": "mgmt", "servers": [ { "name": "mq1", "address": "10.0.0.11:15672" } ] },
                  { "name": "rabbitmq", "servers": [ { "name": "mq1", "address": "10.0.0.11:5672" },
                                                     { "name": "mq2", "address": "10.0.0.12:5672" } ] } ]
  })"));
  CHECK(p.frontends.empty());
  CHECK(p.backends.empty());
}

TEST_CASE("stats uri and buffer size") {
  auto old = parse(kOld);
  auto next = old;
  next.stats.uri = "/stats";
  next.buffer_size = 65536;
  auto p = plan_reload(old, next);
  CHECK(p.stats_uri_changed);
  CHECK(p.buffer_size_changed);
}
