#include <doctest/doctest.h>

#include "broker/queue.hpp"
#include "support/temp_store.hpp"

using namespace mqnode::broker;
namespace test = mqnode::test;

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

MessagePtr msg(std::string key, std::size_t body = 0, int64_t ttl = -1) {
  auto m = std::make_shared<Message>();
  m->routing_key = std::move(key);
  m->properties = {0, 0};  // no property set
  m->body.resize(body);
  m->ttl_ms = ttl;
  return m;
}

// The vhost reduced to a record of what the queue hands it.
struct RecordingOwner final : QueueOwner {
  bool unused = false;
  std::vector<std::pair<std::string, DeathReason>> dead;  // (routing key, reason)
  void queue_unused(Queue&) override { unused = true; }
  void dead_letter(Queue&, QueueEntry e, DeathReason why) override { dead.emplace_back(e.msg->routing_key, why); }
};

mqnode::core::ManualClock test_clock;

std::shared_ptr<Queue> make_queue(RecordingOwner& owner, QueueArgs args) {
  QueueDefinition d;
  d.name = "q";
  d.args = std::move(args);
  return std::make_shared<Queue>(d, "/", nullptr, &owner, Queue::kDefaultRamWindow, test_clock);
}
}  // namespace

TEST_CASE("length limits and TTL") {
  RecordingOwner owner;
  SUBCASE("x-max-length with drop-head dead-letters the oldest") {
    QueueArgs a;
    a.max_length = 2;
    auto q = make_queue(owner, a);
    for (const char* k : {"1", "2", "3"}) CHECK(q->enqueue(msg(k)).accepted);
    CHECK(q->message_count() == 2);
    REQUIRE(owner.dead.size() == 1);
    CHECK(owner.dead[0] == std::pair<std::string, DeathReason>{"1", DeathReason::MaxLen});
    CHECK(q->get()->msg->routing_key == "2");
  }
  SUBCASE("x-max-length-bytes counts ready bodies") {
    QueueArgs a;
    a.max_length_bytes = 10;
    auto q = make_queue(owner, a);
    q->enqueue(msg("a", 6));
    q->enqueue(msg("b", 6));
    CHECK(q->message_count() == 1);
    CHECK(q->message_bytes() == 6);
    CHECK(q->get()->msg->routing_key == "b");
    CHECK(q->message_bytes() == 0);
  }
  SUBCASE("reject-publish refuses the newest; reject-publish-dlx also dead-letters it") {
    QueueArgs a;
    a.max_length = 1;
    a.overflow = Overflow::RejectPublish;
    auto q = make_queue(owner, a);
    CHECK(q->enqueue(msg("1")).accepted);
    CHECK_FALSE(q->enqueue(msg("2")).accepted);
    CHECK(owner.dead.empty());
    a.overflow = Overflow::RejectPublishDlx;
    auto q2 = make_queue(owner, a);
    q2->enqueue(msg("1"));
    CHECK_FALSE(q2->enqueue(msg("2")).accepted);
    REQUIRE(owner.dead.size() == 1);
    CHECK(owner.dead[0].first == "2");
    CHECK(q2->message_count() == 1);
  }
  SUBCASE("TTL: the shorter of queue and message TTL; expired heads are dead-lettered") {
    QueueArgs a;
    a.message_ttl_ms = 60000;
    auto q = make_queue(owner, a);
    q->enqueue(msg("short", 0, 1000));
    q->enqueue(msg("long"));
    int64_t now = test_clock.now_ms();
    q->expire(now + 2000);
    REQUIRE(owner.dead.size() == 1);
    CHECK(owner.dead[0] == std::pair<std::string, DeathReason>{"short", DeathReason::Expired});
    q->expire(now + 59000);
    CHECK(q->message_count() == 1);
    q->expire(now + 61000);
    CHECK(q->message_count() == 0);
  }
  SUBCASE("TTL 0: delivered if a consumer can take it now, else expired") {
    QueueArgs a;
    a.message_ttl_ms = 0;
    auto q = make_queue(owner, a);
    q->enqueue(msg("nobody"));
    CHECK(q->message_count() == 0);
    CHECK(owner.dead.size() == 1);
  }
  SUBCASE("x-expires counts idle time without consumers") {
    QueueArgs a;
    a.expires_ms = 1000;
    auto q = make_queue(owner, a);
    int64_t now = test_clock.now_ms();
    CHECK_FALSE(q->unused_since(now));
    CHECK(q->unused_since(now + 1500));
  }
}

