#include <doctest/doctest.h>

#include "vrrp/garp.hpp"
#include "vrrp/packet.hpp"

using namespace mqnode::vrrp;

namespace {

IpAddr ip(const char* s) {
  IpAddr a;
  REQUIRE(parse_ip(s, a));
  return a;
}

// An IPv4 header around <payload>, as a raw socket delivers it (header checksum is not
// checked by check_packet: the kernel already did).
std::vector<uint8_t> wrap(const std::vector<uint8_t>& payload, const IpAddr& src, const IpAddr& dst, uint8_t ttl = 255) {
  std::vector<uint8_t> p = {0x45, 0xc0, 0, 0, 0, 0, 0, 0, ttl, kIpProtoVrrp, 0, 0};
  auto total = 20 + payload.size();
  p[2] = static_cast<uint8_t>(total >> 8);
  p[3] = static_cast<uint8_t>(total);
  for (const IpAddr* a : {&src, &dst}) p.insert(p.end(), a->span().begin(), a->span().end());
  p.insert(p.end(), payload.begin(), payload.end());
  return p;
}

std::array<uint8_t, kAuthLen> pass(const char* s) {
  std::array<uint8_t, kAuthLen> a{};
  for (std::size_t i = 0; s[i] && i < kAuthLen; ++i) a[i] = static_cast<uint8_t>(s[i]);
  return a;
}

Expect expect_v2() {
  Expect e;
  e.version = 2;
  e.vrid = 80;
  e.auth_type = 1;
  e.auth = pass("1111");
  e.interval_cs = 100;
  e.addrs = {ip("10.214.0.100")};
  e.own = {ip("10.214.0.2")};
  return e;
}

Expect expect_v3() {
  Expect e;
  e.version = 3;
  e.vrid = 51;
  e.interval_cs = 10;
  e.addrs = {ip("10.214.0.100")};
  e.own = {ip("10.214.0.2")};
  return e;
}

// Captured from Debian bookworm's keepalived 2.2.7 in a test namespace (sniffed from
// 10.214.0.1): vrrp_instance { virtual_router_id 80 priority 100 advert_int 1
// virtual_ipaddress { 10.214.0.100/24 } }, with auth_type PASS auth_pass 1111 for v2 and
// vrrp_version 3 for v3.
const std::vector<uint8_t> kKeepalivedV2 = {
    0x45, 0xc0, 0x00, 0x28, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0xcf, 0xbb, 0x0a, 0xd6, 0x00, 0x01,
    0xe0, 0x00, 0x00, 0x12, 0x21, 0x50, 0x64, 0x01, 0x01, 0x01, 0x0c, 0x11, 0x0a, 0xd6, 0x00, 0x64,
    0x31, 0x31, 0x31, 0x31, 0x00, 0x00, 0x00, 0x00};
const std::vector<uint8_t> kKeepalivedV3 = {
    0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0xcf, 0xc3, 0x0a, 0xd6, 0x00, 0x01,
    0xe0, 0x00, 0x00, 0x12, 0x31, 0x50, 0x64, 0x01, 0x00, 0x64, 0x73, 0xaa, 0x0a, 0xd6, 0x00, 0x64};

// Captured from the same keepalived 2.2.7 over IPv6 (tcpdump in a test namespace, link-local
// fe80::ff:fe00:1 on a veth with MAC 02:00:00:00:00:01): vrrp_version 3, virtual_router_id
// 80, priority 100, advert_int 1, virtual_ipaddress { 2001:db8:214::100/64 }. An IPv6 raw
// socket delivers the VRRP message only; the addresses are those of the IPv6 header.
const std::vector<uint8_t> kKeepalivedV3Ip6 = {0x31, 0x50, 0x64, 0x01, 0x00, 0x64, 0x3c, 0x5e, 0x20, 0x01, 0x0d, 0xb8,
                                               0x02, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00};
// Its unsolicited Neighbor Advertisement for the VIP on becoming master (IPv6 header on).
const std::vector<uint8_t> kKeepalivedNa = {
    0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x20, 0x01, 0x0d, 0xb8, 0x02, 0x14, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x88, 0x00, 0xf3, 0x04, 0x20, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x02, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01};

// keepalived's captured v3 adverts: VRID 80, priority 100, advert_int 1, one VIP.
Advert keepalived_v3(const IpAddr& vip) {
  Advert a;
  a.version = 3;
  a.vrid = 80;
  a.priority = 100;
  a.interval_cs = 100;
  a.addrs = {vip};
  return a;
}

Expect expect_v3_ip6() {
  Expect e;
  e.version = 3;
  e.vrid = 80;
  e.addrs = {ip("2001:db8:214::100")};
  e.own = {ip("fe80::ff:fe00:2")};
  return e;
}

}  // namespace

