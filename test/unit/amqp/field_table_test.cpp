// Field tables and arrays: every RabbitMQ type tag, byte-identical round trips, nesting,
// and hostile input (truncation at every length, bad tags, huge lengths, deep nesting).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <utility>

#include "amqp/codec.hpp"
#include "amqp/field_table.hpp"
#include "test_util.hpp"

using namespace mqnode::amqp;
using namespace mqnode::amqp::test;

namespace {

// Body of an array holding one value of every type but A/F.
Bytes scalar_values() {
  Builder v;
  v.u8('t').u8(1);
  v.u8('b').u8(0xfe);
  v.u8('B').u8(0xfe);
  v.u8('s').u16(0xfffe);
  v.u8('u').u16(0xfffe);
  v.u8('I').u32(0xfffffffe);
  v.u8('i').u32(0xfffffffe);
  v.u8('l').u64(0xfffffffffffffffeULL);
  v.u8('f').u32(0x3fc00000);  // 1.5f
  v.u8('d').u64(0x3ff8000000000000ULL);  // 1.5
  v.u8('D').u8(2).u32(1234);
  v.u8('S').lstr("hello");
  v.u8('x').lstr(std::string("\x00\xff\x7f", 3));
  v.u8('T').u64(0x65000000);
  v.u8('V');
  return v.b;
}

// A table with one entry of every type, nested table and array included.
Bytes every_type_table() {
  Builder inner;  // nested table: {"k": V, "n": I 7}
  inner.sstr("k").u8('V').sstr("n").u8('I').u32(7);
  Builder arr;
  arr.raw(scalar_values());
  arr.u8('F').u32(inner.b.size()).raw(inner.b);
  arr.u8('A').u32(0);  // empty nested array

  Builder body;
  body.sstr("t1").u8('t').u8(1);
  body.sstr("b").u8('b').u8(0xfe);
  body.sstr("B").u8('B').u8(0xfe);
  body.sstr("s").u8('s').u16(0xfffe);
  body.sstr("u").u8('u').u16(0xfffe);
  body.sstr("I").u8('I').u32(0xfffffffe);
  body.sstr("i").u8('i').u32(0xfffffffe);
  body.sstr("l").u8('l').u64(0xfffffffffffffffeULL);
  body.sstr("f").u8('f').u32(0x3fc00000);
  body.sstr("d").u8('d').u64(0x3ff8000000000000ULL);
  body.sstr("D").u8('D').u8(2).u32(1234);
  body.sstr("S").u8('S').lstr("hello");
  body.sstr("x").u8('x').lstr(std::string("\x00\xff\x7f", 3));
  body.sstr("A").u8('A').u32(arr.b.size()).raw(arr.b);
  body.sstr("T").u8('T').u64(0x65000000);
  body.sstr("F").u8('F').u32(inner.b.size()).raw(inner.b);
  body.sstr("V").u8('V');
  body.sstr("t0").u8('t').u8(0);
  body.sstr("").u8('F').u32(0);  // empty key, empty table
  return Builder{}.u32(body.b.size()).raw(body.b).b;
}

Bytes encode_table(const FieldTable& t) {
  Bytes out;
  Writer(out).table(t);
  return out;
}

Bytes encode_value(const FieldValue& v) {
  Bytes out;
  Writer(out).field_value(v);
  return out;
}

// <levels> tables nested inside each other ({"k": {"k": ... {}}}), outermost included.
Bytes nested_tables(std::size_t levels) {
  const std::size_t total = 7 * (levels - 1) + 4;
  Builder b;
  for (std::size_t i = 0; i + 1 < levels; ++i) {
    b.u32(total - 7 * i - 4).sstr("k").u8('F');
  }
  b.u32(0);
  REQUIRE(b.b.size() == total);
  return b.b;
}

// <levels> arrays nested as one field value ('A' [ 'A' [ ... [] ] ]).
Bytes nested_arrays(std::size_t levels) {
  const std::size_t total = 5 * levels;
  Builder b;
  for (std::size_t i = 0; i < levels; ++i) b.u8('A').u32(total - 5 * i - 5);
  return b.b;
}

// table() and skip_table() agree: both throw DecodeError, or both succeed having read the
// same bytes. Returns whether the table decoded.
bool skip_agrees(const Bytes& in) {
  std::size_t decoded_to = 0;
  bool decoded = true;
  try {
    Reader r(in);
    (void)r.table();
    decoded_to = r.position();
  } catch (const DecodeError&) {
    decoded = false;
  }
  bool skipped = true;
  Reader s(in);
  try {
    s.skip_table();
  } catch (const DecodeError&) {
    skipped = false;
  }
  CHECK(skipped == decoded);
  if (decoded && skipped) CHECK(s.position() == decoded_to);
  return decoded;
}

}  // namespace

