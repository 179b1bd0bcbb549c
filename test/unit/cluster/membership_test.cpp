// Membership as the event bus carries it: the member diff, the majority watch, and the
// flow from publisher to subscribers (core::EventBus).
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "cluster/membership.hpp"
#include "core/events.hpp"

using mqnode::cluster::diff_members;
using mqnode::cluster::Member;
using mqnode::cluster::QuorumWatch;
using mqnode::cluster::Role;
using mqnode::core::EventBus;
using mqnode::core::MembershipEvent;
using namespace std::chrono_literals;

TEST_CASE("diff_members: joined and left by id, a role change is neither") {
  const std::vector<Member> before{{1, "10.0.0.1:25672", Role::Voter}, {2, "10.0.0.2:25672", Role::Voter}};
  SUBCASE("a node joins") {
    auto after = before;
    after.push_back({3, "10.0.0.3:25672", Role::Standby});
    auto d = diff_members(before, after);
    REQUIRE(d.joined.size() == 1);
    CHECK(d.joined[0].id == 3);
    CHECK(d.left.empty());
  }
  SUBCASE("a node rejoins under a new id at the same address: one left, one joined") {
    std::vector<Member> after{{1, "10.0.0.1:25672", Role::Voter}, {7, "10.0.0.2:25672", Role::Voter}};
    auto d = diff_members(before, after);
    REQUIRE(d.joined.size() == 1);
    REQUIRE(d.left.size() == 1);
    CHECK(d.joined[0].id == 7);
    CHECK(d.left[0].id == 2);
  }
  SUBCASE("a role change") {
    std::vector<Member> after{{1, "10.0.0.1:25672", Role::Voter}, {2, "10.0.0.2:25672", Role::Standby}};
    auto d = diff_members(before, after);
    CHECK(d.joined.empty());
    CHECK(d.left.empty());
  }
}

TEST_CASE("QuorumWatch: a minority only after the grace, a majority at once") {
  QuorumWatch w(2s);
  const auto t0 = QuorumWatch::Clock::time_point{} + 100s;
  CHECK_FALSE(w.update(true, t0).has_value());
  CHECK_FALSE(w.update(false, t0 + 1s).has_value());  // an election may be under way
  CHECK_FALSE(w.update(false, t0 + 2500ms).has_value());  // 1.5 s without a leader
  auto lost = w.update(false, t0 + 3100ms);
  REQUIRE(lost.has_value());
  CHECK_FALSE(*lost);
  CHECK_FALSE(w.majority());
  CHECK_FALSE(w.update(false, t0 + 10s).has_value());  // reported once
  auto back = w.update(true, t0 + 11s);
  REQUIRE(back.has_value());
  CHECK(*back);
  CHECK_FALSE(w.update(false, t0 + 11500ms).has_value());  // the grace starts again
}

TEST_CASE("EventBus: membership events reach every subscriber in order, until it unsubscribes") {
  EventBus bus;
  std::vector<std::string> lb, vip;
  const int a = bus.subscribe_membership([&](const MembershipEvent& e) {
    lb.push_back(std::string(mqnode::core::kind_name(e.kind)) + ":" + e.node);
  });
  bus.subscribe_membership([&](const MembershipEvent& e) { vip.push_back(mqnode::core::kind_name(e.kind)); });
  int health_calls = 0;
  bus.subscribe_health([&](std::string_view, const mqnode::core::Health&) { ++health_calls; });

  bus.publish_membership({MembershipEvent::Kind::Joined, "mq2", "disc"});
  bus.publish_membership({MembershipEvent::Kind::Minority, "mq1", ""});
  bus.unsubscribe(a);
  bus.publish_membership({MembershipEvent::Kind::Majority, "mq1", ""});
  bus.publish_membership({MembershipEvent::Kind::Left, "mq3", ""});

  CHECK(lb == std::vector<std::string>{"joined:mq2", "minority:mq1"});
  CHECK(vip == std::vector<std::string>{"joined", "minority", "majority", "left"});
  CHECK(health_calls == 0);  // membership does not reach health subscribers
}
