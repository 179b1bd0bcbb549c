// Generated method table: cross-checked against the spec JSON at run time, every method
// round-tripped with non-default values against an encoder written here from the JSON, and
// a few methods checked against hand-written bytes.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <type_traits>
#include <utility>

#include "amqp/codec.hpp"
#include "amqp/frame.hpp"
#include "amqp/methods.hpp"
#include "test_util.hpp"

using namespace mqnode::amqp;
using namespace mqnode::amqp::test;
using nlohmann::json;

namespace {

struct SpecField {
  std::string name;  // spec spelling
  std::string type;  // resolved
  json default_value;  // null when the spec has none
};

struct SpecMethod {
  uint16_t class_id;
  uint16_t method_id;
  std::string name;
  bool synchronous;
  bool content;
  std::vector<SpecField> fields;
};

std::vector<SpecMethod> spec_methods() {
  const json& spec = spec_json();
  std::map<std::string, std::string> domains;
  for (const auto& d : spec["domains"]) domains[d[0].get<std::string>()] = d[1].get<std::string>();
  std::vector<SpecMethod> out;
  for (const auto& c : spec["classes"]) {
    for (const auto& m : c["methods"]) {
      SpecMethod sm;
      sm.class_id = c["id"].get<uint16_t>();
      sm.method_id = m["id"].get<uint16_t>();
      sm.name = c["name"].get<std::string>() + "." + m["name"].get<std::string>();
      sm.synchronous = m.value("synchronous", false);
      sm.content = m.value("content", false);
      for (const auto& a : m["arguments"]) {
        SpecField f;
        f.name = a["name"].get<std::string>();
        if (a.contains("type")) {
          f.type = a["type"].get<std::string>();
        } else {
          const std::string d = a["domain"].get<std::string>();
          REQUIRE_MESSAGE(domains.count(d), "unknown domain " << d);
          f.type = domains[d];
        }
        f.default_value = a.contains("default-value") ? a["default-value"] : json();
        sm.fields.push_back(f);
      }
      out.push_back(sm);
    }
  }
  return out;
}

template <std::size_t... I>
Method make_method(std::size_t index, std::index_sequence<I...>) {
  static constexpr Method (*kMakers[])() = {+[]() { return Method(std::in_place_index<I>); }...};
  return kMakers[index]();
}

Method make_method(std::size_t index) {
  return make_method(index, std::make_index_sequence<std::variant_size_v<Method>>{});
}

// The distinctive non-default value field <k> of a method gets in the round-trip test.
std::string string_value(const SpecField& f, std::size_t k) {
  std::string s = underscored(f.name) + "-" + std::to_string(k);
  if (f.type == "longstr") s += std::string(300, 'L');  // needs the 4-byte length
  return s;
}
uint64_t int_value(const std::string& type, std::size_t k) {
  if (type == "octet") return 0xa0 + k;
  if (type == "short") return 0xb100 + k;
  if (type == "long") return 0xc2000000u + k;
  return 0xd300000000000000ULL + k;  // longlong, timestamp
}
bool bit_value(const SpecField& f) {
  return !(f.default_value.is_boolean() && f.default_value.get<bool>());
}
FieldTable table_value(std::size_t k) {
  FieldTable t;
  t.set("key-" + std::to_string(k), "v");
  t.set("n", int32_t(k));
  return t;
}

// Arguments encoded from the spec JSON alone (not through amqp::Writer).
Bytes expected_bytes(const SpecMethod& m) {
  Builder b;
  b.u16(m.class_id).u16(m.method_id);
  int bit = -1;  // next bit position in the current bit octet, -1 = no open octet
  std::size_t bit_octet = 0;
  for (std::size_t k = 0; k < m.fields.size(); ++k) {
    const SpecField& f = m.fields[k];
    if (f.type == "bit") {
      if (bit < 0 || bit == 8) {
        bit_octet = b.b.size();
        b.u8(0);
        bit = 0;
      }
      if (bit_value(f)) b.b[bit_octet] |= static_cast<uint8_t>(1u << bit);
      ++bit;
      continue;
    }
    bit = -1;
    if (f.type == "octet") b.u8(int_value(f.type, k));
    else if (f.type == "short") b.u16(int_value(f.type, k));
    else if (f.type == "long") b.u32(int_value(f.type, k));
    else if (f.type == "longlong" || f.type == "timestamp") b.u64(int_value(f.type, k));
    else if (f.type == "shortstr") b.sstr(string_value(f, k));
    else if (f.type == "longstr") b.lstr(string_value(f, k));
    else if (f.type == "table") {
      Builder t;
      t.sstr("key-" + std::to_string(k)).u8('S').lstr("v").sstr("n").u8('I').u32(k);
      b.u32(t.b.size()).raw(t.b);
    } else {
      FAIL("unexpected type " << f.type);
    }
  }
  return b.b;
}

Bytes encoded(const Method& m) {
  Bytes out;
  Writer w(out);
  encode_method(m, w);
  return out;
}

Bytes method_frame(uint16_t channel, const Bytes& payload) {
  return Builder{}.u8(1).u16(channel).u32(payload.size()).raw(payload).u8(0xce).b;
}

}  // namespace

