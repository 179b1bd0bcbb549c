// Framing: incremental decode at every split point, frame errors, heartbeats, the protocol
// header, content splitting at frame_max, and the content header.
#include <doctest/doctest.h>

#include <numeric>

#include "amqp/codec.hpp"
#include "amqp/frame.hpp"
#include "test_util.hpp"

using namespace mqnode::amqp;
using namespace mqnode::amqp::test;

namespace {

struct Frame {
  FrameType type;
  uint16_t channel;
  Bytes payload;
  bool operator==(const Frame&) const = default;
};

Bytes frame_bytes(uint8_t type, uint16_t channel, const Bytes& payload, uint8_t end = 0xce) {
  return Builder{}.u8(type).u16(channel).u32(payload.size()).raw(payload).u8(end).b;
}

// What a connection's read loop does: decode whole frames from the front of its buffer.
DecodeStatus drain(Bytes& buf, uint32_t max_frame, std::vector<Frame>& frames) {
  std::size_t off = 0;
  DecodeStatus st;
  for (;;) {
    std::size_t consumed = 0;
    FrameView f;
    st = decode_frame(std::span<const uint8_t>(buf).subspan(off), max_frame, consumed, f);
    if (st != DecodeStatus::Ok) break;
    REQUIRE(consumed >= kFrameOverhead);
    frames.push_back({f.type, f.channel, Bytes(f.payload.begin(), f.payload.end())});
    off += consumed;
  }
  buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(off));
  return st;
}

std::vector<Frame> decode_all(const Bytes& stream, uint32_t max_frame) {
  Bytes buf = stream;
  std::vector<Frame> frames;
  CHECK(drain(buf, max_frame, frames) == DecodeStatus::NeedMore);
  CHECK(buf.empty());
  return frames;
}

Bytes body_of(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7 + i / 251);
  return b;
}

}  // namespace

TEST_CASE("decode_frame at every split point of a multi-frame stream") {
  Bytes stream;
  const Bytes method = hex("000a 001e 07ff 00020000 003c");  // connection.tune
  const Bytes header = hex("003c 0000 0000000000000005 9000 0a'text/plain' 02");
  const Bytes body = hex("'hello'");
  auto add = [&](const Bytes& b) { stream.insert(stream.end(), b.begin(), b.end()); };
  add(frame_bytes(1, 0, method));
  add(frame_bytes(8, 0, {}));
  add(frame_bytes(2, 7, header));
  add(frame_bytes(3, 7, body));
  add(frame_bytes(3, 0xffff, {}));
  const std::vector<Frame> expect = {
      {FrameType::Method, 0, method},   {FrameType::Heartbeat, 0, {}}, {FrameType::Header, 7, header},
      {FrameType::Body, 7, body},       {FrameType::Body, 0xffff, {}},
  };
  CHECK(decode_all(stream, 4096) == expect);

  for (std::size_t split = 0; split <= stream.size(); ++split) {
    CAPTURE(split);
    Bytes buf(stream.begin(), stream.begin() + split);
    std::vector<Frame> frames;
    CHECK(drain(buf, 4096, frames) == DecodeStatus::NeedMore);
    CHECK(frames.size() <= expect.size());
    buf.insert(buf.end(), stream.begin() + split, stream.end());
    CHECK(drain(buf, 4096, frames) == DecodeStatus::NeedMore);
    CHECK(buf.empty());
    CHECK(frames == expect);
  }

  // One byte at a time.
  Bytes buf;
  std::vector<Frame> frames;
  for (uint8_t b : stream) {
    buf.push_back(b);
    REQUIRE(drain(buf, 4096, frames) == DecodeStatus::NeedMore);
  }
  CHECK(frames == expect);
}