TEST_CASE("address parsing and printing, both families") {
  IpAddr a;
  CHECK(parse_ip("10.214.0.1", a));
  CHECK(a == IpAddr::v4(0x0ad60001));
  CHECK(to_string(a) == "10.214.0.1");
  CHECK_FALSE(a.link_local());
  CHECK(parse_ip("fe80::ff:fe00:1", a));
  CHECK(a.v6);
  CHECK(a.link_local());
  CHECK(to_string(a) == "fe80::ff:fe00:1");
  CHECK(parse_ip("ff02::12", a));
  CHECK(a == kGroup6);
  CHECK(parse_ip("2001:DB8:214::100", a));
  CHECK(to_string(a) == "2001:db8:214::100");
  CHECK(IpAddr::v4(1) < IpAddr::v4(2));
  for (const char* bad : {"", "10.214.0", "10.214.0.256", "10.214.0.1.", "a.b.c.d", "1.2.3.4/24", "1..2.3", "0001.2.3.4",
                          "2001:db8::1::2", "fe80::1%eth0", "2001:db8::/64", "12345::1"})
    CHECK_MESSAGE(!parse_ip(bad, a), bad);
}

TEST_CASE("v2 encode matches keepalived's bytes") {
  Advert a;
  a.version = 2;
  a.vrid = 80;
  a.priority = 100;
  a.interval_cs = 100;
  a.auth_type = 1;
  a.auth = pass("1111");
  a.addrs = {ip("10.214.0.100")};
  auto bytes = encode(a, ip("10.214.0.1"), kGroup4);
  std::vector<uint8_t> want(kKeepalivedV2.begin() + 20, kKeepalivedV2.end());
  CHECK(bytes == want);
}

TEST_CASE("v3 encode matches keepalived's bytes (pseudo-header checksum)") {
  auto bytes = encode(keepalived_v3(ip("10.214.0.100")), ip("10.214.0.1"), kGroup4);
  std::vector<uint8_t> want(kKeepalivedV3.begin() + 20, kKeepalivedV3.end());
  CHECK(bytes == want);
  Expect e;
  e.version = 3;
  e.vrid = 80;
  e.addrs = {ip("10.214.0.100")};
  auto r = check_packet(kKeepalivedV3, e);
  REQUIRE(r.kind == CheckResult::Kind::Ok);
  CHECK(r.advert.interval_cs == 100);
}

TEST_CASE("v2 keepalived packet decodes") {
  auto e = expect_v2();
  auto r = check_packet(kKeepalivedV2, e);
  REQUIRE(r.kind == CheckResult::Kind::Ok);
  CHECK(r.src == ip("10.214.0.1"));
  CHECK(r.dst == kGroup4);
  CHECK(r.advert.vrid == 80);
  CHECK(r.advert.priority == 100);
  CHECK(r.advert.interval_cs == 100);
  CHECK(r.advert.addrs == std::vector<IpAddr>{ip("10.214.0.100")});
}

TEST_CASE("v3 round trip with pseudo-header checksum") {
  Advert a;
  a.version = 3;
  a.vrid = 51;
  a.priority = 150;
  a.interval_cs = 10;
  a.addrs = {ip("10.214.0.100")};
  IpAddr src = ip("10.214.0.1");
  auto payload = encode(a, src, kGroup4);
  CHECK(payload.size() == 12);
  CHECK(payload[0] == 0x31);
  CHECK(payload[4] == 0x00);
  CHECK(payload[5] == 10);
  auto r = check_packet(wrap(payload, src, kGroup4), expect_v3());
  REQUIRE(r.kind == CheckResult::Kind::Ok);
  CHECK(r.advert.priority == 150);
  CHECK(r.advert.interval_cs == 10);

  SUBCASE("the checksum covers the addresses of the IP header") {
    auto r2 = check_packet(wrap(payload, ip("10.214.0.9"), kGroup4), expect_v3());
    CHECK(r2.kind == CheckResult::Kind::Invalid);
    CHECK(r2.reason == Drop::bad_checksum);
  }
  SUBCASE("unicast destination") {
    auto p = encode(a, src, ip("10.214.0.2"));
    CHECK(check_packet(wrap(p, src, ip("10.214.0.2")), expect_v3()).kind == CheckResult::Kind::Ok);
  }
  SUBCASE("12-bit interval: 40.95 s") {
    a.interval_cs = 4095;
    auto p = encode(a, src, kGroup4);
    CHECK(p[4] == 0x0f);
    CHECK(p[5] == 0xff);
    auto r3 = check_packet(wrap(p, src, kGroup4), expect_v3());
    REQUIRE(r3.kind == CheckResult::Kind::Ok);
    CHECK(r3.advert.interval_cs == 4095);
  }
}

