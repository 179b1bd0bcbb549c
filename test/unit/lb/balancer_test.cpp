#include <doctest/doctest.h>

#include <map>

#include "lb/balancer/balancer.hpp"
#include "test_util.hpp"

using namespace mqnode::lb;
using namespace mqnode::lb::test;

namespace {
std::string sequence(Balancer& b, int n, const PickContext& ctx = {}) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    Server* s = b.pick(ctx);
    out += s ? s->name() : "-";
  }
  return out;
}
}  // namespace

TEST_CASE("weighted_map interleaves servers by weight") {
  CHECK(weighted_map({1, 1, 1}) == std::vector<std::size_t>{0, 1, 2});
  auto m = weighted_map({3, 1});
  CHECK(m == std::vector<std::size_t>{0, 0, 1, 0});
  CHECK(weighted_map({0, 2}) == std::vector<std::size_t>{1, 1});
  CHECK(weighted_map({}).empty());
}

TEST_CASE("roundrobin: weighted, smooth, and dynamic") {
  Servers s;
  auto& a = s.add(server_cfg("a", 3));
  s.add(server_cfg("b", 1));
  auto& c = s.add(server_cfg("c", 1));
  auto rr = make_balancer(Algorithm::RoundRobin, s.ptrs);
  SUBCASE("spread follows the weights over every cycle") {
    std::map<std::string, int> count;
    for (int i = 0; i < 500; ++i) ++count[rr->pick({})->name()];
    CHECK(count["a"] == 300);
    CHECK(count["b"] == 100);
    CHECK(count["c"] == 100);
    CHECK(sequence(*rr, 5) == "abaca");
  }
  SUBCASE("a down server is skipped at once and comes back") {
    mark_down(a);
    rr->on_server_change();
    CHECK(sequence(*rr, 4) == "bcbc");
    a.record_check(true, {});
    a.record_check(true, {});
    REQUIRE(a.up());
    rr->on_server_change();
    std::map<std::string, int> count;
    for (int i = 0; i < 50; ++i) ++count[rr->pick({})->name()];
    CHECK(count["a"] == 30);
  }
  SUBCASE("weight changes apply to the next picks; weight 0, drain and maint take none") {
    a.set_weight(1);
    rr->on_server_change();
    std::map<std::string, int> count;
    for (int i = 0; i < 30; ++i) ++count[rr->pick({})->name()];
    CHECK(count["a"] == 10);
    c.set_weight(0);
    a.set_drain(true);
    rr->on_server_change();
    CHECK(sequence(*rr, 3) == "bbb");
    a.set_drain(false);
    a.set_maint(true, {});
    CHECK(sequence(*rr, 2) == "bb");
  }
  SUBCASE("avoid skips the failed server unless it is the only one") {
    PickContext ctx;
    ctx.avoid = &a;
    for (int i = 0; i < 10; ++i) CHECK(rr->pick(ctx) != &a);
    mark_down(*s.owned[1]);
    c.set_maint(true, {});
    rr->on_server_change();
    CHECK(rr->pick(ctx) == &a);
  }
  SUBCASE("full servers (maxconn) are skipped; none usable gives nullptr") {
    Servers t;
    auto& x = t.add(server_cfg("x", 1, false, 1));
    t.add(server_cfg("y", 1, false, 1));
    auto b = make_balancer(Algorithm::RoundRobin, t.ptrs);
    Server* first = b->pick({});
    first->session_started({});
    Server* second = b->pick({});
    CHECK(second != first);
    second->session_started({});
    CHECK(b->pick({}) == nullptr);
    x.session_ended();
    CHECK(b->pick({}) == &x);
  }
}

TEST_CASE("static-rr: fixed map from configured weights; runtime weight only as zero/non-zero") {
  Servers s;
  auto& a = s.add(server_cfg("a", 2));
  auto& b = s.add(server_cfg("b", 1));
  s.add(server_cfg("c", 1));
  auto rr = make_balancer(Algorithm::StaticRr, s.ptrs);
  CHECK(sequence(*rr, 8) == "abcaabca");
  b.set_weight(100);  // not dynamic
  CHECK(sequence(*rr, 4) == "abca");
  b.set_weight(0);
  CHECK(sequence(*rr, 3) == "aca");
  mark_down(a);
  CHECK(sequence(*rr, 4) == "cccc");
}

TEST_CASE("leastconn: fewest sessions per weight, ties rotate") {
  Servers s;
  auto& a = s.add(server_cfg("a", 1));
  auto& b = s.add(server_cfg("b", 1));
  auto& c = s.add(server_cfg("c", 2));
  auto lc = make_balancer(Algorithm::LeastConn, s.ptrs);
  CHECK(sequence(*lc, 3) == "abc");  // all idle: rotate
  a.session_started({});
  b.session_started({});
  CHECK(lc->pick({}) == &c);
  c.session_started({});
  CHECK(lc->pick({}) == &c);  // 1/2 < 1/1
  c.session_started({});
  c.session_started({});
  Server* p = lc->pick({});
  CHECK((p == &a || p == &b));
  mark_down(a);
  mark_down(b);
  CHECK(lc->pick({}) == &c);
}

TEST_CASE("source: a client keeps its server; a change only moves what it must") {
  Servers s;
  for (const char* n : {"a", "b", "c"}) s.add(server_cfg(n));
  auto src = make_balancer(Algorithm::Source, s.ptrs);
  std::vector<asio::ip::address> clients;
  for (int i = 1; i <= 60; ++i) clients.push_back(asio::ip::make_address("10.0.0." + std::to_string(i)));
  std::map<std::string, int> count;
  std::vector<Server*> first;
  for (auto& ip : clients) {
    PickContext ctx;
    ctx.client = &ip;
    Server* x = src->pick(ctx);
    REQUIRE(x);
    CHECK(src->pick(ctx) == x);
    first.push_back(x);
    ++count[x->name()];
  }
  CHECK(count.size() == 3);  // every server gets some clients
  mark_down(*s.owned[1]);
  src->on_server_change();
  for (std::size_t i = 0; i < clients.size(); ++i) {
    PickContext ctx;
    ctx.client = &clients[i];
    Server* x = src->pick(ctx);
    CHECK(x != s.owned[1].get());
  }
  auto v6 = asio::ip::make_address("2001:db8::1");
  PickContext ctx6;
  ctx6.client = &v6;
  CHECK(src->pick(ctx6) != nullptr);
}