TEST_CASE("decode_frame reports frame errors") {
  std::size_t consumed = 99;
  FrameView f;
  SUBCASE("bad frame end") {
    const Bytes in = frame_bytes(1, 1, hex("01 02"), 0xcd);
    CHECK(decode_frame(in, 4096, consumed, f) == DecodeStatus::BadEnd);
    CHECK(consumed == 0);
  }
  SUBCASE("bad type, detected from the first byte") {
    for (int t : {0, 4, 5, 9, int{'A'}, 0xce, 0xff}) {
      CAPTURE(t);
      const Bytes in = frame_bytes(static_cast<uint8_t>(t), 0, {});
      CHECK(decode_frame(in, 4096, consumed, f) == DecodeStatus::BadType);
      CHECK(decode_frame(std::span<const uint8_t>(in).first(1), 4096, consumed, f) ==
            DecodeStatus::BadType);
    }
  }
  SUBCASE("too large, detected from the 7-byte header") {
    const Bytes ok = frame_bytes(3, 1, Bytes(4096 - 8));
    CHECK(decode_frame(ok, 4096, consumed, f) == DecodeStatus::Ok);
    CHECK(consumed == 4096);
    CHECK(f.payload.size() == 4088);
    const Bytes big = frame_bytes(3, 1, Bytes(4096 - 7));
    CHECK(decode_frame(big, 4096, consumed, f) == DecodeStatus::TooLarge);
    CHECK(decode_frame(std::span<const uint8_t>(big).first(7), 4096, consumed, f) ==
          DecodeStatus::TooLarge);
    CHECK(decode_frame(std::span<const uint8_t>(big).first(6), 4096, consumed, f) ==
          DecodeStatus::NeedMore);
    CHECK(decode_frame(big, 0, consumed, f) == DecodeStatus::Ok);  // 0 = no limit
  }
  SUBCASE("a 4 GiB size field does not overflow") {
    const Bytes in = hex("03 0001 ffffffff 00");
    CHECK(decode_frame(in, 131072, consumed, f) == DecodeStatus::TooLarge);
    CHECK(decode_frame(in, 0xffffffff, consumed, f) == DecodeStatus::TooLarge);
    CHECK(decode_frame(in, 0, consumed, f) == DecodeStatus::NeedMore);
  }
  SUBCASE("empty input") {
    CHECK(decode_frame({}, 4096, consumed, f) == DecodeStatus::NeedMore);
  }
}

TEST_CASE("heartbeat frames") {
  Bytes out;
  append_heartbeat(out);
  CHECK(out == hex("08 0000 00000000 ce"));
  std::size_t consumed = 0;
  FrameView f;
  CHECK(decode_frame(out, 4096, consumed, f) == DecodeStatus::Ok);
  CHECK(consumed == 8);
  CHECK(f.type == FrameType::Heartbeat);
  CHECK(f.channel == 0);
  CHECK(f.payload.empty());
}

TEST_CASE("protocol header") {
  CHECK(check_protocol_header(hex("'AMQP' 00 00 09 01")) == HeaderStatus::Ok);
  CHECK(check_protocol_header(hex("'AMQP' 00 00 09 01 01 00")) == HeaderStatus::Ok);
  CHECK(check_protocol_header(hex("'AMQP' 00 00 09 00")) == HeaderStatus::Bad);  // 0-9
  CHECK(check_protocol_header(hex("'AMQP' 01 01 00 09")) == HeaderStatus::Bad);  // 0-9 (old)
  CHECK(check_protocol_header(hex("'AMQP' 00 01 00 00")) == HeaderStatus::Bad);  // 1.0
  CHECK(check_protocol_header(hex("'AMQP' 03 01 00 00")) == HeaderStatus::Bad);  // 1.0 SASL
  CHECK(check_protocol_header(hex("'GET / HTTP/1.1'")) == HeaderStatus::Bad);
  CHECK(check_protocol_header(hex("'AMX'")) == HeaderStatus::Bad);
  CHECK(check_protocol_header(hex("01 00 00")) == HeaderStatus::Bad);
  CHECK(check_protocol_header({}) == HeaderStatus::NeedMore);
  for (std::size_t n = 1; n < 8; ++n) {
    CAPTURE(n);
    CHECK(check_protocol_header(std::span<const uint8_t>(kProtocolHeader).first(n)) ==
          HeaderStatus::NeedMore);
  }
}

TEST_CASE("begin_frame/finish_frame build a frame in place") {
  Bytes out = {0xaa};
  const std::size_t at = begin_frame(out, FrameType::Method, 0x0102);
  CHECK(at == 4);
  out.push_back(0x11);
  out.push_back(0x22);
  finish_frame(out, at);
  CHECK(out == hex("aa 01 0102 00000002 1122 ce"));
}

