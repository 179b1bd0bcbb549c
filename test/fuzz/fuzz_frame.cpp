// libFuzzer target: the input is what a peer sends on a connection — an optional protocol
// header, then frames. Every frame goes through the decoder the broker would use; only
// DecodeError (and UnknownMethod, one of them) may escape a decoder. Whatever decodes must
// re-encode to bytes that decode again to the same bytes (encode∘decode is idempotent),
// and content split by append_content must reassemble.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "amqp/codec.hpp"
#include "amqp/frame.hpp"
#include "amqp/methods.hpp"
#include "amqp/properties.hpp"

using namespace mqnode::amqp;

namespace {

constexpr uint32_t kMaxFrame = 131072;  // RabbitMQ's default frame_max

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) __builtin_trap(); \
  } while (0)

std::vector<uint8_t> encode(const Method& m) {
  std::vector<uint8_t> out;
  Writer w(out);
  encode_method(m, w);
  return out;
}

void on_method(uint16_t channel, std::span<const uint8_t> payload) {
  Method m;
  try {
    m = decode_method(payload);
  } catch (const DecodeError&) {  // UnknownMethod included
    return;
  }
  const MethodInfo& info = method_info(m);
  FUZZ_CHECK(find_method(info.class_id, info.method_id) == &info);
  FUZZ_CHECK(payload[0] == (info.class_id >> 8) && payload[1] == (info.class_id & 0xff));
  const std::vector<uint8_t> once = encode(m);
  const std::vector<uint8_t> twice = encode(decode_method(once));  // must not throw
  FUZZ_CHECK(once == twice);

  std::vector<uint8_t> frame;
  append_method_frame(frame, channel, m);
  std::size_t consumed = 0;
  FrameView f;
  FUZZ_CHECK(decode_frame(frame, 0, consumed, f) == DecodeStatus::Ok);
  FUZZ_CHECK(consumed == frame.size() && f.channel == channel && f.type == FrameType::Method);
  FUZZ_CHECK(std::equal(f.payload.begin(), f.payload.end(), once.begin(), once.end()));
}

void on_header(std::span<const uint8_t> payload) {
  ContentHeader h;
  try {
    h = decode_content_header(payload);
  } catch (const DecodeError&) {
    return;
  }
  bool valid = true;
  try {
    validate_properties(h.raw_properties);
  } catch (const DecodeError&) {
    valid = false;
  }
  BasicProperties p;
  try {
    p = decode_properties(h.raw_properties);
  } catch (const DecodeError&) {
    FUZZ_CHECK(!valid);  // the validator must reject exactly what the decoder rejects
    return;
  }
  FUZZ_CHECK(valid);
  std::vector<uint8_t> once;
  encode_properties(p, once);
  std::vector<uint8_t> twice;
  encode_properties(decode_properties(once), twice);  // must not throw
  FUZZ_CHECK(once == twice);
}

void on_body(uint16_t channel, std::span<const uint8_t> payload) {
  // Bodies are opaque to the broker; use them to drive the field-table reader directly.
  bool skipped = true;
  std::size_t skipped_to = 0;
  try {
    Reader s(payload);
    s.skip_table();
    skipped_to = s.position();
  } catch (const DecodeError&) {
    skipped = false;
  }
  try {
    Reader r(payload);
    const FieldTable t = r.table();
    FUZZ_CHECK(skipped && skipped_to == r.position());  // skip_table agrees with table
    std::vector<uint8_t> once;
    Writer(once).table(t);
    Reader again(once);
    std::vector<uint8_t> twice;
    Writer(twice).table(again.table());
    FUZZ_CHECK(once == twice);
  } catch (const DecodeError&) {
    FUZZ_CHECK(!skipped);
  }
  try {
    Reader r(payload);
    while (r.remaining() > 0) (void)r.field_value();
  } catch (const DecodeError&) {
  }

  // Split the body again at a small frame_max and reassemble it.
  if (payload.size() > 4096) return;
  const uint32_t fm = 9 + static_cast<uint32_t>(payload.size() % 64);
  std::vector<uint8_t> out;
  append_content(out, channel, kClassBasic, {}, payload, fm);
  std::span<const uint8_t> in(out);
  std::vector<uint8_t> joined;
  std::size_t consumed = 0;
  FrameView f;
  FUZZ_CHECK(decode_frame(in, 0, consumed, f) == DecodeStatus::Ok);
  FUZZ_CHECK(f.type == FrameType::Header);
  FUZZ_CHECK(decode_content_header(f.payload).body_size == payload.size());
  in = in.subspan(consumed);
  while (!in.empty()) {
    FUZZ_CHECK(decode_frame(in, fm, consumed, f) == DecodeStatus::Ok);
    FUZZ_CHECK(f.type == FrameType::Body && f.channel == channel);
    joined.insert(joined.end(), f.payload.begin(), f.payload.end());
    in = in.subspan(consumed);
  }
  FUZZ_CHECK(std::equal(joined.begin(), joined.end(), payload.begin(), payload.end()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::span<const uint8_t> in(data, size);
  if (!in.empty() && in[0] == 'A') {
    if (check_protocol_header(in) != HeaderStatus::Ok) return 0;
    in = in.subspan(kProtocolHeader.size());
  }
  for (;;) {
    std::size_t consumed = 0;
    FrameView f;
    if (decode_frame(in, kMaxFrame, consumed, f) != DecodeStatus::Ok) break;
    FUZZ_CHECK(consumed >= kFrameOverhead && consumed <= in.size());
    FUZZ_CHECK(f.payload.size() + kFrameOverhead == consumed);
    switch (f.type) {
      case FrameType::Method: on_method(f.channel, f.payload); break;
      case FrameType::Header: on_header(f.payload); break;
      case FrameType::Body: on_body(f.channel, f.payload); break;
      case FrameType::Heartbeat: break;
    }
    in = in.subspan(consumed);
  }
  return 0;
}