TEST_CASE("method_table() matches the spec JSON exactly") {
  const std::vector<SpecMethod> spec = spec_methods();
  const auto table = method_table();
  REQUIRE(table.size() == spec.size());
  CHECK(spec.size() == std::variant_size_v<Method>);
  for (std::size_t i = 0; i < spec.size(); ++i) {
    const SpecMethod& s = spec[i];
    const MethodInfo& t = table[i];
    CAPTURE(s.name);
    CHECK(t.class_id == s.class_id);
    CHECK(t.method_id == s.method_id);
    CHECK(t.name == s.name);
    CHECK(t.synchronous == s.synchronous);
    CHECK(t.has_content == s.content);
    REQUIRE(t.fields.size() == s.fields.size());
    for (std::size_t k = 0; k < s.fields.size(); ++k) {
      CHECK(t.fields[k].name == s.fields[k].name);
      CHECK(t.fields[k].type == s.fields[k].type);
    }
    CHECK(find_method(s.class_id, s.method_id) == &t);
  }
  CHECK(find_method(60, 999) == nullptr);
  CHECK(find_method(0, 0) == nullptr);
  CHECK(find_method(11, 10) == nullptr);
}

TEST_CASE("every method: constants, defaults, member names") {
  const std::vector<SpecMethod> spec = spec_methods();
  REQUIRE(spec.size() == std::variant_size_v<Method>);
  for (std::size_t i = 0; i < spec.size(); ++i) {
    const SpecMethod& s = spec[i];
    CAPTURE(s.name);
    const Method m = make_method(i);
    CHECK(&method_info(m) == &method_table()[i]);
    std::visit(
        [&](const auto& x) {
          using M = std::decay_t<decltype(x)>;
          CHECK(M::kClassId == s.class_id);
          CHECK(M::kMethodId == s.method_id);
          CHECK(M::kName == s.name);
          CHECK(M::kSynchronous == s.synchronous);
          CHECK(M::kHasContent == s.content);
          std::size_t k = 0;
          M::for_each_field(x, [&](std::string_view name, const auto& member) {
            REQUIRE(k < s.fields.size());
            const SpecField& f = s.fields[k++];
            CAPTURE(f.name);
            CHECK(name == underscored(f.name));
            const json& dv = f.default_value;
            using T = std::decay_t<decltype(member)>;
            if constexpr (std::is_same_v<T, bool>) {
              CHECK(f.type == "bit");
              CHECK(member == (dv.is_boolean() && dv.get<bool>()));
            } else if constexpr (std::is_integral_v<T>) {
              CHECK(member == (dv.is_null() ? 0 : dv.get<uint64_t>()));
            } else if constexpr (std::is_same_v<T, std::string>) {
              CHECK((f.type == "shortstr" || f.type == "longstr"));
              CHECK(member == (dv.is_null() ? "" : dv.get<std::string>()));
            } else {
              static_assert(std::is_same_v<T, FieldTable>);
              CHECK(f.type == "table");
              CHECK(member.empty());
              CHECK((dv.is_null() || dv.empty()));
            }
          });
          CHECK(k == s.fields.size());
        },
        m);
  }
}