TEST_CASE("append_content splits bodies at frame_max") {
  const Bytes props = hex("9000 0a'text/plain' 02");
  for (uint32_t fm : {4096u, 131072u}) {
    const std::size_t room = fm - kFrameOverhead;
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, room - 1, room, room + 1, 3 * room,
                          3 * room + 1, std::size_t{3} * fm}) {
      CAPTURE(fm);
      CAPTURE(n);
      const Bytes body = body_of(n);
      Bytes out = {0x55};
      append_content(out, 9, 60, props, body, fm);
      CHECK(out[0] == 0x55);
      out.erase(out.begin());
      const std::vector<Frame> frames = decode_all(out, fm);
      REQUIRE(!frames.empty());
      CHECK(frames[0].type == FrameType::Header);
      CHECK(frames[0].channel == 9);
      const ContentHeader h = decode_content_header(frames[0].payload);
      CHECK(h.class_id == 60);
      CHECK(h.weight == 0);
      CHECK(h.body_size == n);
      CHECK(Bytes(h.raw_properties.begin(), h.raw_properties.end()) == props);
      CHECK(frames.size() == 1 + (n + room - 1) / room);
      Bytes joined;
      for (std::size_t i = 1; i < frames.size(); ++i) {
        CHECK(frames[i].type == FrameType::Body);
        CHECK(frames[i].channel == 9);
        CHECK(frames[i].payload.size() <= room);
        if (i + 1 < frames.size()) CHECK(frames[i].payload.size() == room);  // full frames
        joined.insert(joined.end(), frames[i].payload.begin(), frames[i].payload.end());
      }
      CHECK(joined == body);
    }
  }
}

TEST_CASE("append_content edge cases") {
  const Bytes body = body_of(10000);
  SUBCASE("frame_max 0 means one body frame") {
    Bytes out;
    append_content(out, 1, 60, {}, body, 0);
    const std::vector<Frame> frames = decode_all(out, 0);
    REQUIRE(frames.size() == 2);
    CHECK(frames[1].payload == body);
    CHECK(frames[0].payload == hex("003c 0000 0000000000002710 0000"));  // no properties
  }
  SUBCASE("frame_max too small for any body") {
    Bytes out;
    CHECK_THROWS_AS(append_content(out, 1, 60, {}, body, 8), EncodeError);
    CHECK(out.empty());
    append_content(out, 1, 60, {}, body_of(3), 9);  // one byte per body frame
    const std::vector<Frame> frames = decode_all(out, 0);  // the header frame exceeds 9
    REQUIRE(frames.size() == 4);
    for (std::size_t i = 1; i < 4; ++i) CHECK(frames[i].payload.size() == 1);
  }
  SUBCASE("no reallocation when the buffer has room") {
    Bytes out;
    out.reserve(20000);
    const uint8_t* data = out.data();
    append_content(out, 1, 60, {}, body, 4096);
    CHECK(out.data() == data);
    CHECK(out.size() == 8 + 14 + 10000 + 3 * 8);
  }
  SUBCASE("repeated appends grow the buffer geometrically") {
    Bytes out;
    int reallocations = 0;
    const uint8_t* data = nullptr;
    for (int i = 0; i < 1000; ++i) {
      append_content(out, 1, 60, {}, body_of(100), 4096);
      if (out.data() != data) ++reallocations;
      data = out.data();
    }
    CHECK(reallocations < 20);
  }
}

TEST_CASE("decode_content_header") {
  const Bytes p = hex("003c 0001 0102030405060708 8000 01'x'");
  const ContentHeader h = decode_content_header(p);
  CHECK(h.class_id == 60);
  CHECK(h.weight == 1);
  CHECK(h.body_size == 0x0102030405060708ULL);
  CHECK(h.raw_properties.size() == 4);
  CHECK(h.raw_properties.data() == p.data() + 12);
  for (std::size_t n = 0; n < 14; ++n) {
    CAPTURE(n);
    CHECK_THROWS_AS(decode_content_header(std::span<const uint8_t>(p).first(n)), DecodeError);
  }
  CHECK(decode_content_header(std::span<const uint8_t>(p).first(14)).raw_properties.size() == 2);
}
