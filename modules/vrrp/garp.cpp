#include "vrrp/garp.hpp"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace mqnode::vrrp {

namespace {
constexpr uint8_t kIpProtoIcmp6 = 58;
constexpr IpAddr kAllNodes = {{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01}, true};  // ff02::1
}  // namespace

std::vector<uint8_t> garp_payload(const Mac& mac, const IpAddr& vip) {
  // Built by appending into reserved space: GCC 12 -O2 reports a false -Warray-bounds
  // for insert() after an initializer-list construction.
  static constexpr uint8_t kHead[] = {0x00, 0x01,   // htype Ethernet
                                      0x08, 0x00,   // ptype IPv4
                                      6,    4,      // hlen, plen
                                      0x00, 0x01};  // op request
  std::vector<uint8_t> p;
  p.reserve(28);
  for (uint8_t b : kHead) p.push_back(b);
  for (uint8_t b : mac) p.push_back(b);
  for (uint8_t b : vip.span()) p.push_back(b);
  for (int i = 0; i < 6; ++i) p.push_back(0xff);
  for (uint8_t b : vip.span()) p.push_back(b);
  return p;
}

std::vector<uint8_t> unsolicited_na(const Mac& mac, const IpAddr& vip) {
  // ICMPv6 type 136, code 0, checksum, flags (R=0 S=0 O=1: RFC 4861 §7.2.6 unsolicited
  // adverts set Override and not Solicited), target, option 2 (target link-layer address)
  // of one 8-byte unit.
  std::vector<uint8_t> icmp;
  icmp.reserve(32);
  static constexpr uint8_t kNaHead[] = {136, 0, 0, 0, 0x20, 0, 0, 0};
  for (uint8_t b : kNaHead) icmp.push_back(b);
  for (uint8_t b : vip.span()) icmp.push_back(b);
  icmp.push_back(2);
  icmp.push_back(1);
  for (uint8_t b : mac) icmp.push_back(b);
  const uint16_t c = checksum_fold(checksum_add(pseudo_header_sum(vip, kAllNodes, kIpProtoIcmp6, icmp.size()), icmp));
  icmp[2] = static_cast<uint8_t>(c >> 8);
  icmp[3] = static_cast<uint8_t>(c);

  // The IPv6 header: an AF_PACKET socket sends it as is. Hop limit 255: receivers drop
  // Neighbor Discovery messages with any other (RFC 4861 §7.1.2).
  std::vector<uint8_t> p;
  p.reserve(40 + icmp.size());
  const uint8_t head[] = {0x60, 0, 0, 0, 0, static_cast<uint8_t>(icmp.size()), kIpProtoIcmp6, 255};
  for (uint8_t b : head) p.push_back(b);
  for (uint8_t b : vip.span()) p.push_back(b);
  for (uint8_t b : kAllNodes.span()) p.push_back(b);
  for (uint8_t b : icmp) p.push_back(b);
  return p;
}

Announcer::Announcer(int ifindex, const std::string& ifname, bool v6) : ifindex_(ifindex), v6_(v6) {
  fd_ = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(v6 ? ETH_P_IPV6 : ETH_P_ARP));
  if (fd_ < 0)
    throw std::runtime_error(fmt::format("AF_PACKET socket for {}: {}", v6 ? "neighbor advertisements" : "gratuitous ARP",
                                         std::strerror(errno)));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd_, SIOCGIFHWADDR, &ifr) < 0) {
    int e = errno;
    ::close(fd_);
    throw std::runtime_error(fmt::format("SIOCGIFHWADDR {}: {}", ifname, std::strerror(e)));
  }
  std::memcpy(mac_.data(), ifr.ifr_hwaddr.sa_data, 6);
}

Announcer::~Announcer() {
  if (fd_ >= 0) ::close(fd_);
}

bool Announcer::send(const IpAddr& vip, std::string& err) {
  auto p = v6_ ? unsolicited_na(mac_, vip) : garp_payload(mac_, vip);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(v6_ ? ETH_P_IPV6 : ETH_P_ARP);
  to.sll_ifindex = ifindex_;
  to.sll_halen = 6;
  if (v6_) {
    // ff02::1 maps to 33:33:00:00:00:01 (RFC 2464 §7).
    static constexpr uint8_t kAllNodesMac[] = {0x33, 0x33, 0, 0, 0, 1};
    std::memcpy(to.sll_addr, kAllNodesMac, 6);
  } else {
    std::memset(to.sll_addr, 0xff, 6);
  }
  if (::sendto(fd_, p.data(), p.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
    err = std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace mqnode::vrrp
