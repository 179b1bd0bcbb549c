#include <doctest/doctest.h>

#include "broker/catalog.hpp"
#include "mgmt/definitions.hpp"
#include "mgmt/http_api.hpp"
#include "support/temp_store.hpp"

using namespace mqnode;
using nlohmann::json;

namespace {

// A single-node catalog in memory with vhost "/".
struct Node {
  broker::Catalog catalog{{"n1"}, test::quiet_log()};
  Node() { apply(broker::PutVhost{"/", ""}); }
  void apply(const broker::Change& c) { REQUIRE(catalog.apply(c).ok()); }
  void import(const json& doc, const std::optional<std::string>& vhost = std::nullopt) {
    for (const auto& c : mgmt::plan_import(doc, catalog, vhost).changes) apply(c);
  }
};

std::string refusal(const Node& n, const std::string& doc, const std::optional<std::string>& vhost = std::nullopt) {
  try {
    mgmt::plan_import(json::parse(doc), n.catalog, vhost);
  } catch (const mgmt::ApiError& e) {
    CHECK(e.status == 400);
    return e.what();
  }
  return "(accepted)";
}

const char* kFile = R"({
  "rabbit_version": "3.10.8",
  "users": [{"name": "app", "password_hash": "H8c2tke6/eYtTn+yqO9RWHfdMrMW7h4Mmq2i1sdJY5B3hPJM",
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["monitoring"], "limits": {}}],
  "vhosts": [{"name": "/"}, {"name": "prod"}],
  "permissions": [{"user": "app", "vhost": "prod", "configure": "^app\\.", "write": ".*", "read": ".*"}],
  "topic_permissions": [],
  "parameters": [{"value": {"k": 1}, "vhost": "prod", "component": "shovel", "name": "s1"}],
  "global_parameters": [{"name": "cluster_name", "value": "c1"}],
  "policies": [{"vhost": "prod", "name": "ttl", "pattern": "^app\\.", "apply-to": "queues",
                "definition": {"message-ttl": 1000}, "priority": 1}],
  "queues": [{"name": "app.q", "vhost": "prod", "durable": true, "auto_delete": false,
              "arguments": {"x-max-length": 10}}],
  "exchanges": [{"name": "app.x", "vhost": "prod", "type": "topic", "durable": true, "auto_delete": false,
                 "internal": false, "arguments": {}},
                {"name": "app.y", "vhost": "prod", "type": "fanout", "durable": true, "auto_delete": false,
                 "internal": false, "arguments": {}}],
  "bindings": [{"source": "app.x", "vhost": "prod", "destination": "app.q", "destination_type": "queue",
                "routing_key": "a.#", "arguments": {}},
               {"source": "app.x", "vhost": "prod", "destination": "app.y", "destination_type": "exchange",
                "routing_key": "", "arguments": {"h": "v"}}]
})";

}  // namespace

TEST_CASE("definitions: a RabbitMQ 3.10 file imports, and exports back the same") {
  Node a;
  a.import(json::parse(kFile));
  REQUIRE(a.catalog.find_vhost("prod"));
  CHECK(a.catalog.find_vhost("prod")->find_queue("app.q"));
  CHECK(a.catalog.access().find_user("app")->tags == std::vector<std::string>{"monitoring"});
  CHECK(a.catalog.access().permitted("app", "prod", broker::Permission::Configure, "app.q"));
  CHECK_FALSE(a.catalog.access().permitted("app", "prod", broker::Permission::Configure, "other"));

  auto exported = mgmt::export_definitions(a.catalog, std::nullopt, "1.0");
  auto file = json::parse(kFile);
  for (const char* k : {"users", "permissions", "parameters", "global_parameters", "policies", "queues", "exchanges",
                        "bindings"})
    CHECK_MESSAGE(exported[k] == file[k], k);
  CHECK(exported["vhosts"] == json::parse(R"([{"name": "/"}, {"name": "prod"}])"));
  CHECK(exported["product_name"] == "mqnode");

  // Into a fresh node and out again: equal.
  Node b;
  b.import(exported);
  CHECK(mgmt::export_definitions(b.catalog, std::nullopt, "1.0") == exported);
  // Importing the same file twice changes nothing.
  b.import(exported);
  CHECK(mgmt::export_definitions(b.catalog, std::nullopt, "1.0") == exported);
}