TEST_CASE("queue delivery") {
  RecordingOwner owner;
  bool& unused = owner.unused;
  QueueDefinition d;
  d.name = "q";
  d.auto_delete = true;
  auto q = std::make_shared<Queue>(d, "/", nullptr, &owner);

  SUBCASE("messages wait until a consumer has credit, then go in order") {
    q->enqueue(msg("1"));
    q->enqueue(msg("2"));
    CreditTarget t;
    auto c = std::make_shared<Consumer>(t, "c1", q);
    q->consume(*c);
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
    q->consume(*ca);
    q->consume(*cb);
    for (int i = 0; i < 6; ++i) q->enqueue(msg(std::to_string(i)));
    CHECK(a.got.size() == 3);
    CHECK(b.got.size() == 3);
  }
  SUBCASE("requeued messages go back to the head, in order, flagged redelivered") {
    q->enqueue(msg("3"));
    std::vector<QueueEntry> back{QueueEntry(msg("1")), QueueEntry(msg("2"))};
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
    q->consume(*c1);
    q->consume(*c2);
    CHECK(q->cancel(*c1));
    CHECK_FALSE(unused);
    CHECK_FALSE(q->cancel(*c1));
    CHECK(q->cancel(*c2));
    CHECK(unused);
  }
  SUBCASE("deleted queues drop messages and hand back their consumers") {
    CreditTarget t;
    auto c = std::make_shared<Consumer>(t, "a", q);
    q->consume(*c);
    q->enqueue(msg("x"));
    auto detached = q->mark_deleted();
    CHECK(detached.size() == 1);
    q->enqueue(msg("y"));
    CHECK(q->message_count() == 0);
    CHECK(q->purge() == 0);
  }
}

TEST_CASE("priority levels and consumer priorities") {
  RecordingOwner owner;
  SUBCASE("ready messages go by priority, FIFO within a level; requeue goes to the level's head") {
    QueueArgs a;
    a.max_priority = 3;
    auto q = make_queue(owner, a);
    auto with_prio = [](std::string key, uint8_t p) {
      auto m = std::make_shared<Message>();
      m->routing_key = std::move(key);
      m->priority = p;
      return MessagePtr(m);
    };
    q->enqueue(with_prio("a0", 0));
    q->enqueue(with_prio("b3", 3));
    q->enqueue(with_prio("c9", 9));  // above the maximum: counts as 3
    q->enqueue(with_prio("d1", 1));
    auto first = q->get();
    CHECK(first->msg->routing_key == "b3");
    q->requeue({*first});
    std::vector<std::string> order;
    while (auto e = q->get()) order.push_back(e->msg->routing_key);
    CHECK(order == std::vector<std::string>{"b3", "c9", "d1", "a0"});
  }
  SUBCASE("higher-priority consumers first, lower ones only when the higher lack credit") {
    auto q = make_queue(owner, {});
    CreditTarget lo, hi;
    lo.credit = 10;
    hi.credit = 2;
    auto clo = std::make_shared<Consumer>(lo, "lo", q), chi = std::make_shared<Consumer>(hi, "hi", q);
    chi->priority = 5;
    q->consume(*clo);
    q->consume(*chi);
    for (int i = 0; i < 5; ++i) q->enqueue(msg(std::to_string(i)));
    CHECK(hi.got.size() == 2);
    CHECK(lo.got.size() == 3);
  }
  SUBCASE("single active consumer: only the first registered gets messages") {
    QueueArgs a;
    a.single_active_consumer = true;
    auto q = make_queue(owner, a);
    CreditTarget first, second;
    first.credit = second.credit = 10;
    auto c1 = std::make_shared<Consumer>(first, "1", q), c2 = std::make_shared<Consumer>(second, "2", q);
    c2->priority = 10;  // ignored for single active consumer (RabbitMQ 3.10)
    q->consume(*c1);
    q->consume(*c2);
    for (int i = 0; i < 3; ++i) q->enqueue(msg(std::to_string(i)));
    CHECK(first.got.size() == 3);
    CHECK(second.got.empty());
    q->cancel(*c1);
    q->enqueue(msg("x"));
    CHECK(second.got.size() == 1);
  }
}