TEST_CASE("every method round-trips non-default values, matching the spec's layout") {
  const std::vector<SpecMethod> spec = spec_methods();
  REQUIRE(spec.size() == std::variant_size_v<Method>);
  for (std::size_t i = 0; i < spec.size(); ++i) {
    const SpecMethod& s = spec[i];
    CAPTURE(s.name);
    Method m = make_method(i);
    const Method defaults = m;
    std::visit(
        [&](auto& x) {
          using M = std::decay_t<decltype(x)>;
          std::size_t k = 0;
          M::for_each_field(x, [&](std::string_view, auto& member) {
            const SpecField& f = s.fields[k];
            using T = std::decay_t<decltype(member)>;
            if constexpr (std::is_same_v<T, bool>) {
              member = bit_value(f);
            } else if constexpr (std::is_integral_v<T>) {
              member = static_cast<T>(int_value(f.type, k));
            } else if constexpr (std::is_same_v<T, std::string>) {
              member = string_value(f, k);
            } else {
              member = table_value(k);
            }
            ++k;
          });
        },
        m);
    if (!s.fields.empty()) CHECK(m != defaults);

    const Bytes expect = expected_bytes(s);
    const Bytes got = encoded(m);
    CHECK(to_hex(got) == to_hex(expect));
    CHECK(decode_method(expect) == m);

    Bytes frame = {0x42};
    append_method_frame(frame, 0x0105, m);  // the Method overload
    std::visit([&](const auto& x) { append_method_frame(frame, 0x0105, x); }, m);  // template
    const Bytes one = method_frame(0x0105, expect);
    Bytes two = {0x42};
    two.insert(two.end(), one.begin(), one.end());
    two.insert(two.end(), one.begin(), one.end());
    CHECK(frame == two);

    for (std::size_t n = 0; n < expect.size(); ++n) {
      CAPTURE(n);
      const std::span<const uint8_t> prefix(expect.data(), n);
      try {
        (void)decode_method(prefix);
        FAIL("decoded a truncated payload");
      } catch (const UnknownMethod&) {
        FAIL("truncation reported as UnknownMethod");
      } catch (const DecodeError& e) {
        if (n >= 4) CHECK(std::string(e.what()).find(s.name) == 0);
      }
    }
    Bytes trailing = expect;
    trailing.push_back(0);
    CHECK_THROWS_AS(decode_method(trailing), DecodeError);
  }
}

