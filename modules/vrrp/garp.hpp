// Gratuitous ARP (RFC 5798 §6.4.2: "broadcast a gratuitous ARP request ... for each IP
// address associated with the virtual router") from an AF_PACKET socket, so that hosts and
// switches learn the VIP's new MAC at once. The frame builder is pure for unit tests.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "vrrp/packet.hpp"

namespace mqnode::vrrp {

using Mac = std::array<uint8_t, 6>;

// The 28-byte ARP payload: request, sender = target = <vip>, sender MAC <mac>, target MAC
// broadcast (what keepalived and arping -U send).
std::vector<uint8_t> garp_payload(const Mac& mac, Ip4 vip);

class GarpSocket {
 public:
  // Throws std::runtime_error (EPERM without CAP_NET_RAW).
  GarpSocket(int ifindex, const std::string& ifname);
  ~GarpSocket();
  GarpSocket(const GarpSocket&) = delete;
  GarpSocket& operator=(const GarpSocket&) = delete;

  bool send(Ip4 vip, std::string& err);
  const Mac& mac() const { return mac_; }

 private:
  int fd_ = -1;
  int ifindex_;
  Mac mac_{};
};

}  // namespace mqnode::vrrp
