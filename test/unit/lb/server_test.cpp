#include <doctest/doctest.h>

#include "lb/backend.hpp"
#include "lb/health_check.hpp"
#include "test_util.hpp"

using namespace mqnode::lb;
using namespace mqnode::lb::test;
using namespace std::chrono_literals;

TEST_CASE("rise/fall as HAProxy: start up one failure from down, transitional status words") {
  Servers s;
  s.check.rise = 2;
  s.check.fall = 3;
  auto& a = s.add(server_cfg("a"));
  Clock::time_point t0{};
  CHECK(a.up());
  CHECK(a.status_word() == "UP 1/3");
  CHECK(a.health() == 2);
  SUBCASE("first failure at start marks down") {
    CHECK(a.record_check(false, t0));
    CHECK_FALSE(a.up());
    CHECK(a.status_word() == "DOWN");
    CHECK(a.stats.chkdown == 1);
  }
  SUBCASE("steady up needs fall failures; a success resets") {
    a.record_check(true, t0);
    CHECK(a.status_word() == "UP");
    CHECK(a.health() == 4);
    CHECK_FALSE(a.record_check(false, t0));
    CHECK(a.status_word() == "UP 2/3");
    CHECK(a.transitioning());
    a.record_check(true, t0);
    CHECK(a.status_word() == "UP");
    a.record_check(false, t0);
    a.record_check(false, t0);
    CHECK(a.up());
    CHECK(a.status_word() == "UP 1/3");
    CHECK(a.record_check(false, t0 + 10s));
    CHECK(a.status_word() == "DOWN");
    CHECK(a.stats.chkfail == 4);
    CHECK_FALSE(a.record_check(true, t0 + 12s));
    CHECK(a.status_word() == "DOWN 1/2");
    CHECK(a.health() == 1);
    CHECK(a.record_check(true, t0 + 14s));
    CHECK(a.status_word() == "UP");
    CHECK(a.downtime_s(t0 + 20s) == 4);
    CHECK(a.last_change_s(t0 + 20s) == 6);
  }
  SUBCASE("admin states") {
    a.record_check(true, t0);
    a.set_drain(true);
    CHECK(a.status_word() == "DRAIN");
    CHECK_FALSE(a.usable());
    a.set_drain(false);
    a.set_maint(true, t0);
    CHECK(a.status_word() == "MAINT");
    a.set_maint(false, t0);
    a.set_weight(0);
    CHECK(a.status_word() == "UP 1/3");  // leaving maint re-checks first
    a.record_check(true, t0);
    CHECK(a.status_word() == "NOLB");
    a.set_weight(1);
    a.set_local_down(true);
    CHECK(a.status_word() == "DRAIN");
    CHECK_FALSE(a.in_rotation());
  }
  SUBCASE("unchecked servers say 'no check'") {
    s.check.type = CheckType::None;
    auto& b = s.add(server_cfg("b"));
    CHECK(b.status_word() == "no check");
    CHECK_FALSE(b.checked());
  }
}

TEST_CASE("backend: backups only when no active server; act/bck/weight columns") {
  BackendConfig bc;
  bc.name = "be";
  bc.balance = Algorithm::RoundRobin;
  bc.servers = {server_cfg("a", 2), server_cfg("b", 1), server_cfg("k1", 5, true), server_cfg("k2", 7, true)};
  Backend be(bc, 3, Clock::time_point{});
  CHECK(be.active_up() == 2);
  CHECK(be.backup_up() == 2);
  CHECK(be.total_weight() == 3);
  for (int i = 0; i < 10; ++i) CHECK_FALSE(be.pick({})->backup());
  mark_down(*be.find("a"));
  mark_down(*be.find("b"));
  be.on_server_change();
  CHECK(be.pick({}) == be.find("k1"));
  CHECK(be.pick({}) == be.find("k1"));
  CHECK(be.total_weight() == 5 + 7);
  PickContext ctx;
  ctx.avoid = be.find("k1");
  CHECK(be.pick(ctx) == be.find("k2"));
  CHECK(be.refresh_state({}) == false);
  mark_down(*be.find("k1"));
  mark_down(*be.find("k2"));
  CHECK(be.pick({}) == nullptr);
  CHECK_FALSE(be.up());
  CHECK(be.refresh_state(Clock::time_point{} + 1s));
  CHECK(be.stats.chkdown == 1);
}

