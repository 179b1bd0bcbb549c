// libFuzzer target: the bytes a peer sends on the cluster port before it is authenticated.
// Layout (the committed seeds are a genuine initiator's and acceptor's streams for the
// cookie and nonces below, so the fuzzer starts past the hello):
//   [opts] [chunk lengths: opts & 7 bytes] [the byte stream]
//   opts bit 3: the stream goes to an initiator (else to an acceptor)
//   opts bits 4-5: FrameReader limit 16 << 4n bytes for the framing pass
// The stream goes to the handshake whole and then in chunks of the lengths given (cycled,
// each length + 1). Whatever the split, it must take the same bytes and end the same way;
// it never takes bytes past its end, a finished handshake takes nothing more, and wanted()
// is 0 exactly when it has finished. The stream also goes through a bare FrameReader whole
// and split, which must give the same frames.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cluster/handshake.hpp"

using namespace mqnode::cluster;

namespace {

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) __builtin_trap(); \
  } while (0)

constexpr std::string_view kCookie = "FUZZCOOKIE";

Nonce fixed_nonce(uint8_t seed) {
  Nonce n;
  n.fill(seed);
  return n;
}

struct Outcome {
  std::size_t used = 0;
  bool done = false;
  std::optional<HandshakeError> error;
  std::string peer;
  bool operator==(const Outcome&) const = default;
};

Outcome run_handshake(bool initiator, std::span<const uint8_t> stream, std::span<const uint8_t> lengths) {
  const NodeIdentity self{"fuzz-self", 1, "127.0.0.1:25672"};
  Handshake h = initiator ? Handshake::initiate(self, kCookie, Purpose::Raft, fixed_nonce(1))
                          : Handshake::accept(self, kCookie, fixed_nonce(2));
  h.take_output();
  Outcome out;
  std::size_t next = 0;
  while (out.used < stream.size()) {
    const std::size_t n = lengths.empty() ? stream.size() : std::size_t{lengths[next++ % lengths.size()]} + 1;
    const auto piece = stream.subspan(out.used, std::min(n, stream.size() - out.used));
    const std::size_t took = h.feed(piece);
    FUZZ_CHECK(took <= piece.size());
    out.used += took;
    const bool finished = h.done() || h.failed();
    FUZZ_CHECK(finished == (h.wanted() == 0));
    if (took < piece.size()) FUZZ_CHECK(finished);
    if (finished) {
      FUZZ_CHECK(h.feed(stream.subspan(out.used)) == 0);
      break;
    }
  }
  out.done = h.done();
  if (h.failed()) {
    out.error = h.failure().code;
    FUZZ_CHECK(!h.failure().detail.empty());
  }
  if (h.done()) out.peer = h.peer().name;
  return out;
}

std::vector<std::vector<uint8_t>> frames_of(std::span<const uint8_t> stream, std::size_t limit, std::size_t piece) {
  FrameReader r(limit);
  std::vector<std::vector<uint8_t>> out;
  std::size_t pos = 0;
  while (pos < stream.size()) {
    std::size_t used = 0;
    const auto status = r.feed(stream.subspan(pos, std::min(piece, stream.size() - pos)), used);
    pos += used;
    if (status == FrameReader::Status::TooLarge) {
      out.push_back({0xff});  // marks the end, where the split must not matter either
      break;
    }
    if (status == FrameReader::Status::Frame) {
      FUZZ_CHECK(r.payload().size() <= limit);
      out.emplace_back(r.payload().begin(), r.payload().end());
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const uint8_t opts = data[0];
  const std::size_t n_lengths = opts & 7;
  if (size < 1 + n_lengths) return 0;
  const std::span<const uint8_t> lengths(data + 1, n_lengths);
  const std::span<const uint8_t> stream(data + 1 + n_lengths, size - 1 - n_lengths);
  const bool initiator = (opts & 8) != 0;

  const Outcome whole = run_handshake(initiator, stream, {});
  FUZZ_CHECK(run_handshake(initiator, stream, lengths) == whole);

  const std::size_t limit = std::size_t{16} << (4 * ((opts >> 4) & 3));
  const std::size_t piece = lengths.empty() ? 1 : std::size_t{lengths[0]} + 1;
  FUZZ_CHECK(frames_of(stream, limit, stream.size() + 1) == frames_of(stream, limit, piece));
  return 0;
}
