#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "amqp/properties.hpp"
#include "broker/vhost.hpp"

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
std::vector<std::string> names(const std::vector<Queue*>& qs) {
  std::vector<std::string> out;
  for (auto* q : qs) out.push_back(q->name());
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

TEST_CASE("vhost routing") {
  Vhost vh("/", nullptr);
  for (const char* e : {"", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"})
    CHECK(vh.find_exchange(e) != nullptr);
  for (const char* q : {"q1", "q2", "q3"}) vh.commit(QueueDeclared{qdef(q)});
  std::vector<Queue*> out;

  SUBCASE("default exchange routes by queue name") {
    vh.route(*vh.find_exchange(""), *msg("", "q2"), out);
    CHECK(names(out) == std::vector<std::string>{"q2"});
    vh.route(*vh.find_exchange(""), *msg("", "nope"), out);
    CHECK(out.empty());
  }
  SUBCASE("exchange-to-exchange bindings, without duplicates or loops") {
    vh.commit(ExchangeDeclared{{"e1", "fanout", false, false, false, {}}});
    vh.commit(ExchangeDeclared{{"e2", "topic", false, false, false, {}}});
    vh.commit(BindingChange{true, "e1", true, "e2", "", {}});
    vh.commit(BindingChange{true, "e2", true, "e1", "#", {}});  // a cycle
    vh.commit(BindingChange{true, "e1", false, "q1", "", {}});
    vh.commit(BindingChange{true, "e2", false, "q1", "a.*", {}});
    vh.commit(BindingChange{true, "e2", false, "q2", "a.*", {}});
    vh.route(*vh.find_exchange("e1"), *msg("e1", "a.b"), out);
    CHECK(names(out) == std::vector<std::string>{"q1", "q2"});
    vh.route(*vh.find_exchange("e1"), *msg("e1", "b"), out);
    CHECK(names(out) == std::vector<std::string>{"q1"});
  }
  SUBCASE("alternate exchange takes what the exchange cannot route") {
    mqnode::amqp::FieldTable args;
    args.set("alternate-exchange", "ae");
    vh.commit(ExchangeDeclared{{"ae", "fanout", false, false, false, {}}});
    vh.commit(ExchangeDeclared{{"main", "direct", false, false, false, args}});
    vh.commit(BindingChange{true, "ae", false, "q3", "", {}});
    vh.commit(BindingChange{true, "main", false, "q1", "k", {}});
    vh.route(*vh.find_exchange("main"), *msg("main", "k"), out);
    CHECK(names(out) == std::vector<std::string>{"q1"});
    vh.route(*vh.find_exchange("main"), *msg("main", "other"), out);
    CHECK(names(out) == std::vector<std::string>{"q3"});
  }
  SUBCASE("deleting a queue removes its bindings and auto-deletes exchanges left unbound") {
    vh.commit(ExchangeDeclared{{"ad", "direct", false, true, false, {}}});
    vh.commit(ExchangeDeclared{{"keep", "direct", false, false, false, {}}});
    vh.commit(BindingChange{true, "ad", false, "q1", "k", {}});
    vh.commit(BindingChange{true, "keep", false, "q1", "k", {}});
    vh.commit(QueueDeleted{"q1"});
    CHECK(vh.find_exchange("ad") == nullptr);
    REQUIRE(vh.find_exchange("keep") != nullptr);
    CHECK(vh.find_exchange("keep")->bindings().empty());
  }
  SUBCASE("unbinding the last binding auto-deletes; in-use detection") {
    vh.commit(ExchangeDeclared{{"ad", "topic", false, true, false, {}}});
    vh.commit(BindingChange{true, "ad", false, "q1", "x.#", {}});
    vh.commit(BindingChange{true, "ad", false, "q1", "x.#", {}});  // idempotent
    CHECK(vh.find_exchange("ad")->bindings().size() == 1);
    CHECK(vh.exchange_in_use(*vh.find_exchange("ad")));
    vh.commit(BindingChange{false, "ad", false, "q1", "x.#", {}});
    CHECK(vh.find_exchange("ad") == nullptr);
  }
  SUBCASE("headers exchange") {
    vh.commit(ExchangeDeclared{{"h", "headers", false, false, false, {}}});
    mqnode::amqp::FieldTable b;
    b.set("x-match", "any");
    b.set("k", "v");
    vh.commit(BindingChange{true, "h", false, "q2", "", b});
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
  PolicySet policies;
  Vhost vh("/", nullptr, &policies);
  vh.commit(QueueDeclared{qdef("lim")});
  vh.commit(QueueDeclared{qdef("dead")});
  QueueDefinition client = qdef("client");
  client.arguments.set("x-max-length", int64_t{2});
  client.args.max_length = 2;
  vh.commit(QueueDeclared{client});
  vh.commit(ExchangeDeclared{{"routed", "direct", false, false, false, {}}});
  auto message = [](const char* queue) {  // dead-lettering reads the properties
    auto m = std::make_shared<Message>();
    m->routing_key = queue;
    mqnode::amqp::encode_properties({}, m->properties);
    return MessagePtr(m);
  };
  for (int i = 0; i < 10; ++i) {
    vh.find_queue("lim")->enqueue(message("lim"));
    vh.find_queue("client")->enqueue(message("client"));
  }
  REQUIRE(vh.find_queue("lim")->message_count() == 10);
  REQUIRE(vh.find_queue("client")->message_count() == 2);

  auto parsed = [](const char* text) {
    auto j = nlohmann::json::parse(text);
    return parse_policy(mqnode::core::ConfigNode(j, ""));
  };
  policies.set(parsed(R"({"name": "p", "pattern": "^(lim|client|routed)$", "definition":
      {"max-length": 4, "dead-letter-exchange": "", "dead-letter-routing-key": "dead", "alternate-exchange": "amq.fanout"}})"));
  vh.apply_policies();
  CHECK(vh.find_queue("lim")->message_count() == 4);      // the head went at once...
  CHECK(vh.find_queue("dead")->message_count() == 6);     // ...to the policy's dead-letter target
  CHECK(vh.find_queue("client")->message_count() == 2);   // the client's lower limit still wins
  CHECK(vh.find_exchange("routed")->alternate_exchange() == "amq.fanout");

  policies.erase("/", "p");
  vh.apply_policies();
  CHECK_FALSE(vh.find_queue("lim")->definition().args.max_length.has_value());
  CHECK(vh.find_queue("client")->definition().args.max_length == 2);
  CHECK(vh.find_exchange("routed")->alternate_exchange().empty());
  for (int i = 0; i < 10; ++i) vh.find_queue("lim")->enqueue(message("lim"));
  CHECK(vh.find_queue("lim")->message_count() == 14);     // no limit any more
}

TEST_CASE("an expires policy counts from when it is set, as RabbitMQ restarts the expiry timer") {
  PolicySet policies;
  Vhost vh("/", nullptr, &policies);
  vh.commit(QueueDeclared{qdef("idle")});
  // Idle for longer than the policy's expires before the policy exists.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  auto j = nlohmann::json::parse(R"({"name": "e", "pattern": "^idle$", "definition": {"expires": 100}})");
  policies.set(parse_policy(mqnode::core::ConfigNode(j, "")));
  vh.apply_policies();
  vh.tick(Queue::now_ms());
  CHECK(vh.find_queue("idle") != nullptr);
  vh.tick(Queue::now_ms() + 100);
  CHECK(vh.find_queue("idle") == nullptr);
}
