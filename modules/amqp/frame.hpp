// AMQP 0-9-1 framing (spec §2.3.5, §4.2.3): protocol header, frame decode in pieces, and
// builders that append complete frames to an output buffer. Pure: no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mqnode::amqp {

inline constexpr std::array<uint8_t, 8> kProtocolHeader = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
inline constexpr uint8_t kFrameEnd = 0xCE;
inline constexpr std::size_t kFrameOverhead = 8;  // type(1) channel(2) size(4) ... end(1)
inline constexpr uint32_t kFrameMinSize = 4096;   // spec §4.2.3: peers must accept this

enum class FrameType : uint8_t { Method = 1, Header = 2, Body = 3, Heartbeat = 8 };

struct FrameView {
  FrameType type{};
  uint16_t channel = 0;
  std::span<const uint8_t> payload;  // points into the input buffer
};

enum class DecodeStatus {
  Ok,        // <out> filled, <consumed> bytes used
  NeedMore,  // incomplete frame: read more bytes and call again with the whole prefix
  BadType,   // unknown frame type octet
  BadEnd,    // frame-end octet is not 0xCE
  TooLarge,  // size + 8 exceeds <max_frame>
};

// Decodes one frame at the start of <in>. <max_frame> is the negotiated frame_max
// (whole frame including the 8 bytes of overhead; 0 = no limit). Never reads past <in>.
DecodeStatus decode_frame(std::span<const uint8_t> in, uint32_t max_frame, std::size_t& consumed,
                          FrameView& out);

enum class HeaderStatus { Ok, NeedMore, Bad };
// Checks the 8-byte protocol header a client sends first (spec §4.2.2).
HeaderStatus check_protocol_header(std::span<const uint8_t> in);

// Frame builders: append a complete frame to <out>. They grow <out> geometrically, so a
// connection's output buffer reused across messages settles at a steady capacity.
void append_heartbeat(std::vector<uint8_t>& out);
// Begins a frame and returns the offset of its size field; finish_frame patches the size
// and appends the frame end. Used to encode methods straight into <out>.
std::size_t begin_frame(std::vector<uint8_t>& out, FrameType type, uint16_t channel);
void finish_frame(std::vector<uint8_t>& out, std::size_t size_at);

// Appends the content header frame (class 60, weight 0, <body_size>, then the raw
// property flags+list bytes; empty = no properties, written as a zero flag word) and the
// body frames, split so that no frame exceeds
// <frame_max> (spec §4.2.6.2). An empty body produces no body frame. <frame_max> 0 means
// no limit (one body frame); 1..8 throws EncodeError. The header frame itself is not split
// (the spec has no way to) and is not checked against <frame_max>.
void append_content(std::vector<uint8_t>& out, uint16_t channel, uint16_t class_id,
                    std::span<const uint8_t> raw_properties, std::span<const uint8_t> body,
                    uint32_t frame_max);

// A content header frame's fixed part (spec §4.2.6.1).
struct ContentHeader {
  uint16_t class_id = 0;
  uint64_t body_size = 0;
  std::span<const uint8_t> raw_properties;  // property flags + property list, undecoded
  uint16_t weight = 0;                      // spec: must be 0; not checked here
};
// Throws DecodeError on a short payload.
ContentHeader decode_content_header(std::span<const uint8_t> payload);

}  // namespace mqnode::amqp

namespace mqnode::amqp {

// RabbitMQ's rendering of a frame in its error texts, "type 1, all octets = <<0,50>>",
// with an Erlang-style binary: quoted when every octet is printable ASCII, else a list of
// octets; long payloads are cut at 64 octets ("...").
std::string describe_frame(uint8_t type, std::span<const uint8_t> payload);
std::string erlang_binary(std::span<const uint8_t> bytes);

}  // namespace mqnode::amqp
