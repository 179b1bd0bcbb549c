#include <doctest/doctest.h>

#include "broker/queue_wire.hpp"

using namespace mqnode::broker;

namespace {
Message sample(std::string body) {
  Message m;
  m.exchange = "ex";
  m.routing_key = "a.b";
  m.properties = {0x10, 0x00, 0x02};
  m.body.assign(body.begin(), body.end());
  m.persistent = true;
  m.priority = 3;
  m.ttl_ms = 1500;
  return m;
}

std::vector<uint8_t> bytes_of(const wire::Frame& f) {
  std::vector<uint8_t> out;
  wire::encode(f, out);
  return out;
}
}  // namespace

TEST_CASE("queue wire: every frame kind round-trips to the same bytes") {
  wire::Reply with_message;
  with_message.request = 9;
  with_message.messages = 4;
  with_message.fetched = wire::Fetched{77, true, sample("got")};
  wire::Reply refusal;
  refusal.request = 10;
  refusal.code = 404;
  refusal.text = "home node 'mq3' of durable queue 'q' in vhost '/' is down or inaccessible";
  const std::vector<wire::Frame> frames = {
      wire::Publish{"/", "work", 42, sample("hello")},
      wire::Subscribe{1, "/", "work", 2, true, false, true, -5, 10},
      wire::Cancel{2},
      wire::Credit{2, 64},
      wire::Settle{wire::SettleKind::Requeue, {5, 6, 7}},
      wire::Request{wire::RequestKind::Purge, 3, "vh", "q"},
      with_message,
      refusal,
      wire::Published{42, true},
      wire::Deliver{2, 11, true, sample(std::string(70000, 'x'))},
      wire::Cancelled{2},
  };
  for (const auto& f : frames) {
    auto b = bytes_of(f);
    auto back = wire::decode(b);
    CHECK(back.index() == f.index());
    CHECK(bytes_of(back) == b);
  }
  auto p = std::get<wire::Publish>(wire::decode(bytes_of(frames[0])));
  CHECK(p.vhost == "/");
  CHECK(p.token == 42);
  CHECK(std::string(p.msg.body.begin(), p.msg.body.end()) == "hello");
  CHECK(p.msg.ttl_ms == 1500);
  CHECK(p.msg.priority == 3);
  auto s = std::get<wire::Subscribe>(wire::decode(bytes_of(frames[1])));
  CHECK((s.exclusive && !s.no_ack && s.credit_on_settle && s.priority == -5 && s.window == 10));
  auto r = std::get<wire::Reply>(wire::decode(bytes_of(with_message)));
  REQUIRE(r.fetched.has_value());
  CHECK(r.fetched->tag == 77);
  CHECK(r.fetched->redelivered);
}

TEST_CASE("queue wire: malformed payloads are refused with a reason") {
  auto good = bytes_of(wire::Publish{"/", "q", 1, sample("abc")});
  for (std::size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
    CHECK_THROWS_AS(wire::decode(cut), wire::DecodeError);
  }
  auto trailing = good;
  trailing.push_back(0);
  CHECK_THROWS_WITH_AS(wire::decode(trailing), "queue frame has 1 trailing bytes", wire::DecodeError);
  CHECK_THROWS_WITH_AS(wire::decode(std::vector<uint8_t>{99}), "unknown queue frame kind 99", wire::DecodeError);
  // A settlement that claims more tags than the frame holds is refused before allocating.
  std::vector<uint8_t> huge = {5, 1, 0xff, 0xff, 0xff, 0xff};
  CHECK_THROWS_AS(wire::decode(huge), wire::DecodeError);
  // One encoding per value (the fuzzer checks frames re-encode to their own bytes).
  std::vector<uint8_t> loose_flag = {8, 0, 0, 0, 0, 0, 0, 0, 7, 'V'};
  CHECK_THROWS_WITH_AS(wire::decode(loose_flag), "flag byte 86 is neither 0 nor 1",
                       wire::DecodeError);
  std::vector<uint8_t> bad_kind = {6, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
  CHECK_THROWS_WITH_AS(wire::decode(bad_kind), "unknown request kind 9", wire::DecodeError);
}