TEST_CASE("a table with every type decodes to the tagged values") {
  const Bytes in = every_type_table();
  Reader r(in);
  const FieldTable t = r.table();
  CHECK(r.remaining() == 0);
  REQUIRE(t.entries.size() == 19);

  CHECK(t.find("t1")->v == FieldValue::Variant(true));
  CHECK(t.find("t0")->v == FieldValue::Variant(false));
  CHECK(t.find("b")->v == FieldValue::Variant(int8_t{-2}));
  CHECK(t.find("B")->v == FieldValue::Variant(uint8_t{254}));
  CHECK(t.find("s")->v == FieldValue::Variant(int16_t{-2}));
  CHECK(t.find("u")->v == FieldValue::Variant(uint16_t{0xfffe}));
  CHECK(t.find("I")->v == FieldValue::Variant(int32_t{-2}));
  CHECK(t.find("i")->v == FieldValue::Variant(uint32_t{0xfffffffe}));
  CHECK(t.find("l")->v == FieldValue::Variant(int64_t{-2}));
  CHECK(t.find("f")->v == FieldValue::Variant(1.5f));
  CHECK(t.find("d")->v == FieldValue::Variant(1.5));
  CHECK(t.find("D")->v == FieldValue::Variant(Decimal{2, 1234}));
  CHECK(t.find("S")->v == FieldValue::Variant(std::string("hello")));
  CHECK(t.find("x")->v == FieldValue::Variant(ByteArray{std::string("\x00\xff\x7f", 3)}));
  CHECK(t.find("T")->v == FieldValue::Variant(Timestamp{0x65000000}));
  CHECK(t.find("V")->v == FieldValue::Variant(Void{}));

  const FieldTable* inner = t.find("F")->as_table();
  REQUIRE(inner);
  REQUIRE(inner->entries.size() == 2);
  CHECK(inner->entries[0].first == "k");
  CHECK(inner->entries[0].second.tag() == 'V');
  CHECK(inner->find("n")->as_int() == 7);

  const FieldArray* arr = t.find("A")->as_array();
  REQUIRE(arr);
  REQUIRE(arr->size() == 17);
  const char* tags = "tbBsuIilfdDSxTVFA";
  for (std::size_t i = 0; i < arr->size(); ++i) CHECK((*arr)[i].tag() == tags[i]);
  CHECK(*(*arr)[15].as_table() == *inner);
  CHECK((*arr)[16].as_array()->empty());

  const FieldValue* empty_key = t.find("");
  REQUIRE(empty_key);
  CHECK(empty_key->as_table()->empty());
}

TEST_CASE("every type round-trips byte-identically") {
  SUBCASE("table") {
    const Bytes in = every_type_table();
    Reader r(in);
    const FieldTable t = r.table();
    CHECK(to_hex(encode_table(t)) == to_hex(in));
  }
  SUBCASE("array as a field value") {
    const Bytes body = scalar_values();
    const Bytes in = Builder{}.u8('A').u32(body.size()).raw(body).b;
    Reader r(in);
    const FieldValue v = r.field_value();
    CHECK(r.remaining() == 0);
    CHECK(v.tag() == 'A');
    CHECK(encode_value(v) == in);
  }
  SUBCASE("each scalar on its own") {
    const Bytes body = scalar_values();
    Reader r(body);
    while (r.remaining() > 0) {
      const std::size_t start = r.position();
      const FieldValue v = r.field_value();
      const Bytes expect(body.begin() + start, body.begin() + r.position());
      CHECK(encode_value(v) == expect);
      CHECK(static_cast<uint8_t>(v.tag()) == expect[0]);
    }
  }
  SUBCASE("NaN floats keep their bits") {
    const Bytes in = hex("'f' 7fc00001 'd' 7ff8000000000001");
    Reader r(in);
    const FieldValue f = r.field_value();
    const FieldValue d = r.field_value();
    CHECK(std::isnan(std::get<float>(f.v)));
    Bytes out = encode_value(f);
    const Bytes dd = encode_value(d);
    out.insert(out.end(), dd.begin(), dd.end());
    CHECK(out == in);
  }
  SUBCASE("duplicate keys keep order and count") {
    const Bytes in = Builder{}.u32(11).sstr("a").u8('b').u8(1).sstr("a").u8('b').u8(2).sstr("b")
                         .u8('V').b;
    Reader r(in);
    const FieldTable t = r.table();
    REQUIRE(t.entries.size() == 3);
    CHECK(t.find("a")->as_int() == 1);
    CHECK(encode_table(t) == in);
  }
}

