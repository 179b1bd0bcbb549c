// libFuzzer target: a peer's queue frame payload (cluster links of purpose Queues, after the
// handshake) -> broker::wire::decode. Anything it accepts must encode back to the same
// bytes (the codec has one encoding per frame), and what it refuses it refuses with
// wire::DecodeError, never a crash or another exception.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "broker/queue_wire.hpp"

using namespace mqnode::broker;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::span<const uint8_t> in(data, size);
  wire::Frame f;
  try {
    f = wire::decode(in);
  } catch (const wire::DecodeError&) {
    return 0;
  }
  std::vector<uint8_t> again;
  wire::encode(f, again);
  if (again.size() != size || !std::equal(again.begin(), again.end(), in.begin())) __builtin_trap();
  return 0;
}
