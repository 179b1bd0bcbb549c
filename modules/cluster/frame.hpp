// Framing on cluster links: a 4-byte big-endian payload length, then the payload. The
// reader is incremental (bytes may arrive split anywhere) and bounded (a peer cannot make us
// buffer more than the limit), and it never reads past the frame it is assembling, so the
// socket can be handed over right after the last handshake frame with nothing lost.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace mqnode::cluster {

inline constexpr std::size_t kFrameHeaderSize = 4;

class FrameReader {
 public:
  enum class Status {
    NeedMore,  // every byte of <in> was taken; the frame is not complete yet
    Frame,     // payload() holds a whole frame; the next feed() starts the next one
    TooLarge,  // the header announced more than the limit; the stream is unusable
  };

  explicit FrameReader(std::size_t max_payload) : max_payload_(max_payload) {}

  // Takes bytes from <in> up to the end of the current frame at most; <consumed> says how
  // many. After TooLarge every call returns TooLarge and takes nothing.
  Status feed(std::span<const uint8_t> in, std::size_t& consumed);
  // The last complete frame's payload; valid until the next feed().
  std::span<const uint8_t> payload() const { return payload_; }
  // How many bytes the current frame still lacks (its header first): a reader of a socket
  // asks for exactly this many, so that it never takes bytes that belong to what follows.
  std::size_t wanted() const;

 private:
  std::size_t max_payload_;
  uint8_t header_[kFrameHeaderSize] = {};
  std::size_t header_have_ = 0;
  std::size_t payload_size_ = 0;
  std::vector<uint8_t> payload_;
  bool complete_ = false;
  bool too_large_ = false;
};

// Appends <payload> to <out> as one frame.
void append_frame(std::vector<uint8_t>& out, std::span<const uint8_t> payload);

}  // namespace mqnode::cluster
