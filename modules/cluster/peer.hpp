// Requests between nodes over links of purpose `peer`: a link carries one request and its
// reply at a time, each one frame (frame.hpp) holding a CBOR map; the caller parks it
// afterwards (Links::park) for its next request to the same node. The handshake has authenticated
// the peer already; what a request means is its handler's business (the broker's
// cluster member: join, forwarded proposals, status). Loop thread only.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cluster/link.hpp"

namespace mqnode::cluster {

inline constexpr std::size_t kMaxPeerFrame = 64 * 1024 * 1024;
inline constexpr std::chrono::seconds kPeerTimeout{10};
// How long a served link waits for the next request; longer than Links::kParkedFor, so
// that a caller rarely takes a link the server is closing.
inline constexpr std::chrono::seconds kPeerIdle{60};

using PeerReplyFn = std::function<void(nlohmann::json reply)>;
// <request> from <from>; <reply> must be called once (later is fine: the link waits).
using PeerHandler = std::function<void(const NodeIdentity& from, const nlohmann::json& request, PeerReplyFn reply)>;

// Serves peer links accepted by <links> with <handler> (an empty one: peer links are closed).
void serve_peer(Links& links, PeerHandler handler);

// The reply, or nullopt and a sentence saying why there is none (the link's own reason,
// "cookie mismatch …" say, or a timeout).
using PeerDone = std::function<void(std::optional<nlohmann::json> reply, std::string error)>;
// Sends <request> to the node at <address> ("host:port", numeric) and calls <done> once,
// on the loop, within <timeout> plus the link's handshake deadline.
void peer_call(Links& links, const std::string& address, nlohmann::json request, PeerDone done,
               std::chrono::milliseconds timeout = kPeerTimeout);

}  // namespace mqnode::cluster
