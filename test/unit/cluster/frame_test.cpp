#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "cluster/frame.hpp"

using mqnode::cluster::append_frame;
using mqnode::cluster::FrameReader;
using Status = FrameReader::Status;

namespace {

std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

// Feeds <stream> in pieces of <piece> bytes, asking for exactly wanted() at most when
// <exact>; returns the frames and the status that ended it.
std::vector<std::string> frames_of(const std::vector<uint8_t>& stream, std::size_t piece, Status& last) {
  FrameReader r(16);
  std::vector<std::string> out;
  std::size_t pos = 0;
  last = Status::NeedMore;
  while (pos < stream.size()) {
    const std::size_t n = std::min(piece, stream.size() - pos);
    std::size_t used = 0;
    last = r.feed(std::span(stream).subspan(pos, n), used);
    REQUIRE(used <= n);
    pos += used;
    if (last == Status::TooLarge) break;
    if (last == Status::Frame) out.emplace_back(r.payload().begin(), r.payload().end());
    if (last == Status::NeedMore) REQUIRE(used == n);
  }
  return out;
}

}  // namespace

TEST_CASE("frames: any split gives the same frames, an empty frame included") {
  std::vector<uint8_t> stream;
  append_frame(stream, bytes("hello"));
  append_frame(stream, bytes(""));
  append_frame(stream, bytes("sixteen bytes!!!"));
  CHECK(stream.size() == 4 + 5 + 4 + 4 + 16);
  for (std::size_t piece = 1; piece <= stream.size(); ++piece) {
    CAPTURE(piece);
    Status last{};
    CHECK(frames_of(stream, piece, last) == std::vector<std::string>{"hello", "", "sixteen bytes!!!"});
    CHECK(last == Status::Frame);
  }
}

TEST_CASE("frames: wanted() is exactly what completes the header, then the payload") {
  FrameReader r(16);
  CHECK(r.wanted() == 4);
  std::vector<uint8_t> stream;
  append_frame(stream, bytes("abc"));
  std::size_t used = 0;
  CHECK(r.feed(std::span(stream).first(1), used) == Status::NeedMore);
  CHECK(r.wanted() == 3);
  CHECK(r.feed(std::span(stream).subspan(1, 3), used) == Status::NeedMore);
  CHECK(r.wanted() == 3);
  CHECK(r.feed(std::span(stream).subspan(4), used) == Status::Frame);
  CHECK(r.wanted() == 4);
  // Two frames in one buffer: the reader stops at the end of the first.
  std::vector<uint8_t> two = stream;
  append_frame(two, bytes("de"));
  FrameReader r2(16);
  CHECK(r2.feed(two, used) == Status::Frame);
  CHECK(used == stream.size());
}

TEST_CASE("frames: a header over the limit is TooLarge, for good, whatever the split") {
  std::vector<uint8_t> stream;
  append_frame(stream, bytes("seventeen bytes!!"));
  for (std::size_t piece = 1; piece <= 4; ++piece) {
    CAPTURE(piece);
    Status last{};
    CHECK(frames_of(stream, piece, last).empty());
    CHECK(last == Status::TooLarge);
  }
  FrameReader r(16);
  std::size_t used = 0;
  const std::vector<uint8_t> huge{0xff, 0xff, 0xff, 0xff};
  CHECK(r.feed(huge, used) == Status::TooLarge);
  CHECK(r.feed(huge, used) == Status::TooLarge);
  CHECK(used == 0);
  CHECK(r.wanted() == 0);
}
