// Addresses, an instance configuration and adverts shared by the vrrp unit tests.
#pragma once

#include "vrrp/instance.hpp"

namespace mqnode::vrrp::test {

constexpr IpAddr kMe = IpAddr::v4(0x0ad60002);      // 10.214.0.2
constexpr IpAddr kPeerLo = IpAddr::v4(0x0ad60001);  // 10.214.0.1
constexpr IpAddr kPeerHi = IpAddr::v4(0x0ad60003);  // 10.214.0.3

inline InstanceConfig config(uint8_t version = 3, uint8_t prio = 100, uint16_t interval_cs = 100) {
  InstanceConfig c;
  c.name = "VI_1";
  c.interface = "eth0";
  c.vrid = 51;
  c.version = version;
  c.priority = prio;
  c.interval_cs = interval_cs;
  c.vips = {Vip{IpAddr::v4(0x0ad60064), 24}};
  return c;
}

inline Advert advert(uint8_t prio, uint16_t interval_cs = 100, uint8_t version = 3) {
  Advert a;
  a.version = version;
  a.vrid = 51;
  a.priority = prio;
  a.interval_cs = interval_cs;
  return a;
}

}  // namespace mqnode::vrrp::test
