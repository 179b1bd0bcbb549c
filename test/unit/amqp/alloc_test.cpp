// Hot-path allocation budget: decoding basic.publish/basic.ack, encoding basic.deliver into
// a buffer with room, splitting content and decoding frames allocate nothing (names fit the
// small-string buffer). Counts calls to the replaceable global operator new.
#include <doctest/doctest.h>

#include <cstdlib>
#include <new>

#include "amqp/frame.hpp"
#include "amqp/methods.hpp"
#include "amqp/properties.hpp"
#include "test_util.hpp"

namespace {
bool g_counting = false;
long g_allocations = 0;
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting) ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace mqnode::amqp;
using namespace mqnode::amqp::test;

namespace {

struct Count {
  Count() {
    g_allocations = 0;
    g_counting = true;
  }
  ~Count() { g_counting = false; }
  long stop() {
    g_counting = false;
    return g_allocations;
  }
};

}  // namespace

TEST_CASE("hot paths do not allocate") {
  const Bytes publish = hex("003c 0028 0000 09'amq.topic' 0b'stock.usd.x' 01");
  const Bytes ack = hex("003c 0050 0000000000000009 01");
  const BasicDeliver deliver{"amq.ctag-abc", 42, false, "amq.topic", "stock.usd.x"};
  const Bytes props = hex("9000 0a'text/plain' 02");
  const Bytes body(10000, 0x5a);
  Bytes out;
  out.reserve(1 << 16);

  {
    Count c;
    const Method m = decode_method(publish);
    CHECK(c.stop() == 0);
    CHECK(std::get<BasicPublish>(m).routing_key == "stock.usd.x");
  }
  {
    Count c;
    const Method m = decode_method(ack);
    CHECK(c.stop() == 0);
    CHECK(std::get<BasicAck>(m).multiple);
  }
  {
    Count c;
    Reader r(std::span<const uint8_t>(publish).subspan(4));
    const BasicPublish p = BasicPublish::decode(r);
    CHECK(c.stop() == 0);
    CHECK(p.exchange == "amq.topic");
  }
  {
    // A long content type and a headers table: decode_properties would allocate.
    BasicProperties p;
    p.content_type = "application/octet-stream";
    p.headers = FieldTable{};
    p.headers->set("x-a-rather-long-header-name", FieldArray{int32_t{1}, "two"});
    p.delivery_mode = 2;
    Bytes raw;
    encode_properties(p, raw);
    Count c;
    validate_properties(raw);
    CHECK(c.stop() == 0);
  }
  {
    Count c;
    append_method_frame(out, 1, deliver);
    append_content(out, 1, kClassBasic, props, body, 4096);
    CHECK(c.stop() == 0);
  }
  {
    Count c;
    std::size_t consumed = 0;
    FrameView f;
    std::size_t off = 0;
    int frames = 0;
    while (decode_frame(std::span(out).subspan(off), 131072, consumed, f) == DecodeStatus::Ok) {
      if (f.type == FrameType::Header) (void)decode_content_header(f.payload);
      off += consumed;
      ++frames;
    }
    CHECK(c.stop() == 0);
    CHECK(frames == 1 + 1 + 3);
  }
}
