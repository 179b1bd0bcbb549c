#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "cluster/handshake.hpp"

using namespace mqnode::cluster;

namespace {

const NodeIdentity kA{"mq1", 11, "10.0.0.11:25672"};
const NodeIdentity kB{"mq2", 22, "10.0.0.12:25672"};

Nonce nonce_of(uint8_t seed) {
  Nonce n;
  for (std::size_t i = 0; i < n.size(); ++i) n[i] = static_cast<uint8_t>(seed * 31 + i);
  return n;
}

// Delivers each side's output to the other until neither has anything to say; returns the
// bytes the initiator sent (its whole wire stream).
std::vector<uint8_t> pump(Handshake& initiator, Handshake& acceptor) {
  std::vector<uint8_t> sent;
  for (int round = 0; round < 8; ++round) {
    auto a = initiator.take_output();
    sent.insert(sent.end(), a.begin(), a.end());
    CHECK(acceptor.feed(a) <= a.size());
    auto b = acceptor.take_output();
    CHECK(initiator.feed(b) <= b.size());
    if (a.empty() && b.empty()) break;
  }
  return sent;
}

// The acceptor's side of a session from a recorded initiator stream, fed in pieces of <piece>.
Handshake accept_stream(const std::vector<uint8_t>& stream, std::size_t piece, std::size_t& used) {
  Handshake acc = Handshake::accept(kB, "COOKIE", nonce_of(2));
  used = 0;
  while (used < stream.size() && !acc.done() && !acc.failed()) {
    const std::size_t n = std::min(piece, stream.size() - used);
    used += acc.feed(std::span(stream).subspan(used, n));
  }
  return acc;
}

// A hello as an initiator would send it, with the fields chosen by the test.
std::vector<uint8_t> hello_frame(uint16_t version, uint8_t purpose, uint64_t id, std::string_view name) {
  std::vector<uint8_t> m{1, uint8_t(version >> 8), uint8_t(version), purpose};
  const Nonce n = nonce_of(9);
  m.insert(m.end(), n.begin(), n.end());
  for (int shift = 56; shift >= 0; shift -= 8) m.push_back(uint8_t(id >> shift));
  m.push_back(uint8_t(name.size()));
  m.insert(m.end(), name.begin(), name.end());
  m.push_back(0);
  std::vector<uint8_t> out;
  append_frame(out, m);
  return out;
}

HandshakeFailure failure_of(const std::vector<uint8_t>& input) {
  Handshake acc = Handshake::accept(kB, "COOKIE", nonce_of(2));
  acc.feed(input);
  REQUIRE(acc.failed());
  CHECK_FALSE(acc.failure().from_peer);
  CHECK(acc.wanted() == 0);
  // The reject reaches the initiator as the same error.
  Handshake ini = Handshake::initiate(kA, "COOKIE", Purpose::Raft, nonce_of(1));
  ini.feed(acc.take_output());
  REQUIRE(ini.failed());
  CHECK(ini.failure().from_peer);
  CHECK(ini.failure().code == acc.failure().code);
  return acc.failure();
}

}  // namespace

TEST_CASE("handshake: the same cookie authenticates both sides; names, ids and purpose cross") {
  for (Purpose purpose : {Purpose::Raft, Purpose::Peer}) {
    Handshake ini = Handshake::initiate(kA, "COOKIE", purpose, random_nonce());
    Handshake acc = Handshake::accept(kB, "COOKIE", random_nonce());
    pump(ini, acc);
    REQUIRE(ini.done());
    REQUIRE(acc.done());
    CHECK(ini.peer().name == "mq2");
    CHECK(ini.peer().id == 22);
    CHECK(ini.peer().address == "10.0.0.12:25672");
    CHECK(acc.peer().name == "mq1");
    CHECK(acc.peer().id == 11);
    CHECK(acc.peer().address == "10.0.0.11:25672");
    CHECK(acc.purpose() == purpose);
    CHECK(ini.purpose() == purpose);
    CHECK(ini.wanted() == 0);
    CHECK(acc.wanted() == 0);
  }
}

TEST_CASE("handshake: different cookies fail on both sides as a cookie mismatch, and the cookie is not on the wire") {
  Handshake ini = Handshake::initiate(kA, "COOKIE-ONE", Purpose::Raft, nonce_of(1));
  Handshake acc = Handshake::accept(kB, "COOKIE-TWO", nonce_of(2));
  const auto sent = pump(ini, acc);
  REQUIRE(ini.failed());
  REQUIRE(acc.failed());
  CHECK(ini.failure().code == HandshakeError::BadCookie);
  CHECK_FALSE(ini.failure().from_peer);
  CHECK(acc.failure().code == HandshakeError::BadCookie);
  CHECK(acc.failure().from_peer);
  CHECK(std::string(sent.begin(), sent.end()).find("COOKIE") == std::string::npos);
}

TEST_CASE("handshake: a recorded proof does not open another session") {
  Handshake ini = Handshake::initiate(kA, "COOKIE", Purpose::Raft, nonce_of(1));
  Handshake acc = Handshake::accept(kB, "COOKIE", nonce_of(2));
  const auto recorded = pump(ini, acc);
  REQUIRE(acc.done());

  SUBCASE("the initiator's hello and proof replayed to an acceptor with a new nonce") {
    Handshake victim = Handshake::accept(kB, "COOKIE", nonce_of(3));
    victim.feed(recorded);
    REQUIRE(victim.failed());
    CHECK(victim.failure().code == HandshakeError::BadCookie);
  }
  SUBCASE("the acceptor's own proof sent back to it (reflection)") {
    Handshake victim = Handshake::accept(kB, "COOKIE", nonce_of(2));
    std::size_t hello_len = recorded.size() - (4 + 33);
    victim.feed(std::span(recorded).first(hello_len));
    auto answer = victim.take_output();
    // Its answer is hello then proof; the proof frame is the last 37 bytes.
    victim.feed(std::span(answer).last(4 + 33));
    REQUIRE(victim.failed());
    CHECK(victim.failure().code == HandshakeError::BadCookie);
  }
}