TEST_CASE("every drop rule has its reason") {
  Advert a;
  a.version = 2;
  a.vrid = 80;
  a.priority = 100;
  a.interval_cs = 100;
  a.auth_type = 1;
  a.auth = pass("1111");
  a.addrs = {ip("10.214.0.100")};
  const IpAddr src = ip("10.214.0.1");
  auto e = expect_v2();
  auto check = [&](const std::vector<uint8_t>& pkt) { return check_packet(pkt, e); };
  auto good = wrap(encode(a, src, kGroup4), src, kGroup4);
  REQUIRE(check(good).kind == CheckResult::Kind::Ok);

  SUBCASE("every truncation is refused, never read past the end") {
    for (std::size_t n = 0; n < good.size(); ++n) {
      std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
      auto r = check(cut);
      CHECK(r.kind != CheckResult::Kind::Ok);
    }
    auto shortlen = good;
    shortlen[3] = static_cast<uint8_t>(shortlen[3] + 4);  // IP length beyond the buffer
    CHECK(check(shortlen).reason == Drop::truncated);
  }
  SUBCASE("not IPv4 / not protocol 112") {
    auto p = good;
    p[0] = 0x65;
    CHECK(check(p).reason == Drop::bad_ip_header);
    p = good;
    p[9] = 17;
    CHECK(check(p).reason == Drop::bad_ip_header);
  }
  SUBCASE("TTL must be 255 (RFC 3768 §7.1)") {
    auto p = wrap(encode(a, src, kGroup4), src, kGroup4, 254);
    auto r = check(p);
    CHECK(r.kind == CheckResult::Kind::Drop);
    CHECK(r.reason == Drop::bad_ttl);
  }
  SUBCASE("version") {
    e.version = 3;
    CHECK(check(good).reason == Drop::bad_version);
  }
  SUBCASE("type") {
    auto p = good;
    p[20] = 0x22;
    CHECK(check(p).reason == Drop::bad_type);
  }
  SUBCASE("count beyond the packet") {
    auto p = good;
    p[23] = 3;
    CHECK(check(p).reason == Drop::bad_length);
  }
  SUBCASE("checksum: one flipped bit anywhere in the VRRP message") {
    for (std::size_t i = 20; i < good.size(); ++i) {
      auto p = good;
      p[i] ^= 0x01;
      auto r = check(p);
      CHECK(r.kind != CheckResult::Kind::Ok);
      if (i >= 26 && i != 26 && i != 27) CHECK(r.reason == Drop::bad_checksum);
    }
  }
  SUBCASE("other VRID is not an error") {
    e.vrid = 81;
    auto r = check(good);
    CHECK(r.kind == CheckResult::Kind::OtherVrid);
    CHECK(r.reason == Drop::other_vrid);
  }
  SUBCASE("our own advert looped back") {
    e.own = {src};
    CHECK(check(good).reason == Drop::own_packet);
  }
  SUBCASE("unicast: unknown peer") {
    e.peers = {ip("10.214.0.3")};
    CHECK(check(good).reason == Drop::unknown_peer);
    e.peers.push_back(src);
    CHECK(check(good).kind == CheckResult::Kind::Ok);
  }
  SUBCASE("auth type") {
    e.auth_type = 0;
    CHECK(check(good).reason == Drop::bad_auth_type);
  }
  SUBCASE("wrong password") {
    e.auth = pass("2222");
    auto r = check(good);
    CHECK(r.kind == CheckResult::Kind::Drop);
    CHECK(r.reason == Drop::bad_auth);
  }
  SUBCASE("v2 interval mismatch (RFC 3768 §7.1)") {
    e.interval_cs = 200;
    CHECK(check(good).reason == Drop::bad_interval);
  }
  SUBCASE("address list mismatch, unless from the owner") {
    e.addrs = {ip("10.214.0.101")};
    CHECK(check(good).reason == Drop::bad_addr_list);
    a.priority = 255;
    CHECK(check(wrap(encode(a, src, kGroup4), src, kGroup4)).kind == CheckResult::Kind::Ok);
  }
  SUBCASE("address list in another order is the same list") {
    a.addrs = {ip("10.214.0.101"), ip("10.214.0.100")};
    e.addrs = {ip("10.214.0.100"), ip("10.214.0.101")};
    CHECK(check(wrap(encode(a, src, kGroup4), src, kGroup4)).kind == CheckResult::Kind::Ok);
  }
  SUBCASE("v3 zero interval") {
    a.version = 3;
    a.interval_cs = 0;
    a.auth_type = 0;
    e.version = 3;
    CHECK(check(wrap(encode(a, src, kGroup4), src, kGroup4)).reason == Drop::bad_interval);
  }
  SUBCASE("every reason has a name") {
    CHECK(drop_name(Drop::bad_checksum) == "bad_checksum");
    CHECK(drop_name(Drop::other_vrid) == "other_vrid");
  }
}

