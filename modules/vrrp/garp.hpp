// Announcing a VIP's new MAC when this node takes it, so that hosts and switches update at
// once: gratuitous ARP for IPv4 (RFC 5798 §6.4.1 "broadcast a gratuitous ARP request") and
// an unsolicited Neighbor Advertisement for IPv6 (RFC 5798 §6.4.1, RFC 4861 §7.2.6), both
// from an AF_PACKET socket. The frame builders are pure for unit tests.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "vrrp/packet.hpp"

namespace mqnode::vrrp {

using Mac = std::array<uint8_t, 6>;

// The 28-byte ARP payload: request, sender = target = <vip> (IPv4), sender MAC <mac>,
// target MAC broadcast (what keepalived and arping -U send).
std::vector<uint8_t> garp_payload(const Mac& mac, const IpAddr& vip);

// The IPv6 datagram (header included) of an unsolicited Neighbor Advertisement for <vip>
// (IPv6) from <vip> to ff02::1, hop limit 255, Override flag, target link-layer address
// option <mac>: byte for byte what keepalived sends.
std::vector<uint8_t> unsolicited_na(const Mac& mac, const IpAddr& vip);

class Announcer {
 public:
  // Throws std::runtime_error (EPERM without CAP_NET_RAW). <v6>: NAs instead of ARP.
  Announcer(int ifindex, const std::string& ifname, bool v6);
  ~Announcer();
  Announcer(const Announcer&) = delete;
  Announcer& operator=(const Announcer&) = delete;

  bool send(const IpAddr& vip, std::string& err);
  const Mac& mac() const { return mac_; }

 private:
  int fd_ = -1;
  int ifindex_;
  bool v6_;
  Mac mac_{};
};

}  // namespace mqnode::vrrp
