#include <doctest/doctest.h>

#include "vrrp/packet.hpp"

using namespace mqnode::vrrp;

namespace {

Ip4 ip(const char* s) {
  Ip4 a = 0;
  REQUIRE(parse_ip4(s, a));
  return a;
}

// An IPv4 header around <payload>, as a raw socket delivers it (header checksum is not
// checked by check_packet: the kernel already did).
std::vector<uint8_t> wrap(const std::vector<uint8_t>& payload, Ip4 src, Ip4 dst, uint8_t ttl = 255) {
  std::vector<uint8_t> p = {0x45, 0xc0, 0, 0, 0, 0, 0, 0, ttl, kIpProtoVrrp, 0, 0};
  auto total = 20 + payload.size();
  p[2] = static_cast<uint8_t>(total >> 8);
  p[3] = static_cast<uint8_t>(total);
  for (Ip4 a : {src, dst})
    for (int s = 24; s >= 0; s -= 8) p.push_back(static_cast<uint8_t>(a >> s));
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

}  // namespace

TEST_CASE("ip4 parsing and printing") {
  Ip4 a;
  CHECK(parse_ip4("10.214.0.1", a));
  CHECK(a == 0x0ad60001);
  CHECK(ip4_to_string(a) == "10.214.0.1");
  for (const char* bad : {"", "10.214.0", "10.214.0.256", "10.214.0.1.", "a.b.c.d", "1.2.3.4/24", "1..2.3", "0001.2.3.4"})
    CHECK_MESSAGE(!parse_ip4(bad, a), bad);
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
  auto bytes = encode(a, ip("10.214.0.1"), kMulticastGroup);
  std::vector<uint8_t> want(kKeepalivedV2.begin() + 20, kKeepalivedV2.end());
  CHECK(bytes == want);
}

TEST_CASE("v3 encode matches keepalived's bytes (pseudo-header checksum)") {
  Advert a;
  a.version = 3;
  a.vrid = 80;
  a.priority = 100;
  a.interval_cs = 100;
  a.addrs = {ip("10.214.0.100")};
  auto bytes = encode(a, ip("10.214.0.1"), kMulticastGroup);
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
  CHECK(r.dst == kMulticastGroup);
  CHECK(r.advert.vrid == 80);
  CHECK(r.advert.priority == 100);
  CHECK(r.advert.interval_cs == 100);
  CHECK(r.advert.addrs == std::vector<Ip4>{ip("10.214.0.100")});
}

TEST_CASE("v3 round trip with pseudo-header checksum") {
  Advert a;
  a.version = 3;
  a.vrid = 51;
  a.priority = 150;
  a.interval_cs = 10;
  a.addrs = {ip("10.214.0.100")};
  Ip4 src = ip("10.214.0.1");
  auto payload = encode(a, src, kMulticastGroup);
  CHECK(payload.size() == 12);
  CHECK(payload[0] == 0x31);
  CHECK(payload[4] == 0x00);
  CHECK(payload[5] == 10);
  auto r = check_packet(wrap(payload, src, kMulticastGroup), expect_v3());
  REQUIRE(r.kind == CheckResult::Kind::Ok);
  CHECK(r.advert.priority == 150);
  CHECK(r.advert.interval_cs == 10);

  SUBCASE("the checksum covers the addresses of the IP header") {
    auto r2 = check_packet(wrap(payload, ip("10.214.0.9"), kMulticastGroup), expect_v3());
    CHECK(r2.kind == CheckResult::Kind::Invalid);
    CHECK(r2.reason == Drop::bad_checksum);
  }
  SUBCASE("unicast destination") {
    auto p = encode(a, src, ip("10.214.0.2"));
    CHECK(check_packet(wrap(p, src, ip("10.214.0.2")), expect_v3()).kind == CheckResult::Kind::Ok);
  }
  SUBCASE("12-bit interval: 40.95 s") {
    a.interval_cs = 4095;
    auto p = encode(a, src, kMulticastGroup);
    CHECK(p[4] == 0x0f);
    CHECK(p[5] == 0xff);
    auto r3 = check_packet(wrap(p, src, kMulticastGroup), expect_v3());
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
  const Ip4 src = ip("10.214.0.1");
  auto e = expect_v2();
  auto check = [&](const std::vector<uint8_t>& pkt) { return check_packet(pkt, e); };
  auto good = wrap(encode(a, src, kMulticastGroup), src, kMulticastGroup);
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
    auto p = wrap(encode(a, src, kMulticastGroup), src, kMulticastGroup, 254);
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
    CHECK(check(wrap(encode(a, src, kMulticastGroup), src, kMulticastGroup)).kind == CheckResult::Kind::Ok);
  }
  SUBCASE("address list in another order is the same list") {
    a.addrs = {ip("10.214.0.101"), ip("10.214.0.100")};
    e.addrs = {ip("10.214.0.100"), ip("10.214.0.101")};
    CHECK(check(wrap(encode(a, src, kMulticastGroup), src, kMulticastGroup)).kind == CheckResult::Kind::Ok);
  }
  SUBCASE("v3 zero interval") {
    a.version = 3;
    a.interval_cs = 0;
    a.auth_type = 0;
    e.version = 3;
    CHECK(check(wrap(encode(a, src, kMulticastGroup), src, kMulticastGroup)).reason == Drop::bad_interval);
  }
  SUBCASE("every reason has a name") {
    CHECK(drop_name(Drop::bad_checksum) == "bad_checksum");
    CHECK(drop_name(Drop::other_vrid) == "other_vrid");
  }
}