TEST_CASE("backend queue: full servers queue sessions, freed slots go to the oldest waiter") {
  BackendConfig bc;
  bc.name = "be";
  bc.balance = Algorithm::RoundRobin;
  bc.servers = {server_cfg("a", 1, false, 1), server_cfg("b", 1, false, 1)};
  Backend be(bc, 3, Clock::time_point{});
  Clock::time_point t0{};
  auto* a = be.find("a");
  auto* b = be.find("b");
  for (int i = 0; i < 2; ++i) be.pick({})->session_started(t0);
  CHECK(a->full());
  CHECK(b->full());
  CHECK(be.pick({}) == nullptr);
  CHECK(be.up());  // full is not down: new sessions queue instead of failing
  std::vector<std::string> granted;
  auto waiter = [&](std::string who) {
    return Backend::Waiter{{}, [&granted, who](Server& s) { granted.push_back(who + "@" + s.name()); }};
  };
  be.enqueue(waiter("w1"));
  auto w2 = be.enqueue(waiter("w2"));
  be.enqueue(waiter("w3"));
  CHECK(be.stats.qcur == 3);
  CHECK(be.stats.qmax == 3);
  be.dispatch(t0);  // nothing free: nobody moves
  CHECK(granted.empty());
  SUBCASE("a slot freed goes to the oldest; a waiter that gave up is skipped") {
    be.dequeue(w2);
    CHECK(be.stats.qcur == 2);
    be.release(*b, t0);
    CHECK(granted == std::vector<std::string>{"w1@b"});
    CHECK(b->stats.scur == 1);  // the slot is the waiter's at once: no newcomer can take it
    CHECK(be.pick({}) == nullptr);
    be.release(*a, t0);
    CHECK(granted == std::vector<std::string>{"w1@b", "w3@a"});
    CHECK(be.stats.qcur == 0);
    CHECK(be.stats.qmax == 3);
    CHECK(be.stats.queued == 3);
  }
  SUBCASE("a server with room again (maxconn via reload, or a new server) takes the queue") {
    auto bigger = bc;
    bigger.servers[0].maxconn = 3;
    be.reconfigure(bigger, t0);
    be.on_server_change();
    be.dispatch(t0);
    CHECK(granted == std::vector<std::string>{"w1@a", "w2@a"});
    CHECK(be.queue_length() == 1);
  }
}

TEST_CASE("amqp check: connection.start frame recognised in any split") {
  // A short connection.start: type 1, channel 0, size 8, class 10, method 10, version
  // 0-9 and two argument bytes (the check does not decode arguments), then 0xCE.
  std::vector<uint8_t> start = {1, 0, 0, 0, 0, 0, 8, 0, 10, 0, 10, 0, 9, 0, 0, 0xCE};
  for (std::size_t n = 0; n < start.size(); ++n)
    CHECK(classify_amqp_reply(std::span(start).first(n)) == AmqpReply::NeedMore);
  CHECK(classify_amqp_reply(start) == AmqpReply::Ok);
  auto bad_end = start;
  bad_end.back() = 0;
  CHECK(classify_amqp_reply(bad_end) == AmqpReply::Bad);
  std::vector<uint8_t> header = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
  CHECK(classify_amqp_reply(header) == AmqpReply::Bad);
  auto tune = start;
  tune[10] = 30;  // connection.tune instead of start
  CHECK(classify_amqp_reply(tune) == AmqpReply::Bad);
  auto chan1 = start;
  chan1[2] = 1;
  CHECK(classify_amqp_reply(chan1) == AmqpReply::Bad);
  std::vector<uint8_t> huge = {1, 0, 0, 0x7f, 0, 0, 0};
  CHECK(classify_amqp_reply(huge) == AmqpReply::Bad);
}