TEST_CASE("definitions: one vhost's, without vhost keys, into another vhost") {
  Node a;
  a.import(json::parse(kFile));
  auto prod = mgmt::export_definitions(a.catalog, std::string("prod"), "1.0");
  CHECK_FALSE(prod.contains("users"));
  CHECK(prod["queues"] == json::parse(R"([{"name": "app.q", "durable": true, "auto_delete": false,
                                           "arguments": {"x-max-length": 10}}])"));
  a.apply(broker::PutVhost{"staging", ""});
  a.import(prod, std::string("staging"));
  CHECK(a.catalog.find_vhost("staging")->find_queue("app.q"));
  CHECK(mgmt::export_definitions(a.catalog, std::string("staging"), "1.0") == prod);
}

TEST_CASE("definitions: a bad file is refused naming where, before any change") {
  Node n;
  CHECK(refusal(n, "[]") == "/: a definitions file is a JSON object");
  CHECK(refusal(n, R"({"queus": []})").starts_with("/queus: unknown key"));
  CHECK(refusal(n, R"({"queues": {}})") == "/queues: expected a list");
  CHECK(refusal(n, R"({"queues": [{"name": "q", "vhost": "nope"}]})") ==
        "/queues/0: vhost 'nope' does not exist (and is not in this file's vhosts)");
  CHECK(refusal(n, R"({"queues": [{"name": "q", "vhost": "/", "durabel": true}]})") ==
        "/queues/0: unknown key 'durabel' (expected name, durable, auto_delete, arguments, type, vhost)");
  CHECK(refusal(n, R"({"queues": [{"name": "q", "vhost": "/", "arguments": {"x-max-length": "ten"}}]})")
            .starts_with("/queues/0/arguments: "));
  CHECK(refusal(n, R"({"queues": [{"name": "q", "vhost": "/", "durable": "maybe"}]})") ==
        "/queues/0/durable: expected true or false, got \"maybe\"");
  CHECK(refusal(n, R"({"permissions": [{"user": "ghost", "vhost": "/", "configure": "", "write": "", "read": ""}]})") ==
        "/permissions/0: user 'ghost' does not exist (and is not in this file's users)");
  CHECK(refusal(n, R"({"users": [{"name": "u", "tags": ""}],
                       "permissions": [{"user": "u", "vhost": "/", "configure": "(", "write": "", "read": ""}]})")
            .starts_with("/permissions/0/configure: invalid regular expression \"(\""));
  CHECK(refusal(n, R"({"users": [{"name": "u", "password_hash": "zzz"}]})") ==
        "/users/0/password_hash: expected base64 of a 4-byte salt and a SHA-256 digest");
  CHECK(refusal(n, R"({"users": [{"name": "u", "hashing_algorithm": "rabbit_password_hashing_md5"}]})") ==
        "/users/0/hashing_algorithm: only rabbit_password_hashing_sha256 is supported, got 'rabbit_password_hashing_md5'");
  CHECK(refusal(n, R"({"bindings": [{"source": "nox", "vhost": "/", "destination": "q", "destination_type": "queue"}]})") ==
        "/bindings/0/source: exchange 'nox' does not exist in vhost '/' (nor in this file)");
  CHECK(refusal(n, R"({"exchanges": [{"name": "x", "vhost": "/", "type": "direct"}],
                       "bindings": [{"source": "x", "vhost": "/", "destination": "q", "destination_type": "queue"}]})") ==
        "/bindings/0/destination: queue 'q' does not exist in vhost '/' (nor in this file)");
  CHECK(refusal(n, R"({"exchanges": [{"name": "x", "vhost": "/", "type": "fan"}]})") ==
        "/exchanges/0/type: unknown exchange type 'fan' (direct, fanout, topic, headers)");
  CHECK(refusal(n, R"({"policies": [{"vhost": "/", "name": "p", "pattern": ".*", "definition": {"max-length": -1}}]})")
            .starts_with("/policies/0/definition/max-length"));
  CHECK(refusal(n, R"({"topic_permissions": [{"user": "u"}]})") ==
        "/topic_permissions/0: topic permissions are not supported by this node");
  // An existing queue declared otherwise would fail half-way: refused up front.
  broker::QueueDefinition q;
  q.name = "q";
  q.durable = true;
  n.apply(broker::DeclareQueue{"/", q, {}});
  CHECK(refusal(n, R"({"queues": [{"name": "q", "vhost": "/", "durable": false}]})") ==
        "/queues/0: queue 'q' in vhost '/' exists with other durable/auto_delete flags");
  // Per vhost: items carry no vhost key.
  CHECK(refusal(n, R"({"queues": [{"name": "q2", "vhost": "/"}]})", std::string("/")) ==
        "/queues/0: unknown key 'vhost' (expected name, durable, auto_delete, arguments, type)");
}