TEST_CASE("values built in code encode with their tags") {
  FieldTable t;
  t.set("bool", true);
  t.set("i8", int8_t{-1});
  t.set("u8", uint8_t{1});
  t.set("i16", int16_t{-1});
  t.set("u16", uint16_t{1});
  t.set("i32", int32_t{-1});
  t.set("u32", uint32_t{1});
  t.set("i64", int64_t{-1});
  t.set("str", "text");
  t.set("ts", Timestamp{5});
  t.set("void", FieldValue());
  const char* tags = "tbBsuIilSTV";
  for (std::size_t i = 0; i < t.entries.size(); ++i) CHECK(t.entries[i].second.tag() == tags[i]);
  const Bytes out = encode_table(t);
  Reader r(out);
  CHECK(r.table() == t);
}

TEST_CASE("FieldTable find/set and FieldValue accessors") {
  FieldTable t;
  CHECK(t.empty());
  CHECK(t.find("x") == nullptr);
  t.entries.emplace_back("x", int32_t{1});
  t.entries.emplace_back("x", int32_t{2});
  t.set("x", int32_t{3});  // replaces the first
  REQUIRE(t.entries.size() == 2);
  CHECK(t.entries[0].second.as_int() == 3);
  CHECK(t.entries[1].second.as_int() == 2);
  t.set("y", "v");
  CHECK(t.entries.size() == 3);
  CHECK(*t.find("y")->as_string() == "v");
  t.find("y")->v = int64_t{9};
  CHECK(std::as_const(t).find("y")->as_int() == 9);

  CHECK(FieldValue(int8_t{-5}).as_int() == -5);
  CHECK(FieldValue(uint8_t{5}).as_int() == 5);
  CHECK(FieldValue(int16_t{-5}).as_int() == -5);
  CHECK(FieldValue(uint16_t{5}).as_int() == 5);
  CHECK(FieldValue(int32_t{-5}).as_int() == -5);
  CHECK(FieldValue(uint32_t{0xffffffff}).as_int() == 0xffffffffLL);
  CHECK(FieldValue(int64_t{-5}).as_int() == -5);
  CHECK_FALSE(FieldValue(true).as_int());
  CHECK_FALSE(FieldValue(1.0).as_int());
  CHECK_FALSE(FieldValue(Timestamp{1}).as_int());
  CHECK_FALSE(FieldValue("1").as_int());

  CHECK(FieldValue(true).as_bool() == true);
  CHECK_FALSE(FieldValue(int32_t{1}).as_bool());
  CHECK(*FieldValue(ByteArray{"ab"}).as_string() == "ab");
  CHECK(FieldValue(int32_t{1}).as_string() == nullptr);
  CHECK(FieldValue(FieldTable{}).as_table() != nullptr);
  CHECK(FieldValue(FieldArray{}).as_array() != nullptr);
  CHECK(FieldValue("s").as_table() == nullptr);
  CHECK(FieldValue("s").as_array() == nullptr);
  CHECK(FieldValue().tag() == 'V');
}

TEST_CASE("a bool octet other than 0/1 reads as true (as RabbitMQ does)") {
  const Bytes in = hex("'t' 02");
  Reader r(in);
  CHECK(r.field_value().as_bool() == true);
}

TEST_CASE("truncated tables throw DecodeError at every length") {
  const Bytes full = every_type_table();
  for (std::size_t n = 0; n < full.size(); ++n) {
    CAPTURE(n);
    const Bytes prefix(full.begin(), full.begin() + n);
    Reader r(prefix);
    CHECK_THROWS_AS(r.table(), DecodeError);
    CHECK_FALSE(skip_agrees(prefix));
  }
  CHECK(skip_agrees(full));
}

TEST_CASE("a table length that cuts the entries short never crashes") {
  // Outer length patched to the prefix, so the truncation is inside the entries. Cutting
  // at an entry boundary is a valid shorter table; anywhere else is a DecodeError.
  const Bytes full = every_type_table();
  int ok = 0;
  int errors = 0;
  for (std::size_t n = 4; n < full.size(); ++n) {
    CAPTURE(n);
    Bytes prefix(full.begin(), full.begin() + n);
    const uint32_t len = static_cast<uint32_t>(n - 4);
    prefix[0] = static_cast<uint8_t>(len >> 24);
    prefix[1] = static_cast<uint8_t>(len >> 16);
    prefix[2] = static_cast<uint8_t>(len >> 8);
    prefix[3] = static_cast<uint8_t>(len);
    Reader r(prefix);
    skip_agrees(prefix);
    try {
      const FieldTable t = r.table();
      CHECK(encode_table(t) == prefix);
      ++ok;
    } catch (const DecodeError&) {
      ++errors;
    }
  }
  CHECK(ok == 19);  // the empty table and one per entry boundary before the last
  CHECK(errors > 100);
}

