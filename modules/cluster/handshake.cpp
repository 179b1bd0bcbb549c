#include "cluster/handshake.hpp"

#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace mqnode::cluster {

namespace {

// Message types, the first byte of every handshake frame's payload.
enum : uint8_t { kHello = 1, kProof = 2, kReject = 3 };

// Reject codes on the wire (HandshakeError is not a wire format).
uint8_t wire_code(HandshakeError e) { return static_cast<uint8_t>(static_cast<int>(e) + 1); }

constexpr std::string_view kTranscriptLabel = "mqnode cluster link proof";

// Bounds-checked big-endian reading of one message; every getter fails once short.
class Cursor {
 public:
  explicit Cursor(std::span<const uint8_t> in) : in_(in) {}
  bool u8(uint8_t& v) {
    if (!take(1)) return false;
    v = in_[pos_ - 1];
    return true;
  }
  bool u16(uint16_t& v) {
    if (!take(2)) return false;
    v = static_cast<uint16_t>(in_[pos_ - 2] << 8 | in_[pos_ - 1]);
    return true;
  }
  bool u64(uint64_t& v) {
    if (!take(8)) return false;
    v = 0;
    for (std::size_t i = pos_ - 8; i < pos_; ++i) v = v << 8 | in_[i];
    return true;
  }
  bool bytes(std::size_t n, std::span<const uint8_t>& v) {
    if (!take(n)) return false;
    v = in_.subspan(pos_ - n, n);
    return true;
  }
  bool string8(std::string& v) {
    uint8_t n = 0;
    std::span<const uint8_t> b;
    if (!u8(n) || !bytes(n, b)) return false;
    v.assign(b.begin(), b.end());
    return true;
  }
  bool at_end() const { return pos_ == in_.size(); }

 private:
  bool take(std::size_t n) {
    if (in_.size() - pos_ < n) return false;
    pos_ += n;
    return true;
  }
  std::span<const uint8_t> in_;
  std::size_t pos_ = 0;
};

void put_u16(std::vector<uint8_t>& out, uint16_t v) { out.insert(out.end(), {uint8_t(v >> 8), uint8_t(v)}); }
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}
void put_string8(std::vector<uint8_t>& out, std::string_view s) {
  out.push_back(static_cast<uint8_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}
void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  put_u16(out, static_cast<uint16_t>(v >> 16));
  put_u16(out, static_cast<uint16_t>(v));
}

// A peer's text in our logs: printable ASCII only.
std::string printable(std::string s) {
  for (char& c : s) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return s;
}

std::vector<uint8_t> encode_hello(const NodeIdentity& self, Purpose purpose, const Nonce& nonce) {
  std::vector<uint8_t> m{kHello};
  put_u16(m, kLinkProtocolVersion);
  m.push_back(static_cast<uint8_t>(purpose));
  m.insert(m.end(), nonce.begin(), nonce.end());
  put_u64(m, self.id);
  put_string8(m, self.name);
  put_string8(m, self.address);
  return m;
}

}  // namespace

std::string_view to_string(Purpose p) {
  switch (p) {
    case Purpose::Raft: return "raft";
    case Purpose::Peer: return "peer";
    case Purpose::Queues: return "queues";
  }
  return "unknown";
}

std::string_view to_string(HandshakeError e) {
  switch (e) {
    case HandshakeError::BadCookie: return "cookie mismatch";
    case HandshakeError::VersionMismatch: return "protocol version mismatch";
    case HandshakeError::Malformed: return "malformed handshake";
    case HandshakeError::NameClash: return "node name clash";
  }
  return "unknown";
}

Nonce random_nonce() {
  Nonce n;
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) throw std::runtime_error("OpenSSL RAND_bytes failed");
  return n;
}

Handshake::Handshake(NodeIdentity self, std::string_view cookie, Side side, Purpose purpose, const Nonce& nonce)
    : self_(std::move(self)), cookie_(cookie), side_(side), purpose_(purpose), nonce_(nonce) {
  if (self_.name.empty() || self_.name.size() > 255 || self_.address.size() > 255) {
    throw std::invalid_argument(fmt::format("node name '{}' / address '{}': expected 1..255 and 0..255 bytes",
                                            self_.name, self_.address));
  }
}

Handshake Handshake::initiate(NodeIdentity self, std::string_view cookie, Purpose purpose, const Nonce& nonce) {
  Handshake h(std::move(self), cookie, Side::Initiator, purpose, nonce);
  h.own_hello_ = encode_hello(h.self_, purpose, nonce);
  h.send(h.own_hello_);
  return h;
}

Handshake Handshake::accept(NodeIdentity self, std::string_view cookie, const Nonce& nonce) {
  // The purpose is the initiator's to choose; it is known from its hello.
  return Handshake(std::move(self), cookie, Side::Acceptor, Purpose::Raft, nonce);
}

std::size_t Handshake::wanted() const {
  return stage_ == Stage::AwaitHello || stage_ == Stage::AwaitProof ? reader_.wanted() : 0;
}

std::vector<uint8_t> Handshake::take_output() { return std::exchange(out_, {}); }

std::size_t Handshake::feed(std::span<const uint8_t> in) {
  std::size_t used = 0;
  while (used < in.size() && (stage_ == Stage::AwaitHello || stage_ == Stage::AwaitProof)) {
    std::size_t n = 0;
    const auto status = reader_.feed(in.subspan(used), n);
    used += n;
    if (status == FrameReader::Status::TooLarge) {
      fail(HandshakeError::Malformed, fmt::format("a frame longer than a handshake message ({} bytes at most)",
                                                  kMaxHandshakeFrame));
    } else if (status == FrameReader::Status::Frame) {
      on_message(reader_.payload());
    }
  }
  return used;
}

