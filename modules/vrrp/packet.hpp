// VRRP advertisements on the wire: v2 (RFC 3768 §5) and v3 (RFC 5798 §5) over IPv4.
// Pure codec, no sockets: encode() builds the VRRP payload (the kernel adds the IP header),
// check_packet() validates a received IPv4 datagram against one instance's expectations
// and says why it is dropped. Every drop reason has a counter (MQ_VRRP_DROPS).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mqnode::vrrp {

inline constexpr uint8_t kIpProtoVrrp = 112;          // RFC 5798 §5.1.1.4
inline constexpr uint32_t kMulticastGroup = 0xE0000012;  // 224.0.0.18, RFC 5798 §5.1.1.2
inline constexpr uint8_t kTtl = 255;                   // RFC 5798 §5.1.1.3
inline constexpr std::size_t kAuthLen = 8;             // RFC 3768 §5.3.10

// IPv4 addresses are host-order uint32_t throughout the codec and state machine.
using Ip4 = uint32_t;
std::string ip4_to_string(Ip4 a);
bool parse_ip4(std::string_view s, Ip4& out);

struct Advert {
  uint8_t version = 3;  // 2 or 3
  uint8_t vrid = 0;
  uint8_t priority = 0;
  // v2: seconds (8 bits, RFC 3768 §5.3.7); v3: centiseconds (12 bits, RFC 5798 §5.2.7).
  // Held in centiseconds for both so the state machine has one unit.
  uint16_t interval_cs = 100;
  uint8_t auth_type = 0;                  // v2 only: 0 none, 1 simple text (RFC 2338 §5.3.6)
  std::array<uint8_t, kAuthLen> auth{};   // v2 only, zero padded
  std::vector<Ip4> addrs;
};

// The VRRP payload for <a>. For v3 the checksum covers the IPv4 pseudo-header
// (RFC 5798 §5.2.8), so <src>/<dst> must be the addresses the datagram will carry.
std::vector<uint8_t> encode(const Advert& a, Ip4 src, Ip4 dst);

// Internet checksum (RFC 1071) over <data>, continuing from <sum>.
uint32_t checksum_add(uint32_t sum, std::span<const uint8_t> data);
uint16_t checksum_fold(uint32_t sum);

// Drop reasons, each a counter (keepalived's vrrp_stats). OtherVrid is not an error: several
// routers share the group address and every raw socket sees every VRID.
#define MQ_VRRP_DROPS(X)                                                                       \
  X(truncated) X(bad_ip_header) X(bad_ttl) X(bad_version) X(bad_type) X(bad_checksum)         \
  X(bad_length) X(bad_auth_type) X(bad_auth) X(bad_interval) X(bad_addr_list) X(own_packet)   \
  X(unknown_peer) X(other_vrid)

enum class Drop : uint8_t {
  None,
#define MQ_VRRP_DROP_ENUM(n) n,
  MQ_VRRP_DROPS(MQ_VRRP_DROP_ENUM)
#undef MQ_VRRP_DROP_ENUM
};
std::string_view drop_name(Drop d);

// What a received packet is checked against: the local instance's configuration.
struct Expect {
  uint8_t version = 3;
  uint8_t vrid = 0;
  uint8_t auth_type = 0;                  // v2
  std::array<uint8_t, kAuthLen> auth{};   // v2
  uint16_t interval_cs = 100;             // v2 requires an exact match (RFC 3768 §7.1)
  std::vector<Ip4> addrs;                 // the instance's VIPs, any order
  std::vector<Ip4> own;                   // our own source addresses
  std::vector<Ip4> peers;                 // unicast peers; empty = accept any source
};

struct CheckResult {
  enum class Kind { Ok, Invalid, Drop, OtherVrid };  // STYLE §8
  Kind kind = Kind::Invalid;
  Drop reason = Drop::None;
  Advert advert;  // filled when kind == Ok
  Ip4 src = 0;
  Ip4 dst = 0;
};

// Validates one IPv4 datagram (IP header included, as a raw socket delivers it) following
// RFC 3768 §7.1 / RFC 5798 §7.1. Never throws; never reads past <ip>.
CheckResult check_packet(std::span<const uint8_t> ip, const Expect& e);

}  // namespace mqnode::vrrp
