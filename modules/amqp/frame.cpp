// Frame decoding (incremental: NeedMore until a whole frame is buffered) and frame builders
// that append straight into a connection's output buffer (spec §2.3.5, §4.2.3, §4.2.6).
#include "amqp/frame.hpp"

#include <algorithm>
#include <string>

#include "amqp/codec.hpp"

namespace mqnode::amqp {

namespace {

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

bool known_type(uint8_t t) {
  return t == static_cast<uint8_t>(FrameType::Method) ||
         t == static_cast<uint8_t>(FrameType::Header) ||
         t == static_cast<uint8_t>(FrameType::Body) ||
         t == static_cast<uint8_t>(FrameType::Heartbeat);
}

// Capacity for <extra> more bytes, growing at least geometrically: an exact reserve() per
// call would reallocate (and copy the whole buffer) on every append.
void reserve_more(std::vector<uint8_t>& out, std::size_t extra) {
  const std::size_t need = out.size() + extra;
  if (need > out.capacity()) out.reserve(std::max(need, out.capacity() * 2));
}

void put_frame_head(std::vector<uint8_t>& out, FrameType type, uint16_t channel, uint32_t size) {
  const uint8_t h[7] = {static_cast<uint8_t>(type),    static_cast<uint8_t>(channel >> 8),
                        static_cast<uint8_t>(channel), static_cast<uint8_t>(size >> 24),
                        static_cast<uint8_t>(size >> 16), static_cast<uint8_t>(size >> 8),
                        static_cast<uint8_t>(size)};
  out.insert(out.end(), h, h + 7);
}

}  // namespace

DecodeStatus decode_frame(std::span<const uint8_t> in, uint32_t max_frame, std::size_t& consumed,
                          FrameView& out) {
  consumed = 0;
  if (in.empty()) return DecodeStatus::NeedMore;
  if (!known_type(in[0])) return DecodeStatus::BadType;  // fail fast on garbage
  if (in.size() < 7) return DecodeStatus::NeedMore;
  const uint32_t size = be32(in.data() + 3);
  const uint64_t total = uint64_t{size} + kFrameOverhead;
  if (max_frame != 0 && total > max_frame) return DecodeStatus::TooLarge;
  if (in.size() < total) return DecodeStatus::NeedMore;
  if (in[total - 1] != kFrameEnd) return DecodeStatus::BadEnd;
  out.type = static_cast<FrameType>(in[0]);
  out.channel = be16(in.data() + 1);
  out.payload = in.subspan(7, size);
  consumed = static_cast<std::size_t>(total);
  return DecodeStatus::Ok;
}

HeaderStatus check_protocol_header(std::span<const uint8_t> in) {
  const std::size_t n = std::min(in.size(), kProtocolHeader.size());
  if (!std::equal(in.begin(), in.begin() + n, kProtocolHeader.begin())) return HeaderStatus::Bad;
  return n < kProtocolHeader.size() ? HeaderStatus::NeedMore : HeaderStatus::Ok;
}

void append_heartbeat(std::vector<uint8_t>& out) {
  static constexpr uint8_t kHeartbeat[8] = {static_cast<uint8_t>(FrameType::Heartbeat), 0, 0, 0,
                                            0, 0, 0, kFrameEnd};
  out.insert(out.end(), kHeartbeat, kHeartbeat + 8);
}

std::size_t begin_frame(std::vector<uint8_t>& out, FrameType type, uint16_t channel) {
  put_frame_head(out, type, channel, 0);
  return out.size() - 4;
}

void finish_frame(std::vector<uint8_t>& out, std::size_t size_at) {
  const std::size_t size = out.size() - size_at - 4;
  if (size > UINT32_MAX) throw EncodeError("frame payload larger than 4 GiB");
  Writer(out).patch_u32(size_at, static_cast<uint32_t>(size));
  out.push_back(kFrameEnd);
}

void append_content(std::vector<uint8_t>& out, uint16_t channel, uint16_t class_id,
                    std::span<const uint8_t> raw_properties, std::span<const uint8_t> body,
                    uint32_t frame_max) {
  if (frame_max != 0 && frame_max <= kFrameOverhead) {
    throw EncodeError("frame_max " + std::to_string(frame_max) + " leaves no room for a body");
  }
  static constexpr uint8_t kNoProperties[2] = {0, 0};  // a zero flag word
  if (raw_properties.empty()) raw_properties = kNoProperties;
  const std::size_t header_payload = 12 + raw_properties.size();  // class, weight, size + flags/list
  if (header_payload > UINT32_MAX) throw EncodeError("content header larger than 4 GiB");
  const std::size_t chunk = frame_max == 0 ? std::max<std::size_t>(body.size(), 1)
                                           : std::size_t{frame_max} - kFrameOverhead;
  if (chunk > UINT32_MAX) throw EncodeError("body frame larger than 4 GiB");
  const std::size_t frames = (body.size() + chunk - 1) / chunk;
  reserve_more(out, kFrameOverhead + header_payload + body.size() + frames * kFrameOverhead);

  put_frame_head(out, FrameType::Header, channel, static_cast<uint32_t>(header_payload));
  const uint64_t bs = body.size();
  const uint8_t fixed[12] = {
      static_cast<uint8_t>(class_id >> 8), static_cast<uint8_t>(class_id), 0, 0,
      static_cast<uint8_t>(bs >> 56),      static_cast<uint8_t>(bs >> 48),
      static_cast<uint8_t>(bs >> 40),      static_cast<uint8_t>(bs >> 32),
      static_cast<uint8_t>(bs >> 24),      static_cast<uint8_t>(bs >> 16),
      static_cast<uint8_t>(bs >> 8),       static_cast<uint8_t>(bs)};
  out.insert(out.end(), fixed, fixed + 12);
  out.insert(out.end(), raw_properties.begin(), raw_properties.end());
  out.push_back(kFrameEnd);

  for (std::size_t off = 0; off < body.size(); off += chunk) {
    const std::size_t n = std::min(chunk, body.size() - off);
    put_frame_head(out, FrameType::Body, channel, static_cast<uint32_t>(n));
    out.insert(out.end(), body.begin() + off, body.begin() + off + n);
    out.push_back(kFrameEnd);
  }
}

ContentHeader decode_content_header(std::span<const uint8_t> payload) {
  if (payload.size() < 14) {
    throw DecodeError("content header shorter than 14 bytes (" + std::to_string(payload.size()) +
                      ")");
  }
  Reader r(payload);
  ContentHeader h;
  h.class_id = r.u16();
  h.weight = r.u16();
  h.body_size = r.u64();
  h.raw_properties = r.bytes(r.remaining());
  return h;
}

}  // namespace mqnode::amqp

namespace mqnode::amqp {

std::string erlang_binary(std::span<const uint8_t> bytes) {
  constexpr std::size_t kMax = 64;
  auto shown = bytes.first(std::min(bytes.size(), kMax));
  bool printable = !shown.empty() && std::all_of(shown.begin(), shown.end(), [](uint8_t c) {
    return c >= 32 && c < 127 && c != '"' && c != '\\';
  });
  std::string out = "<<";
  if (printable) {
    out += '"';
    out.append(shown.begin(), shown.end());
    out += '"';
  } else {
    for (std::size_t i = 0; i < shown.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(shown[i]);
    }
  }
  if (shown.size() < bytes.size()) out += ",...";
  out += ">>";
  return out;
}

std::string describe_frame(uint8_t type, std::span<const uint8_t> payload) {
  return "type " + std::to_string(type) + ", all octets = " + erlang_binary(payload);
}

}  // namespace mqnode::amqp
