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

std::vector<uint8_t> garp_payload(const Mac& mac, Ip4 vip) {
  // Built by appending into reserved space: GCC 12 -O2 reports a false -Warray-bounds
  // for insert() after an initializer-list construction.
  static constexpr uint8_t kHead[] = {0x00, 0x01,   // htype Ethernet
                                      0x08, 0x00,   // ptype IPv4
                                      6,    4,      // hlen, plen
                                      0x00, 0x01};  // op request
  std::vector<uint8_t> p;
  p.reserve(28);
  for (uint8_t b : kHead) p.push_back(b);
  auto put_ip = [&](Ip4 a) {
    for (int s = 24; s >= 0; s -= 8) p.push_back(static_cast<uint8_t>(a >> s));
  };
  for (uint8_t b : mac) p.push_back(b);
  put_ip(vip);
  for (int i = 0; i < 6; ++i) p.push_back(0xff);
  put_ip(vip);
  return p;
}

GarpSocket::GarpSocket(int ifindex, const std::string& ifname) : ifindex_(ifindex) {
  fd_ = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
  if (fd_ < 0) throw std::runtime_error(fmt::format("AF_PACKET socket for gratuitous ARP: {}", std::strerror(errno)));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd_, SIOCGIFHWADDR, &ifr) < 0) {
    int e = errno;
    ::close(fd_);
    throw std::runtime_error(fmt::format("SIOCGIFHWADDR {}: {}", ifname, std::strerror(e)));
  }
  std::memcpy(mac_.data(), ifr.ifr_hwaddr.sa_data, 6);
}

GarpSocket::~GarpSocket() {
  if (fd_ >= 0) ::close(fd_);
}

bool GarpSocket::send(Ip4 vip, std::string& err) {
  auto p = garp_payload(mac_, vip);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = ifindex_;
  to.sll_halen = 6;
  std::memset(to.sll_addr, 0xff, 6);
  if (::sendto(fd_, p.data(), p.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
    err = std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace mqnode::vrrp