void Handshake::on_message(std::span<const uint8_t> msg) {
  const uint8_t type = msg.empty() ? 0 : msg[0];
  if (type == kReject) return on_reject(msg);
  if (stage_ == Stage::AwaitHello && type == kHello) return on_hello(msg);
  if (stage_ == Stage::AwaitProof && type == kProof) return on_proof(msg);
  fail(HandshakeError::Malformed, fmt::format("message type {} while waiting for a {}", type,
                                              stage_ == Stage::AwaitHello ? "hello" : "proof"));
}

void Handshake::on_hello(std::span<const uint8_t> msg) {
  Cursor c(msg.subspan(1));
  uint16_t version = 0;
  if (!c.u16(version)) return fail(HandshakeError::Malformed, "a hello too short for its version");
  // Before anything else: another version may lay the rest out differently.
  if (version != kLinkProtocolVersion) {
    return fail(HandshakeError::VersionMismatch,
                fmt::format("the peer speaks link protocol version {}, this node {}", version, kLinkProtocolVersion));
  }
  uint8_t purpose = 0;
  std::span<const uint8_t> nonce;
  NodeIdentity peer;
  if (!c.u8(purpose) || !c.bytes(Nonce{}.size(), nonce) || !c.u64(peer.id) || !c.string8(peer.name) ||
      !c.string8(peer.address) || !c.at_end()) {
    return fail(HandshakeError::Malformed, "a hello of the wrong length");
  }
  if (purpose < static_cast<uint8_t>(Purpose::Raft) || purpose > static_cast<uint8_t>(Purpose::Queues)) {
    return fail(HandshakeError::Malformed, fmt::format("unknown link purpose {}", purpose));
  }
  if (side_ == Side::Initiator && purpose != static_cast<uint8_t>(purpose_)) {
    return fail(HandshakeError::Malformed, fmt::format("the acceptor answered for purpose {}, asked for {}", purpose,
                                                       static_cast<int>(purpose_)));
  }
  if (peer.name.empty() || peer.id == 0) return fail(HandshakeError::Malformed, "a hello without a node name or id");
  peer.name = printable(std::move(peer.name));
  peer.address = printable(std::move(peer.address));
  if (peer.name == self_.name || peer.id == self_.id) {
    return fail(HandshakeError::NameClash,
                fmt::format("the peer calls itself name={} id={} and this node is name={} id={}: every node needs "
                            "its own /node/name (and id)",
                            peer.name, peer.id, self_.name, self_.id));
  }
  peer_ = std::move(peer);
  peer_hello_.assign(msg.begin(), msg.end());
  if (side_ == Side::Acceptor) {
    purpose_ = static_cast<Purpose>(purpose);
    own_hello_ = encode_hello(self_, purpose_, nonce_);
    send(own_hello_);
    send_proof();
  }
  stage_ = Stage::AwaitProof;
}

void Handshake::on_proof(std::span<const uint8_t> msg) {
  const auto expected = proof_of(side_ == Side::Initiator ? Side::Acceptor : Side::Initiator);
  if (msg.size() != 1 + expected.size()) return fail(HandshakeError::Malformed, "a proof of the wrong length");
  if (CRYPTO_memcmp(msg.data() + 1, expected.data(), expected.size()) != 0) {
    return fail(HandshakeError::BadCookie, fmt::format("the proof of name={} id={} does not match this node's cookie",
                                                       peer_.name, peer_.id));
  }
  if (side_ == Side::Initiator) send_proof();
  stage_ = Stage::Done;
}

void Handshake::on_reject(std::span<const uint8_t> msg) {
  Cursor c(msg.subspan(1));
  uint8_t code = 0;
  std::string text;
  if (!c.u8(code) || !c.string8(text) || !c.at_end() || code < wire_code(HandshakeError::BadCookie) ||
      code > wire_code(HandshakeError::NameClash)) {
    return fail(HandshakeError::Malformed, "a reject that does not parse");
  }
  stage_ = Stage::Failed;
  failure_ = {static_cast<HandshakeError>(code - 1), true, "the peer refused the link: " + printable(std::move(text))};
}

void Handshake::fail(HandshakeError code, std::string detail) {
  stage_ = Stage::Failed;
  std::vector<uint8_t> reject{kReject, wire_code(code)};
  put_string8(reject, std::string_view(detail).substr(0, 255));
  send(reject);
  failure_ = {code, false, std::move(detail)};
}

void Handshake::send_proof() {
  std::vector<uint8_t> proof{kProof};
  const auto mac = proof_of(side_);
  proof.insert(proof.end(), mac.begin(), mac.end());
  send(proof);
}

std::array<uint8_t, 32> Handshake::proof_of(Side side) const {
  const auto& initiator_hello = side_ == Side::Initiator ? own_hello_ : peer_hello_;
  const auto& acceptor_hello = side_ == Side::Initiator ? peer_hello_ : own_hello_;
  std::vector<uint8_t> transcript(kTranscriptLabel.begin(), kTranscriptLabel.end());
  put_u32(transcript, static_cast<uint32_t>(initiator_hello.size()));
  transcript.insert(transcript.end(), initiator_hello.begin(), initiator_hello.end());
  put_u32(transcript, static_cast<uint32_t>(acceptor_hello.size()));
  transcript.insert(transcript.end(), acceptor_hello.begin(), acceptor_hello.end());
  transcript.push_back(static_cast<uint8_t>(side));
  std::array<uint8_t, 32> mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), cookie_.data(), static_cast<int>(cookie_.size()), transcript.data(), transcript.size(),
       mac.data(), &len);
  return mac;
}

}  // namespace mqnode::cluster