TEST_CASE("known bytes") {
  SUBCASE("connection.tune 2047/131072/60") {
    const ConnectionTune m{2047, 131072, 60};
    Bytes out;
    append_method_frame(out, 0, m);
    CHECK(to_hex(out) == to_hex(hex("01 0000 0000000c  000a 001e  07ff 00020000 003c  ce")));
    CHECK(std::get<ConnectionTune>(decode_method(std::span(out).subspan(7, 12))) == m);
  }
  SUBCASE("basic.publish with bits") {
    BasicPublish m;
    m.exchange = "amq.direct";
    m.routing_key = "rk";
    m.mandatory = true;
    const Bytes expect = hex("003c 0028 0000 0a'amq.direct' 02'rk' 01");
    CHECK(encoded(m) == expect);
    CHECK(std::get<BasicPublish>(decode_method(expect)) == m);
    m.mandatory = false;
    m.immediate = true;
    CHECK(encoded(m).back() == 0x02);
    m.mandatory = true;
    CHECK(encoded(m).back() == 0x03);
  }
  SUBCASE("basic.deliver") {
    const BasicDeliver m{"ctag", 0x0102030405060708ULL, true, "", "q"};
    const Bytes expect = hex("003c 003c 04'ctag' 0102030405060708 01 00 01'q'");
    CHECK(encoded(m) == expect);
    Bytes frame;
    append_method_frame(frame, 3, m);
    CHECK(frame == method_frame(3, expect));
    CHECK(std::get<BasicDeliver>(decode_method(expect)) == m);
  }
  SUBCASE("queue.declare: five bits in one octet, then the table") {
    QueueDeclare m;
    m.queue = "q1";
    m.durable = true;
    m.nowait = true;
    m.arguments.set("x-max-length", int32_t{10});
    const Bytes expect = hex("0032 000a 0000 02'q1' 12 00000012 0c'x-max-length' 'I' 0000000a");
    CHECK(to_hex(encoded(m)) == to_hex(expect));
    CHECK(std::get<QueueDeclare>(decode_method(expect)) == m);
  }
  SUBCASE("exchange.declare defaults") {
    const Bytes expect = hex("0028 000a 0000 00 06'direct' 00 00000000");
    CHECK(encoded(ExchangeDeclare{}) == expect);
  }
  SUBCASE("basic.nack: requeue defaults to true") {
    const BasicNack m{.delivery_tag = 5};
    CHECK(encoded(m) == hex("003c 0078 0000000000000005 02"));
  }
  SUBCASE("basic.ack ignores unused bits, like RabbitMQ") {
    const Bytes in = hex("003c 0050 0000000000000009 fe");
    const auto ack = std::get<BasicAck>(decode_method(in));
    CHECK(ack.delivery_tag == 9);
    CHECK_FALSE(ack.multiple);
  }
  SUBCASE("connection.start with server properties") {
    ConnectionStart m;
    FieldTable caps;
    caps.set("publisher_confirms", true);
    m.server_properties.set("capabilities", caps);
    const Bytes expect = hex(
        "000a 000a 00 09"
        "0000 0027 0c'capabilities' 'F' 00000015 12'publisher_confirms' 't' 01"
        "00000005 'PLAIN' 00000005 'en_US'");
    CHECK(to_hex(encoded(m)) == to_hex(expect));
  }
  SUBCASE("channel.close") {
    const ChannelClose m{404, "NOT_FOUND - no queue 'q'", 50, 10};
    const Bytes built =
        Builder{}.u16(20).u16(40).u16(404).sstr("NOT_FOUND - no queue 'q'").u16(50).u16(10).b;
    CHECK(encoded(m) == built);
  }
}

TEST_CASE("unknown methods") {
  SUBCASE("unknown class") {
    const Bytes in = hex("000b 000a");
    try {
      (void)decode_method(in);
      FAIL("decoded");
    } catch (const UnknownMethod& e) {
      CHECK(e.class_id == 11);
      CHECK(e.method_id == 10);
    }
  }
  SUBCASE("unknown method of a known class, with arguments") {
    const Bytes in = hex("003c 03e7 0102");
    CHECK_THROWS_AS(decode_method(in), UnknownMethod);
    CHECK_THROWS_AS(decode_method(in), DecodeError);  // UnknownMethod is a DecodeError
  }
  SUBCASE("fewer than four bytes is a plain DecodeError") {
    const Bytes in = hex("003c 00");
    try {
      (void)decode_method(in);
      FAIL("decoded");
    } catch (const UnknownMethod&) {
      FAIL("UnknownMethod");
    } catch (const DecodeError&) {
    }
  }
}

TEST_CASE("a shortstr over 255 bytes is an EncodeError and leaves the buffer unchanged") {
  BasicPublish m;
  m.routing_key = std::string(256, 'k');
  Bytes out = {1, 2};
  CHECK_THROWS_AS(append_method_frame(out, 1, m), EncodeError);
  CHECK(out == hex("0102"));
  CHECK_THROWS_AS(append_method_frame(out, 1, Method(m)), EncodeError);
  CHECK(out == hex("0102"));
  m.routing_key.resize(255);
  append_method_frame(out, 1, m);
  CHECK(out.size() == 2 + 8 + 4 + 2 + 1 + 256 + 1);
}

TEST_CASE("designated initializers and aggregate order follow the spec") {
  const BasicConsume c{.queue = "q", .consumer_tag = "t", .no_ack = true};
  CHECK(c.ticket == 0);
  CHECK_FALSE(c.exclusive);
  const ConnectionClose cc{320, "CONNECTION_FORCED - shutdown", 0, 0};
  CHECK(cc.reply_text == "CONNECTION_FORCED - shutdown");
  CHECK(BasicReject{}.requeue);
  CHECK(ConnectionOpen{}.virtual_host == "/");
  CHECK(AccessRequestOk{}.ticket == 1);
  CHECK(ConnectionStartOk{}.locale == "en_US");
}
