// Basic content properties: flag bits, round trips, hostile flags and truncation, and a
// cross-check of the flag order against the spec JSON.
#include <doctest/doctest.h>

#include "amqp/codec.hpp"
#include "amqp/methods.hpp"
#include "amqp/properties.hpp"
#include "test_util.hpp"

using namespace mqnode::amqp;
using namespace mqnode::amqp::test;

namespace {

BasicProperties all_set() {
  BasicProperties p;
  p.content_type = "application/json";
  p.content_encoding = "gzip";
  FieldTable h;
  h.set("x-match", "all");
  h.set("n", int32_t{5});
  p.headers = h;
  p.delivery_mode = 2;
  p.priority = 9;
  p.correlation_id = "corr";
  p.reply_to = "amq.rabbitmq.reply-to";
  p.expiration = "60000";
  p.message_id = "mid";
  p.timestamp = 1700000000;
  p.type = "t";
  p.user_id = "guest";
  p.app_id = "app";
  p.cluster_id = "c";
  return p;
}

// decode_properties and validate_properties accept and reject the same input.
bool validate_agrees(std::span<const uint8_t> raw) {
  bool decoded = true;
  try {
    (void)decode_properties(raw);
  } catch (const DecodeError&) {
    decoded = false;
  }
  bool valid = true;
  try {
    validate_properties(raw);
  } catch (const DecodeError&) {
    valid = false;
  }
  CHECK(valid == decoded);
  return decoded;
}

Bytes encode(const BasicProperties& p) {
  Bytes out;
  encode_properties(p, out);
  return out;
}

uint16_t flags_of(const Bytes& b) { return static_cast<uint16_t>((b.at(0) << 8) | b.at(1)); }

// Sets the one property named <name> (spec spelling), so the flag order can be checked
// against the spec's property list.
BasicProperties only(std::string_view name) {
  BasicProperties p;
  if (name == "content-type") p.content_type = "";
  else if (name == "content-encoding") p.content_encoding = "";
  else if (name == "headers") p.headers = FieldTable{};
  else if (name == "delivery-mode") p.delivery_mode = 0;
  else if (name == "priority") p.priority = 0;
  else if (name == "correlation-id") p.correlation_id = "";
  else if (name == "reply-to") p.reply_to = "";
  else if (name == "expiration") p.expiration = "";
  else if (name == "message-id") p.message_id = "";
  else if (name == "timestamp") p.timestamp = 0;
  else if (name == "type") p.type = "";
  else if (name == "user-id") p.user_id = "";
  else if (name == "app-id") p.app_id = "";
  else if (name == "cluster-id") p.cluster_id = "";
  else FAIL("unknown property " << name);
  return p;
}

}  // namespace

TEST_CASE("no properties set") {
  const Bytes b = encode({});
  CHECK(b == hex("0000"));
  CHECK(decode_properties(b) == BasicProperties{});
}

TEST_CASE("a few properties set: known bytes") {
  BasicProperties p;
  p.content_type = "text/plain";
  p.delivery_mode = 2;
  p.timestamp = 0x0102030405060708ULL;
  const Bytes expect = hex("9040 0a'text/plain' 02 0102030405060708");
  CHECK(to_hex(encode(p)) == to_hex(expect));
  CHECK(decode_properties(expect) == p);
}

TEST_CASE("all 14 properties set") {
  const BasicProperties p = all_set();
  const Bytes b = encode(p);
  CHECK(flags_of(b) == 0xfffc);
  CHECK(decode_properties(b) == p);
  SUBCASE("truncated at every length") {
    for (std::size_t n = 0; n < b.size(); ++n) {
      CAPTURE(n);
      CHECK_THROWS_AS(decode_properties(std::span<const uint8_t>(b).first(n)), DecodeError);
      CHECK_FALSE(validate_agrees(std::span<const uint8_t>(b).first(n)));
    }
    CHECK(validate_agrees(b));
  }
  SUBCASE("trailing bytes") {
    Bytes more = b;
    more.push_back(0);
    CHECK_THROWS_AS(decode_properties(more), DecodeError);
    CHECK_FALSE(validate_agrees(more));
  }
  SUBCASE("every flag combination over a full property list") {
    // Clearing flags makes the list too long (trailing bytes) or misaligned; whatever the
    // outcome, the validator must agree with the decoder.
    Bytes v = b;
    for (uint32_t flags = 0; flags < 0x10000; flags += 3) {
      v[0] = static_cast<uint8_t>(flags >> 8);
      v[1] = static_cast<uint8_t>(flags);
      validate_agrees(v);
    }
  }
}

TEST_CASE("each property alone sets the flag the spec order gives it") {
  const auto& props = spec_json();
  const nlohmann::json* basic = nullptr;
  for (const auto& c : props["classes"]) {
    if (c["name"] == "basic") basic = &c;
  }
  REQUIRE(basic);
  const auto& list = (*basic)["properties"];
  REQUIRE(list.size() == 14);
  const auto table = basic_property_table();
  REQUIRE(table.size() == 14);
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string name = list[i]["name"];
    CAPTURE(name);
    CHECK(table[i].name == name);
    CHECK(table[i].type == list[i]["type"].get<std::string>());
    CHECK(table[i].flag == (1u << (15 - i)));
    const BasicProperties p = only(name);
    const Bytes b = encode(p);
    CHECK(flags_of(b) == table[i].flag);
    CHECK(decode_properties(b) == p);
  }
}

TEST_CASE("flag words") {
  SUBCASE("bit 1 names a 15th property") {
    const Bytes b = hex("0002");
    CHECK_THROWS_AS(decode_properties(b), DecodeError);
    CHECK_THROWS_AS(validate_properties(b), DecodeError);
  }
  SUBCASE("an empty continuation word is accepted") {
    const Bytes b = hex("1001 0000 02");
    BasicProperties p;
    p.delivery_mode = 2;
    CHECK(decode_properties(b) == p);
    const Bytes chain = hex("1001 0001 0001 0000 02");
    CHECK(decode_properties(chain) == p);
    CHECK(validate_agrees(chain));
  }
  SUBCASE("a continuation word naming more properties") {
    const Bytes b = hex("0001 8000 00");
    CHECK_THROWS_AS(decode_properties(b), DecodeError);
    CHECK_FALSE(validate_agrees(b));
  }
  SUBCASE("a continuation word that is missing") {
    const Bytes b = hex("0001");
    CHECK_THROWS_AS(decode_properties(b), DecodeError);
  }
  SUBCASE("empty input") {
    CHECK_THROWS_AS(decode_properties({}), DecodeError);
  }
}

TEST_CASE("headers with nested values round-trip inside properties") {
  BasicProperties p;
  FieldTable inner;
  inner.set("deep", FieldArray{int64_t{1}, "two", FieldTable{}});
  FieldTable h;
  h.set("inner", inner);
  p.headers = h;
  const Bytes b = encode(p);
  CHECK(decode_properties(b) == p);
}

TEST_CASE("encode_properties leaves the buffer unchanged on EncodeError") {
  BasicProperties p = all_set();
  p.app_id = std::string(256, 'a');
  Bytes out = {1, 2, 3};
  CHECK_THROWS_AS(encode_properties(p, out), EncodeError);
  CHECK(out == hex("010203"));
}