TEST_CASE("paging: beyond its RAM window a queue keeps only index entries, and delivers everything in order") {
  test::TempDir dir;
  asio::io_context io;
  mqnode::store::Store store(io, (dir.path / "mqnode.db").string(), test::quiet_log());
  RecordingOwner owner;
  QueueDefinition d;
  d.name = "q";
  constexpr uint64_t kWindow = 64 << 10;
  auto q = std::make_shared<Queue>(d, "/", &store, &owner, kWindow);
  constexpr int kCount = 500;
  for (int i = 0; i < kCount; ++i) {
    REQUIRE(q->enqueue(msg(std::to_string(i), 1024)).accepted);
  }
  CHECK(q->message_count() == kCount);
  CHECK(q->message_bytes() == kCount * 1024);
  CHECK(q->resident_cost() <= kWindow);
  CHECK(q->messages_resident() < 64);
  CHECK(store.stats().pending_bytes > 0);  // the rest is on its way to the store

  // Once written, the paged-out copies leave RAM.
  test::run_until(io, [&] { return store.stats().pending_bytes == 0; });
  const auto resident = q->messages_resident();
  q->release_paged();
  CHECK(store.stats().messages_loaded == 0);  // the head is still a full half-window

  // basic.get on whatever the head is, then a consumer drains the rest through page-ins.
  auto first = q->get();
  REQUIRE(first);
  CHECK(first->msg->routing_key == "0");
  CreditTarget t;
  t.credit = kCount;
  auto c = std::make_shared<Consumer>(t, "c", q);
  q->consume(*c);
  test::run_until(io, [&] { return t.got.size() == kCount - 1; });
  for (int i = 1; i < kCount; ++i) CHECK(t.got[static_cast<std::size_t>(i - 1)].second == std::to_string(i));
  CHECK(store.stats().messages_loaded == kCount - resident);  // each paged-out one read back once
  CHECK(q->message_count() == 0);
  CHECK(q->resident_cost() == 0);
  q->cancel(*c);
}

TEST_CASE("paging: a paged-out head is read back at once for basic.get and for dead-lettering") {
  test::TempDir dir;
  asio::io_context io;
  mqnode::store::Store store(io, (dir.path / "mqnode.db").string(), test::quiet_log());
  RecordingOwner owner;
  QueueDefinition d;
  d.name = "q";
  d.args.dead_letter_exchange = "dlx";
  d.args.max_length = 3;
  auto q = std::make_shared<Queue>(d, "/", &store, &owner, 0);  // a zero window pages out everything
  for (const char* k : {"a", "b", "c"}) q->enqueue(msg(k, 10));
  CHECK(q->messages_resident() == 0);
  test::run_until(io, [&] { return store.stats().pending_bytes == 0; });
  q->release_paged();  // (no page-in: the window is empty)
  q->enqueue(msg("d", 10));  // over x-max-length: the head is dead-lettered with its content
  REQUIRE(owner.dead.size() == 1);
  CHECK(owner.dead[0].first == "a");
  auto e = q->get();
  REQUIRE(e);
  CHECK(e->msg->routing_key == "b");
  CHECK(e->msg->body.size() == 10);
}