TEST_CASE("IPv6 v3: encode matches keepalived's bytes (IPv6 pseudo-header checksum)") {
  CHECK(encode(keepalived_v3(ip("2001:db8:214::100")), ip("fe80::ff:fe00:1"), kGroup6) == kKeepalivedV3Ip6);
}

TEST_CASE("IPv6 v3: keepalived's advert decodes; every rule applies to it") {
  const IpAddr src = ip("fe80::ff:fe00:1");
  auto e = expect_v3_ip6();
  auto r = check_advert(kKeepalivedV3Ip6, src, kGroup6, 255, e);
  REQUIRE(r.kind == CheckResult::Kind::Ok);
  CHECK(r.src == src);
  CHECK(r.advert.vrid == 80);
  CHECK(r.advert.priority == 100);
  CHECK(r.advert.interval_cs == 100);
  REQUIRE(r.advert.addrs.size() == 1);
  CHECK(r.advert.addrs[0] == ip("2001:db8:214::100"));
  CHECK(r.advert.addrs[0].v6);

  SUBCASE("hop limit must be 255 (RFC 5798 §5.1.2.3); a missing IPV6_HOPLIMIT fails too") {
    CHECK(check_advert(kKeepalivedV3Ip6, src, kGroup6, 254, e).reason == Drop::bad_ttl);
    CHECK(check_advert(kKeepalivedV3Ip6, src, kGroup6, -1, e).reason == Drop::bad_ttl);
  }
  SUBCASE("the checksum covers the IPv6 pseudo-header: another source or destination fails it") {
    CHECK(check_advert(kKeepalivedV3Ip6, ip("fe80::ff:fe00:3"), kGroup6, 255, e).reason == Drop::bad_checksum);
    CHECK(check_advert(kKeepalivedV3Ip6, src, ip("fe80::ff:fe00:2"), 255, e).reason == Drop::bad_checksum);
  }
  SUBCASE("one flipped bit anywhere fails") {
    for (std::size_t i = 0; i < kKeepalivedV3Ip6.size(); ++i) {
      auto p = kKeepalivedV3Ip6;
      p[i] ^= 0x01;
      CHECK(check_advert(p, src, kGroup6, 255, e).kind != CheckResult::Kind::Ok);
    }
  }
  SUBCASE("a count of two IPv6 addresses needs 16 bytes each") {
    auto p = kKeepalivedV3Ip6;
    p[3] = 2;
    CHECK(check_advert(p, src, kGroup6, 255, e).reason == Drop::bad_length);
    for (std::size_t n = 0; n < p.size(); ++n)
      CHECK(check_advert(std::span(p).first(n), src, kGroup6, 255, e).kind != CheckResult::Kind::Ok);
  }
  SUBCASE("own packet, other list, unicast peers") {
    e.own = {src};
    CHECK(check_advert(kKeepalivedV3Ip6, src, kGroup6, 255, e).reason == Drop::own_packet);
    e = expect_v3_ip6();
    e.addrs = {ip("2001:db8:214::101")};
    CHECK(check_advert(kKeepalivedV3Ip6, src, kGroup6, 255, e).reason == Drop::bad_addr_list);
    e = expect_v3_ip6();
    e.peers = {ip("fe80::ff:fe00:3")};
    CHECK(check_advert(kKeepalivedV3Ip6, src, kGroup6, 255, e).reason == Drop::unknown_peer);
  }
  SUBCASE("round trip with a link-local VIP first and several addresses") {
    Advert a = keepalived_v3(ip("fe80::100"));
    a.priority = 200;
    a.interval_cs = 10;
    a.addrs = {ip("fe80::100"), ip("2001:db8:214::100"), ip("2001:db8:214::101")};
    e.addrs = {ip("2001:db8:214::101"), ip("fe80::100"), ip("2001:db8:214::100")};
    auto p = encode(a, src, kGroup6);
    CHECK(p.size() == 8 + 3 * 16);
    auto r2 = check_advert(p, src, kGroup6, 255, e);
    REQUIRE(r2.kind == CheckResult::Kind::Ok);
    CHECK(r2.advert.addrs == a.addrs);
    CHECK(r2.advert.interval_cs == 10);
  }
}

TEST_CASE("takeover announcements: gratuitous ARP and keepalived's unsolicited NA") {
  const Mac mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
  SUBCASE("IPv6: neighbor advertisement, override flag, to ff02::1, byte for byte keepalived's") {
    CHECK(unsolicited_na(mac, ip("2001:db8:214::100")) == kKeepalivedNa);
  }
  SUBCASE("IPv4: ARP request with sender = target = VIP") {
    auto p = garp_payload(mac, ip("10.214.0.100"));
    const std::vector<uint8_t> want = {0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 10, 214,
                                       0,    100,  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 10, 214, 0, 100};
    CHECK(p == want);
  }
}