TEST_CASE("unknown field value tags are a DecodeError") {
  for (const char tag : {'Z', 'c', 'U', 'L', 'e', '\0', '\xff'}) {
    CAPTURE(static_cast<int>(tag));
    const Bytes in = Builder{}.u32(4).sstr("k").u8(static_cast<uint8_t>(tag)).u8(0).b;
    Reader r(in);
    CHECK_THROWS_AS(r.table(), DecodeError);
    CHECK_FALSE(skip_agrees(in));
  }
}

TEST_CASE("huge length fields are rejected before allocating") {
  SUBCASE("table") {
    const Bytes in = hex("ffffffff 01'k' 'V'");
    Reader r(in);
    CHECK_THROWS_AS(r.table(), DecodeError);
    CHECK_FALSE(skip_agrees(in));
  }
  SUBCASE("longstr value") {
    const Bytes in = Builder{}.u32(10).sstr("k").u8('S').u32(0xfffffff0).raw("ab").b;
    Reader r(in);
    CHECK_THROWS_AS(r.table(), DecodeError);
    CHECK_FALSE(skip_agrees(in));
  }
  SUBCASE("byte array value") {
    const Bytes in = hex("'x' 7fffffff 00");
    Reader r(in);
    CHECK_THROWS_AS(r.field_value(), DecodeError);
  }
  SUBCASE("array") {
    const Bytes in = hex("'A' ffffffff 'V'");
    Reader r(in);
    CHECK_THROWS_AS(r.field_value(), DecodeError);
  }
  SUBCASE("nested table") {
    const Bytes in = hex("'F' 80000000 00");
    Reader r(in);
    CHECK_THROWS_AS(r.field_value(), DecodeError);
  }
  SUBCASE("key longer than the table") {
    const Bytes in = Builder{}.u32(3).u8(200).raw("ab").b;
    Reader r(in);
    CHECK_THROWS_AS(r.table(), DecodeError);
  }
  SUBCASE("value longer than its table but inside the input") {
    // The entry claims 4 bytes of string, the table only 6 bytes total: bounded by the table.
    const Bytes in = Builder{}.u32(6).sstr("k").u8('S').u32(4).raw("abcd").b;
    Reader r(in);
    CHECK_THROWS_AS(r.table(), DecodeError);
    CHECK_FALSE(skip_agrees(in));
  }
}

TEST_CASE("nesting is capped at Reader::kMaxNesting") {
  static_assert(Reader::kMaxNesting == 100);
  SUBCASE("tables at the cap decode") {
    const Bytes in = nested_tables(100);
    Reader r(in);
    FieldTable t = r.table();
    int depth = 1;
    for (const FieldTable* p = &t; !p->empty(); p = p->entries[0].second.as_table()) ++depth;
    CHECK(depth == 100);
    CHECK(encode_table(t) == in);
  }
  SUBCASE("one table deeper is a DecodeError") {
    const Bytes in = nested_tables(101);
    Reader r(in);
    CHECK_THROWS_AS(r.table(), DecodeError);
    CHECK(skip_agrees(nested_tables(100)));
    CHECK_FALSE(skip_agrees(in));
  }
  SUBCASE("arrays at the cap decode, one deeper does not") {
    const Bytes ok = nested_arrays(100);
    Reader r(ok);
    CHECK(encode_value(r.field_value()) == ok);
    const Bytes deep = nested_arrays(101);
    Reader r2(deep);
    CHECK_THROWS_AS(r2.field_value(), DecodeError);
  }
  SUBCASE("hostile depth does not blow the stack") {
    const Bytes tables = nested_tables(200000);
    Reader r(tables);
    CHECK_THROWS_AS(r.table(), DecodeError);
    CHECK_FALSE(skip_agrees(tables));
    const Bytes arrays = nested_arrays(200000);
    Reader r2(arrays);
    CHECK_THROWS_AS(r2.field_value(), DecodeError);
    Reader r3(arrays);
    CHECK_THROWS_AS(r3.skip_field_value(), DecodeError);
  }
}
