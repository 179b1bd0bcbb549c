// VRRP advertisements on the wire: v2 (RFC 3768 §5, IPv4) and v3 (RFC 5798 §5, IPv4 and
// IPv6). Pure codec, no sockets: encode() builds the VRRP payload (the kernel adds the IP
// header), check_packet() / check_advert() validate a received advert against one instance's
// expectations and say why it is dropped. Every drop reason has a counter (MQ_VRRP_DROPS).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mqnode::vrrp {

inline constexpr uint8_t kIpProtoVrrp = 112;  // RFC 5798 §5.1.1.4 / §5.1.2.4
inline constexpr uint8_t kTtl = 255;           // TTL / hop limit, RFC 5798 §5.1.1.3 / §5.1.2.3
inline constexpr std::size_t kAuthLen = 8;     // RFC 3768 §5.3.10

// An IPv4 or IPv6 address in network byte order (IPv4 uses the first 4 bytes). One type for
// both families so the state machine, config and counters do not care which one an instance
// runs; ordering is numeric within a family (RFC 5798 §6.4.3 compares primary addresses).
struct IpAddr {
  std::array<uint8_t, 16> bytes{};
  bool v6 = false;

  static constexpr IpAddr v4(uint32_t host_order) {
    IpAddr a;
    for (int i = 0; i < 4; ++i) a.bytes[static_cast<std::size_t>(i)] = static_cast<uint8_t>(host_order >> (24 - 8 * i));
    return a;
  }
  std::size_t size() const { return v6 ? 16 : 4; }
  std::span<const uint8_t> span() const { return {bytes.data(), size()}; }
  bool unset() const { return bytes == std::array<uint8_t, 16>{}; }
  bool link_local() const { return v6 && bytes[0] == 0xfe && (bytes[1] & 0xc0) == 0x80; }  // fe80::/10
  friend auto operator<=>(const IpAddr&, const IpAddr&) = default;
};
std::string to_string(const IpAddr& a);
// "10.0.0.1" or "fe80::1" (inet_pton's strict forms).
bool parse_ip(std::string_view s, IpAddr& out);

// The multicast groups adverts go to: 224.0.0.18 (RFC 5798 §5.1.1.2), ff02::12 (§5.1.2.2).
inline constexpr IpAddr kGroup4 = IpAddr::v4(0xE0000012);
inline constexpr IpAddr kGroup6 = {{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12}, true};

struct Advert {
  uint8_t version = 3;  // 2 or 3
  uint8_t vrid = 0;
  uint8_t priority = 0;
  // v2: seconds (8 bits, RFC 3768 §5.3.7); v3: centiseconds (12 bits, RFC 5798 §5.2.7).
  // Held in centiseconds for both so the state machine has one unit.
  uint16_t interval_cs = 100;
  uint8_t auth_type = 0;                  // v2 only: 0 none, 1 simple text (RFC 2338 §5.3.6)
  std::array<uint8_t, kAuthLen> auth{};   // v2 only, zero padded
  std::vector<IpAddr> addrs;  // one family, the one of the datagram
};

// The VRRP payload for <a>. For v3 the checksum covers the IPv4 or IPv6 pseudo-header
// (RFC 5798 §5.2.8), so <src>/<dst> must be the addresses the datagram will carry.
std::vector<uint8_t> encode(const Advert& a, const IpAddr& src, const IpAddr& dst);

// Internet checksum (RFC 1071) over <data>, continuing from <sum>.
uint32_t checksum_add(uint32_t sum, std::span<const uint8_t> data);
uint16_t checksum_fold(uint32_t sum);
// The sum of the pseudo-header of an upper-layer message of <len> bytes and protocol <proto>
// between <src> and <dst>: RFC 768 style for IPv4, RFC 8200 §8.1 for IPv6.
uint32_t pseudo_header_sum(const IpAddr& src, const IpAddr& dst, uint8_t proto, std::size_t len);

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
  std::vector<IpAddr> addrs;              // the instance's VIPs, any order
  std::vector<IpAddr> own;                // our own source addresses
  std::vector<IpAddr> peers;              // unicast peers; empty = accept any source
};

struct CheckResult {
  enum class Kind { Ok, Invalid, Drop, OtherVrid };  // STYLE §8
  Kind kind = Kind::Invalid;
  Drop reason = Drop::None;
  Advert advert;  // filled when kind == Ok
  IpAddr src;
  IpAddr dst;
};

// Validates one IPv4 datagram (IP header included, as an IPv4 raw socket delivers it)
// following RFC 3768 §7.1 / RFC 5798 §7.1. Never throws; never reads past <ip>.
CheckResult check_packet(std::span<const uint8_t> ip, const Expect& e);
// Validates the VRRP message <vrrp> that came from <src> to <dst> with TTL / hop limit
// <ttl>: an IPv6 raw socket delivers no header, these come from recvmsg() (source address,
// IPV6_PKTINFO, IPV6_HOPLIMIT). The address family of the list is <src>'s.
CheckResult check_advert(std::span<const uint8_t> vrrp, const IpAddr& src, const IpAddr& dst, int ttl, const Expect& e);

}  // namespace mqnode::vrrp
