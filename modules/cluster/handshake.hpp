// The opening of every cluster link, as a pure state machine (no I/O, no clock): both sides
// exchange a hello (protocol version, a fresh 32-byte nonce, node name, id and address, the
// link's purpose) and prove that they hold the cookie with HMAC-SHA256(cookie, transcript).
// The transcript is both hellos as sent plus the side that proves, so the cookie never
// crosses the wire, a proof recorded from another session fails (the nonces differ) and a
// proof cannot be reflected back to its author (the side differs).
//
//   initiator                                  acceptor
//   hello(purpose) ───────────────────────────▶
//              ◀─────────────── hello(purpose), proof(acceptor)
//   proof(initiator) ─────────────────────────▶
//   done (raft/peer bytes may follow)          done
//
// A side that fails sends a reject (code + text) so the other side can say why.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/frame.hpp"

namespace mqnode::cluster {

inline constexpr uint16_t kLinkProtocolVersion = 1;
// Largest handshake message: a hello with a 255-byte name and a 255-byte address is ~560.
inline constexpr std::size_t kMaxHandshakeFrame = 1024;

// What the link is for once it is authenticated; the acceptor dispatches on it.
enum class Purpose : uint8_t { Raft = 1, Peer = 2, Queues = 3 };
std::string_view to_string(Purpose p);

struct NodeIdentity {
  std::string name;     // /node/name, unique in the cluster (1..255 bytes)
  uint64_t id = 0;      // raft server id, unique in the cluster, > 0
  std::string address;  // "host:port" where other nodes reach this node's cluster port (<= 255 bytes)
};

using Nonce = std::array<uint8_t, 32>;
// 32 bytes from OpenSSL's CSPRNG; throws std::runtime_error if it has none to give.
Nonce random_nonce();

enum class HandshakeError {
  BadCookie,        // a proof did not verify: the two nodes hold different cookies
  VersionMismatch,  // the peer speaks another link protocol version
  Malformed,        // bytes that are not this protocol, out of order, or oversized
  NameClash,        // the peer has this node's name or id
};
std::string_view to_string(HandshakeError e);

struct HandshakeFailure {
  HandshakeError code = HandshakeError::Malformed;
  bool from_peer = false;  // the peer found the problem and said so in a reject
  std::string detail;      // what happened, for a log line (a peer's text is made printable)
};

class Handshake {
 public:
  // The side that connected: its hello is in take_output() at once.
  static Handshake initiate(NodeIdentity self, std::string_view cookie, Purpose purpose, const Nonce& nonce);
  // The side that accepted: waits for the initiator's hello.
  static Handshake accept(NodeIdentity self, std::string_view cookie, const Nonce& nonce);

  // Takes the peer's bytes, never more than the handshake needs (what follows belongs to
  // the link's purpose); returns how many it took. Takes nothing once done or failed.
  std::size_t feed(std::span<const uint8_t> in);
  // How many bytes to read next: reading exactly this many never over-reads. 0 when done or failed.
  std::size_t wanted() const;
  // Bytes to send to the peer (hello, proof or reject), cleared by the call. A failed
  // handshake may have a reject to send before the socket is closed.
  std::vector<uint8_t> take_output();

  bool done() const { return stage_ == Stage::Done; }
  bool failed() const { return stage_ == Stage::Failed; }
  // done() only: who the peer is, and the link's purpose.
  const NodeIdentity& peer() const { return peer_; }
  Purpose purpose() const { return purpose_; }
  // failed() only.
  const HandshakeFailure& failure() const { return failure_; }

 private:
  enum class Stage { AwaitHello, AwaitProof, Done, Failed };
  enum class Side : uint8_t { Initiator = 'I', Acceptor = 'A' };

  Handshake(NodeIdentity self, std::string_view cookie, Side side, Purpose purpose, const Nonce& nonce);
  void on_message(std::span<const uint8_t> msg);
  void on_hello(std::span<const uint8_t> msg);
  void on_proof(std::span<const uint8_t> msg);
  void on_reject(std::span<const uint8_t> msg);
  void fail(HandshakeError code, std::string detail);
  // HMAC-SHA256(cookie, label | initiator's hello | acceptor's hello | <side>).
  std::array<uint8_t, 32> proof_of(Side side) const;
  void send_proof();
  void send(std::span<const uint8_t> msg) { append_frame(out_, msg); }

  NodeIdentity self_;
  std::string cookie_;
  Side side_;
  Purpose purpose_;
  Nonce nonce_;
  Stage stage_ = Stage::AwaitHello;
  FrameReader reader_{kMaxHandshakeFrame};
  std::vector<uint8_t> own_hello_, peer_hello_;  // as sent: the transcript
  std::vector<uint8_t> out_;
  NodeIdentity peer_;
  HandshakeFailure failure_;
};

}  // namespace mqnode::cluster
