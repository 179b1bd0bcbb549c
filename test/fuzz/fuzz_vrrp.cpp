// libFuzzer target: a VRRP advert as a raw socket delivers it, checked against an instance
// configuration that the input chooses too, so every rule of RFC 3768 / 5798 §7.1 is
// reachable (an advert only decodes fully when VRID, auth and addresses match). Layout, as
// gen_corpus.py writes the seeds:
//   [flags] [vrid] [auth_type] [auth: 8] [interval_cs: 2, big-endian]
//   [n VIPs] [VIPs] [n own] [own] [n peers] [peers]      n taken mod 4, addresses of the family
//   IPv4: the datagram, IP header included                  -> check_packet
//   IPv6: [src: 16] [dst: 16] [hop limit] [VRRP message]    -> check_advert
//   flags: bit 0 VRRPv3 (else v2), bit 1 IPv6
// A check must never throw or read past its span (ASan), its kind and reason must agree, and
// an accepted advert must re-encode to one that is accepted again with the same fields.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vrrp/packet.hpp"

using namespace mqnode::vrrp;

namespace {

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) __builtin_trap(); \
  } while (0)

// Reads the configuration from the front of the input; false once it runs out.
struct Cursor {
  std::span<const uint8_t> in;

  bool take(std::span<uint8_t> out) {
    if (in.size() < out.size()) return false;
    std::copy_n(in.begin(), out.size(), out.begin());
    in = in.subspan(out.size());
    return true;
  }
  bool byte(uint8_t& b) { return take({&b, 1}); }
  bool addr(bool v6, IpAddr& a) {
    a.v6 = v6;
    return take({a.bytes.data(), a.size()});
  }
  bool addrs(bool v6, std::vector<IpAddr>& out) {
    uint8_t n = 0;
    if (!byte(n)) return false;
    out.resize(n % 4);
    return std::all_of(out.begin(), out.end(), [&](IpAddr& a) { return addr(v6, a); });
  }
};

bool same_advert(const Advert& a, const Advert& b) {
  return a.version == b.version && a.vrid == b.vrid && a.priority == b.priority &&
         a.interval_cs == b.interval_cs && a.auth_type == b.auth_type && a.auth == b.auth && a.addrs == b.addrs;
}

void check_result(const CheckResult& r, const Expect& e, bool v6) {
  using Kind = CheckResult::Kind;
  FUZZ_CHECK((r.kind == Kind::Ok) == (r.reason == Drop::None));
  FUZZ_CHECK((r.kind == Kind::OtherVrid) == (r.reason == Drop::other_vrid));
  FUZZ_CHECK(drop_name(r.reason) != "?");
  if (r.kind != Kind::Ok) return;
  const Advert& a = r.advert;
  FUZZ_CHECK(a.version == e.version && a.vrid == e.vrid);
  FUZZ_CHECK(r.src.v6 == v6 && std::all_of(a.addrs.begin(), a.addrs.end(), [&](const IpAddr& x) { return x.v6 == v6; }));
  const std::vector<uint8_t> again = encode(a, r.src, r.dst);
  const CheckResult r2 = check_advert(again, r.src, r.dst, kTtl, e);
  FUZZ_CHECK(r2.kind == Kind::Ok && same_advert(r2.advert, a));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  Cursor c{{data, size}};
  uint8_t flags = 0;
  uint8_t interval[2];
  Expect e;
  if (!c.byte(flags) || !c.byte(e.vrid) || !c.byte(e.auth_type) || !c.take(e.auth) || !c.take(interval)) return 0;
  const bool v6 = (flags & 2) != 0;
  e.version = (flags & 1) ? 3 : 2;
  e.interval_cs = static_cast<uint16_t>((interval[0] << 8) | interval[1]);
  if (!c.addrs(v6, e.addrs) || !c.addrs(v6, e.own) || !c.addrs(v6, e.peers)) return 0;
  if (!v6) {
    check_result(check_packet(c.in, e), e, false);
    return 0;
  }
  IpAddr src, dst;
  uint8_t hop_limit = 0;
  if (!c.addr(true, src) || !c.addr(true, dst) || !c.byte(hop_limit)) return 0;
  check_result(check_advert(c.in, src, dst, hop_limit, e), e, true);
  return 0;
}
