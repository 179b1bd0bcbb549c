#include <doctest/doctest.h>

#include "support/config_parse.hpp"

#include "broker/policy.hpp"

using namespace mqnode;
using nlohmann::json;

namespace {
broker::Policy parse(const char* text) { return test::parse_json(broker::parse_policy, text, "/broker/policies/0"); }
std::string error_of(const char* text) { return test::config_error_of(broker::parse_policy, text, "/broker/policies/0"); }
}  // namespace

TEST_CASE("policies: parsing, matching by priority, merging with client arguments") {
  auto limits = parse(R"({"name": "limits", "pattern": "^q\\.", "priority": 1, "apply_to": "queues",
                          "definition": {"max-length": 10, "message-ttl": 5000, "dead-letter-exchange": "dlx",
                                         "ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "automatic"}})");
  auto broad = parse(R"({"name": "broad", "pattern": ".*", "definition": {"max-length": 100, "alternate-exchange": "ae"}})");
  broker::PolicySet set;
  set.add(broad);
  set.add(limits);
  CHECK(set.match("/", "q.orders", true)->name == "limits");  // higher priority wins
  CHECK(set.match("/", "other", true)->name == "broad");
  CHECK(set.match("/", "q.orders", false)->name == "broad");  // limits applies to queues only
  CHECK(set.match("vh", "q.orders", true) == nullptr);
  CHECK(limits.ha_mode == "exactly");

  broker::QueueArgs client;
  client.max_length = 3;         // lower than the policy: the client's applies
  client.message_ttl_ms = 60000; // higher: the policy's applies
  client.dead_letter_exchange = "mine";  // the client's argument wins
  auto eff = broker::effective_queue_args(client, set.match("/", "q.orders", true));
  CHECK(eff.max_length == 3);
  CHECK(eff.message_ttl_ms == 5000);
  CHECK(eff.dead_letter_exchange == "mine");
  auto only_policy = broker::effective_queue_args({}, set.match("/", "q.x", true));
  CHECK(only_policy.max_length == 10);
  CHECK(only_policy.dead_letter_exchange == "dlx");
}

TEST_CASE("policy errors name the JSON path") {
  CHECK(error_of(R"({"name": "p", "pattern": "(", "definition": {"max-length": 1}})")
            .starts_with("/broker/policies/0/pattern: expected a regular expression"));
  CHECK(error_of(R"({"name": "p", "pattern": ".*", "definition": {"max-length": -1}})")
            .starts_with("/broker/policies/0/definition/max-length: expected an integer in 0.."));
  CHECK(error_of(R"({"name": "p", "pattern": ".*", "definition": {"ha-mode": "some"}})") ==
        "/broker/policies/0/definition/ha-mode: expected \"all\", \"exactly\" or \"nodes\", got string \"some\"");
  CHECK(error_of(R"({"name": "p", "pattern": ".*", "definition": {"ha-mode": "exactly"}})")
            .starts_with("/broker/policies/0/definition/ha-params: expected a positive integer"));
  // The unknown key's error lists every key a definition may have.
  CHECK(error_of(R"({"name": "p", "pattern": ".*", "definition": {"federation-upstream": "x"}})") ==
        "/broker/policies/0/definition/federation-upstream: unknown key (known keys here: alternate-exchange, "
        "dead-letter-exchange, dead-letter-routing-key, expires, ha-mode, ha-params, ha-sync-mode, max-length, "
        "max-length-bytes, max-priority, message-ttl, overflow)");
  CHECK(error_of(R"({"name": "p", "pattern": ".*", "apply_to": "both", "definition": {}})")
            .starts_with("/broker/policies/0/apply_to: expected"));
}

TEST_CASE("policy set: set replaces by vhost and name, erase, find") {
  broker::PolicySet set;
  set.set(parse(R"({"name": "a", "pattern": "^x", "definition": {"max-length": 1}})"));
  set.set(parse(R"({"name": "a", "vhost": "other", "pattern": "^x", "definition": {"max-length": 2}})"));
  set.set(parse(R"({"name": "a", "pattern": "^y", "priority": 3, "definition": {"max-length": 3}})"));
  REQUIRE(set.all().size() == 2);
  REQUIRE(set.find("/", "a") != nullptr);
  CHECK(set.find("/", "a")->pattern == "^y");
  CHECK(set.find("/", "a")->queue.max_length == 3);
  CHECK(set.find("other", "a")->queue.max_length == 2);
  CHECK(set.match("/", "x1", true) == nullptr);  // the replaced pattern no longer matches
  CHECK(set.erase("/", "a"));
  CHECK_FALSE(set.erase("/", "a"));
  CHECK(set.find("/", "a") == nullptr);
  CHECK(broker::apply_to_name(broker::ApplyTo::Exchanges) == std::string("exchanges"));
}
