#include <doctest/doctest.h>


#include "amqp/properties.hpp"
#include "broker/catalog.hpp"
#include "broker/vhost.hpp"
#include "support/temp_store.hpp"

using namespace mqnode::broker;

namespace {
MessagePtr msg(std::string exchange, std::string key) {
  auto m = std::make_shared<Message>();
  m->exchange = std::move(exchange);
  m->routing_key = std::move(key);
  return m;
}
QueueDefinition qdef(std::string name, bool auto_delete = false) {
  QueueDefinition d;
  d.name = std::move(name);
  d.auto_delete = auto_delete;
  return d;
}
// A single-node catalog holding vhost "/" in memory; changes must apply.
struct Node {
  mqnode::core::ManualClock clock;
  Catalog catalog{{.node = "n1", .clock = &clock}, mqnode::test::quiet_log()};
  Node() { apply(PutVhost{"/", ""}); }
  void apply(const Change& c) { REQUIRE(catalog.apply(c).ok()); }
  Vhost& vhost() { return *catalog.find_vhost("/"); }
};
std::vector<std::string> names(const std::vector<QueueHandle*>& qs) {
  std::vector<std::string> out;
  for (auto* q : qs) out.push_back(q->definition().name);
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

TEST_CASE("vhost routing") {
  Node node;
  Vhost& vh = node.vhost();
  for (const char* e : {"", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"})
    CHECK(vh.find_exchange(e) != nullptr);
  for (const char* q : {"q1", "q2", "q3"}) node.apply(DeclareQueue{"/", qdef(q), {}});
  std::vector<QueueHandle*> out;

  SUBCASE("default exchange routes by queue name") {
    vh.route(*vh.find_exchange(""), *msg("", "q2"), out);
    CHECK(names(out) == std::vector<std::string>{"q2"});
    vh.route(*vh.find_exchange(""), *msg("", "nope"), out);
    CHECK(out.empty());
  }
  SUBCASE("exchange-to-exchange bindings, without duplicates or loops") {
    node.apply(DeclareExchange{"/", {"e1", "fanout", false, false, false, {}}});
    node.apply(DeclareExchange{"/", {"e2", "topic", false, false, false, {}}});
    node.apply(Bind{"/", true, "e1", true, "e2", "", {}, {}});
    node.apply(Bind{"/", true, "e2", true, "e1", "#", {}, {}});  // a cycle
    node.apply(Bind{"/", true, "e1", false, "q1", "", {}, {}});
    node.apply(Bind{"/", true, "e2", false, "q1", "a.*", {}, {}});
    node.apply(Bind{"/", true, "e2", false, "q2", "a.*", {}, {}});
    vh.route(*vh.find_exchange("e1"), *msg("e1", "a.b"), out);
    CHECK(names(out) == std::vector<std::string>{"q1", "q2"});
    vh.route(*vh.find_exchange("e1"), *msg("e1", "b"), out);
    CHECK(names(out) == std::vector<std::string>{"q1"});
  }
  SUBCASE("alternate exchange takes what the exchange cannot route") {
    mqnode::amqp::FieldTable args;
    args.set("alternate-exchange", "ae");
    node.apply(DeclareExchange{"/", {"ae", "fanout", false, false, false, {}}});
    node.apply(DeclareExchange{"/", {"main", "direct", false, false, false, args}});
    node.apply(Bind{"/", true, "ae", false, "q3", "", {}, {}});
    node.apply(Bind{"/", true, "main", false, "q1", "k", {}, {}});
    vh.route(*vh.find_exchange("main"), *msg("main", "k"), out);
    CHECK(names(out) == std::vector<std::string>{"q1"});
    vh.route(*vh.find_exchange("main"), *msg("main", "other"), out);
    CHECK(names(out) == std::vector<std::string>{"q3"});
  }
  SUBCASE("deleting a queue removes its bindings and auto-deletes exchanges left unbound") {
    node.apply(DeclareExchange{"/", {"ad", "direct", false, true, false, {}}});
    node.apply(DeclareExchange{"/", {"keep", "direct", false, false, false, {}}});
    node.apply(Bind{"/", true, "ad", false, "q1", "k", {}, {}});
    node.apply(Bind{"/", true, "keep", false, "q1", "k", {}, {}});
    node.apply(DeleteQueue{"/", "q1", DeleteReason::Client, {}});
    CHECK(vh.find_exchange("ad") == nullptr);
    REQUIRE(vh.find_exchange("keep") != nullptr);
    CHECK(vh.find_exchange("keep")->bindings().empty());
  }
  SUBCASE("unbinding the last binding auto-deletes; in-use detection") {
    node.apply(DeclareExchange{"/", {"ad", "topic", false, true, false, {}}});
    node.apply(Bind{"/", true, "ad", false, "q1", "x.#", {}, {}});
    node.apply(Bind{"/", true, "ad", false, "q1", "x.#", {}, {}});  // idempotent
    CHECK(vh.find_exchange("ad")->bindings().size() == 1);
    CHECK(vh.exchange_in_use(*vh.find_exchange("ad")));
    node.apply(Bind{"/", false, "ad", false, "q1", "x.#", {}, {}});
    CHECK(vh.find_exchange("ad") == nullptr);
  }
  SUBCASE("headers exchange") {
    node.apply(DeclareExchange{"/", {"h", "headers", false, false, false, {}}});
    mqnode::amqp::FieldTable b;
    b.set("x-match", "any");
    b.set("k", "v");
    node.apply(Bind{"/", true, "h", false, "q2", "", b, {}});
    auto m = std::make_shared<Message>();
    m->exchange = "h";
    mqnode::amqp::BasicProperties p;
    p.headers = mqnode::amqp::FieldTable{};
    p.headers->set("k", "v");
    mqnode::amqp::encode_properties(p, m->properties);
    vh.route(*vh.find_exchange("h"), *m, out);
    CHECK(names(out) == std::vector<std::string>{"q2"});
    m->properties.clear();
    mqnode::amqp::encode_properties({}, m->properties);
    vh.route(*vh.find_exchange("h"), *m, out);
    CHECK(out.empty());
  }
}

TEST_CASE("a policy change applies at once to existing queues and exchanges") {
  Node node;
  Vhost& vh = node.vhost();
  node.apply(DeclareQueue{"/", qdef("lim"), {}});
  node.apply(DeclareQueue{"/", qdef("dead"), {}});
  QueueDefinition client = qdef("client");
  client.arguments.set("x-max-length", int64_t{2});
  node.apply(DeclareQueue{"/", client, {}});
  node.apply(DeclareExchange{"/", {"routed", "direct", false, false, false, {}}});
  auto message = [](const char* queue) {  // dead-lettering reads the properties
    auto m = std::make_shared<Message>();
    m->routing_key = queue;
    mqnode::amqp::encode_properties({}, m->properties);
    return MessagePtr(m);
  };
  for (int i = 0; i < 10; ++i) {
    vh.find_local_queue("lim")->enqueue(message("lim"));
    vh.find_local_queue("client")->enqueue(message("client"));
  }
  REQUIRE(vh.find_local_queue("lim")->message_count() == 10);
  REQUIRE(vh.find_local_queue("client")->message_count() == 2);

  node.apply(SetPolicy{"/", "p", "^(lim|client|routed)$", nlohmann::json::parse(R"({"max-length": 4,
      "dead-letter-exchange": "", "dead-letter-routing-key": "dead", "alternate-exchange": "amq.fanout"})"), 0, "all"});
  CHECK(vh.find_local_queue("lim")->message_count() == 4);      // the head went at once...
  CHECK(vh.find_local_queue("dead")->message_count() == 6);     // ...to the policy's dead-letter target
  CHECK(vh.find_local_queue("client")->message_count() == 2);   // the client's lower limit still wins
  CHECK(vh.find_exchange("routed")->alternate_exchange() == "amq.fanout");

  node.apply(ClearPolicy{"/", "p"});
  CHECK_FALSE(vh.find_local_queue("lim")->definition().args.max_length.has_value());
  CHECK(vh.find_local_queue("client")->definition().args.max_length == 2);
  CHECK(vh.find_exchange("routed")->alternate_exchange().empty());
  for (int i = 0; i < 10; ++i) vh.find_local_queue("lim")->enqueue(message("lim"));
  CHECK(vh.find_local_queue("lim")->message_count() == 14);     // no limit any more
}

TEST_CASE("an expires policy counts from when it is set, as RabbitMQ restarts the expiry timer") {
  Node node;
  Vhost& vh = node.vhost();
  node.apply(DeclareQueue{"/", qdef("idle"), {}});
  // Idle for longer than the policy's expires before the policy exists.
  node.clock.advance(150);
  node.apply(SetPolicy{"/", "e", "^idle$", nlohmann::json::parse(R"({"expires": 100})"), 0, "all"});
  vh.tick(node.clock.now_ms());
  CHECK(vh.find_local_queue("idle") != nullptr);
  node.clock.advance(99);
  vh.tick(node.clock.now_ms());
  CHECK(vh.find_local_queue("idle") != nullptr);
  node.clock.advance(1);
  vh.tick(node.clock.now_ms());
  CHECK(vh.find_local_queue("idle") == nullptr);
}