TEST_CASE("handshake: every split point gives the same outcome and stops at the end of the handshake") {
  Handshake ini = Handshake::initiate(kA, "COOKIE", Purpose::Raft, nonce_of(1));
  Handshake acc = Handshake::accept(kB, "COOKIE", nonce_of(2));
  auto stream = pump(ini, acc);
  REQUIRE(acc.done());
  const std::size_t handshake_len = stream.size();
  // What the initiator sends next belongs to raft: the handshake must leave it alone.
  stream.insert(stream.end(), {0xde, 0xad, 0xbe, 0xef});
  for (std::size_t piece = 1; piece <= stream.size(); ++piece) {
    CAPTURE(piece);
    std::size_t used = 0;
    Handshake a = accept_stream(stream, piece, used);
    REQUIRE(a.done());
    CHECK(used == handshake_len);
    CHECK(a.peer().name == "mq1");
  }
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    CAPTURE(cut);
    Handshake a = Handshake::accept(kB, "COOKIE", nonce_of(2));
    std::size_t used = a.feed(std::span(stream).first(cut));
    if (cut < handshake_len) CHECK(used == cut);
    used += a.feed(std::span(stream).subspan(used));
    CHECK(a.done());
    CHECK(used == handshake_len);
  }
}

TEST_CASE("handshake: reading exactly wanted() bytes at a time never over-reads") {
  Handshake ini = Handshake::initiate(kA, "COOKIE", Purpose::Peer, nonce_of(1));
  Handshake acc = Handshake::accept(kB, "COOKIE", nonce_of(2));
  auto stream = pump(ini, acc);
  const std::size_t handshake_len = stream.size();
  stream.insert(stream.end(), 64, 0x42);
  Handshake a = Handshake::accept(kB, "COOKIE", nonce_of(2));
  std::size_t pos = 0;
  while (a.wanted() > 0) {
    const std::size_t n = a.wanted();
    REQUIRE(pos + n <= stream.size());
    CHECK(a.feed(std::span(stream).subspan(pos, n)) == n);
    pos += n;
  }
  CHECK(a.done());
  CHECK(pos == handshake_len);
}

TEST_CASE("handshake: precise errors") {
  SUBCASE("another protocol version") {
    const auto f = failure_of(hello_frame(2, 1, 11, "mq1"));
    CHECK(f.code == HandshakeError::VersionMismatch);
    CHECK(f.detail.find("version 2") != std::string::npos);
  }
  SUBCASE("the peer has this node's name") {
    CHECK(failure_of(hello_frame(1, 1, 11, "mq2")).code == HandshakeError::NameClash);
  }
  SUBCASE("the peer has this node's id") {
    CHECK(failure_of(hello_frame(1, 1, 22, "mq1")).code == HandshakeError::NameClash);
  }
  SUBCASE("unknown purpose, no name, no id") {
    CHECK(failure_of(hello_frame(1, 7, 11, "mq1")).code == HandshakeError::Malformed);
    CHECK(failure_of(hello_frame(1, 1, 11, "")).code == HandshakeError::Malformed);
    CHECK(failure_of(hello_frame(1, 1, 0, "mq1")).code == HandshakeError::Malformed);
  }
  SUBCASE("a proof before the hello, an empty frame, an oversized frame, trailing bytes in a hello") {
    std::vector<uint8_t> proof;
    append_frame(proof, std::vector<uint8_t>(33, 2));
    CHECK(failure_of(proof).code == HandshakeError::Malformed);
    std::vector<uint8_t> empty;
    append_frame(empty, {});
    CHECK(failure_of(empty).code == HandshakeError::Malformed);
    CHECK(failure_of({0x00, 0x10, 0x00, 0x00}).code == HandshakeError::Malformed);
    auto hello = hello_frame(1, 1, 11, "mq1");
    hello[3] += 1;
    hello.push_back(0);
    CHECK(failure_of(hello).code == HandshakeError::Malformed);
  }
  SUBCASE("the acceptor answers for another purpose") {
    Handshake ini = Handshake::initiate(kA, "COOKIE", Purpose::Peer, nonce_of(1));
    ini.take_output();
    ini.feed(hello_frame(1, 1, 22, "mq2"));
    REQUIRE(ini.failed());
    CHECK(ini.failure().code == HandshakeError::Malformed);
  }
}

TEST_CASE("handshake: garbage ends in a failure or a wait, never a success or a crash") {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> junk(rng() % 700);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    if (junk.size() >= 4 && i % 2 == 0) {  // a plausible length, so the payload is parsed
      junk[0] = junk[1] = 0;
      junk[2] = static_cast<uint8_t>((junk.size() - 4) >> 8);
      junk[3] = static_cast<uint8_t>(junk.size() - 4);
      if (junk.size() > 4) junk[4] = static_cast<uint8_t>(1 + rng() % 3);
    }
    Handshake acc = Handshake::accept(kB, "COOKIE", nonce_of(2));
    Handshake ini = Handshake::initiate(kA, "COOKIE", Purpose::Raft, nonce_of(1));
    CHECK(acc.feed(junk) <= junk.size());
    CHECK(ini.feed(junk) <= junk.size());
    CHECK_FALSE(acc.done());
    CHECK_FALSE(ini.done());
  }
}
