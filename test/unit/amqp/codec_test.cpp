// Reader/Writer primitives: big-endian integers, short/long strings, bounds checks.
#include <doctest/doctest.h>

#include <string>

#include "amqp/codec.hpp"
#include "test_util.hpp"

using namespace mqnode::amqp;
using namespace mqnode::amqp::test;

TEST_CASE("Writer writes big-endian integers and strings") {
  Bytes out;
  Writer w(out);
  w.u8(0x01);
  w.u16(0x0203);
  w.u32(0x04050607);
  w.u64(0x08090a0b0c0d0e0fULL);
  w.shortstr("ab");
  w.longstr("cde");
  w.bytes(std::string_view("fg"));
  const uint8_t raw[] = {0xaa, 0xbb};
  w.bytes(std::span<const uint8_t>(raw));
  CHECK(w.size() == out.size());
  CHECK(out == hex("01 0203 04050607 08090a0b0c0d0e0f 02'ab' 00000003'cde' 'fg' aabb"));

  w.patch_u32(1, 0xdeadbeef);
  CHECK(out[1] == 0xde);
  CHECK(out[4] == 0xef);
  CHECK(&w.buffer() == &out);
}

TEST_CASE("Writer appends to what the buffer already holds") {
  Bytes out = {0xff};
  Writer w(out);
  w.u16(1);
  CHECK(out == hex("ff 0001"));
}

TEST_CASE("shortstr is limited to 255 bytes") {
  Bytes out;
  Writer w(out);
  w.shortstr(std::string(255, 'x'));
  CHECK(out.size() == 256);
  CHECK(out[0] == 255);
  CHECK_THROWS_AS(w.shortstr(std::string(256, 'x')), EncodeError);
}

TEST_CASE("Reader reads what Writer wrote") {
  const Bytes in = hex("01 0203 04050607 08090a0b0c0d0e0f 02'ab' 00000003'cde' 'fg'");
  Reader r(in);
  CHECK(r.remaining() == in.size());
  CHECK(r.u8() == 0x01);
  CHECK(r.u16() == 0x0203);
  CHECK(r.u32() == 0x04050607u);
  CHECK(r.u64() == 0x08090a0b0c0d0e0fULL);
  CHECK(r.shortstr() == "ab");
  CHECK(r.longstr() == "cde");
  CHECK(r.position() == in.size() - 2);
  const auto b = r.bytes(2);
  CHECK(b.size() == 2);
  CHECK(b[0] == 'f');
  CHECK(r.remaining() == 0);
  CHECK_THROWS_AS(r.u8(), DecodeError);
}

TEST_CASE("Reader throws DecodeError on truncation and keeps its position") {
  const Bytes in = hex("0102 03");
  SUBCASE("u32") {
    Reader r(in);
    CHECK_THROWS_AS(r.u32(), DecodeError);
    CHECK(r.position() == 0);
  }
  SUBCASE("u64") {
    Reader r(in);
    CHECK_THROWS_AS(r.u64(), DecodeError);
  }
  SUBCASE("shortstr longer than the input") {
    const Bytes s = hex("05 'abc'");
    Reader r(s);
    CHECK_THROWS_AS(r.shortstr(), DecodeError);
  }
  SUBCASE("longstr with a 4 GiB length") {
    const Bytes s = hex("ffffffff 'abc'");
    Reader r(s);
    CHECK_THROWS_AS(r.longstr(), DecodeError);
  }
  SUBCASE("bytes") {
    Reader r(in);
    CHECK_THROWS_AS(r.bytes(4), DecodeError);
    CHECK(r.bytes(3).size() == 3);
  }
  SUBCASE("empty input") {
    Reader r(std::span<const uint8_t>{});
    CHECK_THROWS_AS(r.u8(), DecodeError);
    CHECK_THROWS_AS(r.shortstr(), DecodeError);
    CHECK_THROWS_AS(r.table(), DecodeError);
    CHECK_THROWS_AS(r.field_value(), DecodeError);
  }
}
