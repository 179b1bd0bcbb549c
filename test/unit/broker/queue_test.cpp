#include <doctest/doctest.h>

#include "broker/queue.hpp"

using namespace mqnode::broker;

namespace {
// A consumer's channel reduced to its credit: takes up to <credit> messages.
struct CreditTarget final : DeliveryTarget {
  std::size_t credit = 0;
  std::vector<std::pair<std::string, std::string>> got;  // (consumer tag, routing key)
  std::vector<bool> redelivered;
  std::vector<std::string> cancelled;
  bool can_deliver(const Consumer&) const override { return got.size() < credit; }
  void deliver(Consumer& c, QueueEntry e) override {
    got.emplace_back(c.tag, e.msg->routing_key);
    redelivered.push_back(e.redelivered);
  }
  void cancelled_by_server(Consumer& c) override { cancelled.push_back(c.tag); }
};

MessagePtr msg(std::string key) {
  auto m = std::make_shared<Message>();
  m->routing_key = std::move(key);
  return m;
}
}  // namespace

TEST_CASE("queue delivery") {
  bool unused = false;
  QueueDefinition d;
  d.name = "q";
  d.auto_delete = true;
  auto q = std::make_shared<Queue>(d, "/", nullptr, [&](Queue&) { unused = true; });

  SUBCASE("messages wait until a consumer has credit, then go in order") {
    q->enqueue(msg("1"));
    q->enqueue(msg("2"));
    CreditTarget t;
    auto c = std::make_shared<Consumer>(t, "c1", q);
    q->add_consumer(c.get());
    CHECK(t.got.empty());
    CHECK(q->message_count() == 2);
    t.credit = 5;
    q->dispatch();
    REQUIRE(t.got.size() == 2);
    CHECK(t.got[0].second == "1");
    CHECK(t.got[1].second == "2");
    q->enqueue(msg("3"));
    CHECK(t.got.size() == 3);
  }
  SUBCASE("round-robin between consumers with credit") {
    CreditTarget a, b;
    a.credit = b.credit = 10;
    auto ca = std::make_shared<Consumer>(a, "a", q), cb = std::make_shared<Consumer>(b, "b", q);
    q->add_consumer(ca.get());
    q->add_consumer(cb.get());
    for (int i = 0; i < 6; ++i) q->enqueue(msg(std::to_string(i)));
    CHECK(a.got.size() == 3);
    CHECK(b.got.size() == 3);
  }
  SUBCASE("requeued messages go back to the head, in order, flagged redelivered") {
    q->enqueue(msg("3"));
    std::vector<QueueEntry> back{{msg("1"), false}, {msg("2"), false}};
    q->requeue(std::move(back));
    REQUIRE(q->message_count() == 3);
    auto e1 = q->get(), e2 = q->get(), e3 = q->get();
    CHECK(e1->msg->routing_key == "1");
    CHECK(e1->redelivered);
    CHECK(e2->msg->routing_key == "2");
    CHECK(e3->msg->routing_key == "3");
    CHECK_FALSE(e3->redelivered);
    CHECK_FALSE(q->get());
  }
  SUBCASE("auto-delete fires when the last consumer goes, not before") {
    CreditTarget t;
    auto c1 = std::make_shared<Consumer>(t, "a", q), c2 = std::make_shared<Consumer>(t, "b", q);
    q->add_consumer(c1.get());
    q->add_consumer(c2.get());
    CHECK(q->remove_consumer(c1.get()));
    CHECK_FALSE(unused);
    CHECK_FALSE(q->remove_consumer(c1.get()));
    CHECK(q->remove_consumer(c2.get()));
    CHECK(unused);
  }
  SUBCASE("deleted queues drop messages and hand back their consumers") {
    CreditTarget t;
    auto c = std::make_shared<Consumer>(t, "a", q);
    q->add_consumer(c.get());
    q->enqueue(msg("x"));
    auto detached = q->mark_deleted();
    CHECK(detached.size() == 1);
    q->enqueue(msg("y"));
    CHECK(q->message_count() == 0);
    CHECK(q->purge() == 0);
  }
}
