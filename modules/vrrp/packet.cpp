#include "vrrp/packet.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace mqnode::vrrp {

namespace {

uint16_t get16(std::span<const uint8_t> p, std::size_t at) {
  return static_cast<uint16_t>((p[at] << 8) | p[at + 1]);
}
uint32_t get32(std::span<const uint8_t> p, std::size_t at) {
  return (uint32_t{p[at]} << 24) | (uint32_t{p[at + 1]} << 16) | (uint32_t{p[at + 2]} << 8) | p[at + 3];
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 24));
  out.push_back(static_cast<uint8_t>(v >> 16));
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

// RFC 5798 §5.2.8: the v3 checksum includes the IPv4 pseudo-header (RFC 768 style).
uint32_t pseudo_header_sum(Ip4 src, Ip4 dst, std::size_t len) {
  std::vector<uint8_t> ph;
  put32(ph, src);
  put32(ph, dst);
  ph.push_back(0);
  ph.push_back(kIpProtoVrrp);
  ph.push_back(static_cast<uint8_t>(len >> 8));
  ph.push_back(static_cast<uint8_t>(len));
  return checksum_add(0, ph);
}

CheckResult fail(CheckResult r, Drop d) {
  switch (d) {
    case Drop::truncated:
    case Drop::bad_ip_header:
    case Drop::bad_version:
    case Drop::bad_type:
    case Drop::bad_checksum:
    case Drop::bad_length:
      r.kind = CheckResult::Kind::Invalid;
      break;
    case Drop::other_vrid:
      r.kind = CheckResult::Kind::OtherVrid;
      break;
    default:
      r.kind = CheckResult::Kind::Drop;
  }
  r.reason = d;
  return r;
}

bool same_set(std::vector<Ip4> a, std::vector<Ip4> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

}  // namespace

std::string ip4_to_string(Ip4 a) {
  return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

bool parse_ip4(std::string_view s, Ip4& out) {
  Ip4 v = 0;
  int parts = 0;
  std::size_t i = 0;
  while (parts < 4) {
    if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
    unsigned octet = 0;
    std::size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      octet = octet * 10 + static_cast<unsigned>(s[i] - '0');
      if (++digits > 3 || octet > 255) return false;
      ++i;
    }
    v = (v << 8) | octet;
    if (++parts < 4) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
  }
  if (i != s.size()) return false;
  out = v;
  return true;
}

uint32_t checksum_add(uint32_t sum, std::span<const uint8_t> data) {
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) sum += static_cast<uint32_t>((data[i] << 8) | data[i + 1]);
  if (i < data.size()) sum += static_cast<uint32_t>(data[i] << 8);
  return sum;
}

uint16_t checksum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

std::string_view drop_name(Drop d) {
  switch (d) {
    case Drop::None:
      return "none";
#define MQ_VRRP_DROP_NAME(n) \
  case Drop::n:              \
    return #n;
      MQ_VRRP_DROPS(MQ_VRRP_DROP_NAME)
#undef MQ_VRRP_DROP_NAME
  }
  return "?";
}

std::vector<uint8_t> encode(const Advert& a, Ip4 src, Ip4 dst) {
  std::vector<uint8_t> out;
  out.reserve(8 + 4 * a.addrs.size() + kAuthLen);
  out.push_back(static_cast<uint8_t>((a.version << 4) | 1));  // type 1 = ADVERTISEMENT
  out.push_back(a.vrid);
  out.push_back(a.priority);
  out.push_back(static_cast<uint8_t>(a.addrs.size()));
  if (a.version == 2) {
    out.push_back(a.auth_type);
    out.push_back(static_cast<uint8_t>(a.interval_cs / 100));
  } else {
    out.push_back(static_cast<uint8_t>((a.interval_cs >> 8) & 0x0f));  // 4 reserved bits = 0
    out.push_back(static_cast<uint8_t>(a.interval_cs));
  }
  out.push_back(0);
  out.push_back(0);
  for (Ip4 ip : a.addrs) put32(out, ip);
  // RFC 3768 §5.3.10: v2 always carries 8 bytes of authentication data (zero without auth).
  if (a.version == 2) out.insert(out.end(), a.auth.begin(), a.auth.end());
  uint32_t sum = a.version == 3 ? pseudo_header_sum(src, dst, out.size()) : 0;
  uint16_t c = checksum_fold(checksum_add(sum, out));
  out[6] = static_cast<uint8_t>(c >> 8);
  out[7] = static_cast<uint8_t>(c);
  return out;
}

CheckResult check_packet(std::span<const uint8_t> ip, const Expect& e) {
  CheckResult r;
  if (ip.size() < 20) return fail(r, Drop::truncated);
  const std::size_t ihl = std::size_t{ip[0] & 0x0fu} * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != kIpProtoVrrp) return fail(r, Drop::bad_ip_header);
  const std::size_t total = get16(ip, 2);
  if (total < ihl || total > ip.size()) return fail(r, Drop::truncated);
  r.src = get32(ip, 12);
  r.dst = get32(ip, 16);
  const auto v = ip.subspan(ihl, total - ihl);
  if (v.size() < 8) return fail(r, Drop::truncated);

  // RFC 5798 §7.1 order: TTL, version, length, checksum, VRID, then the instance's rules.
  if (ip[8] != kTtl) return fail(r, Drop::bad_ttl);
  const uint8_t version = v[0] >> 4;
  if (version != e.version) return fail(r, Drop::bad_version);
  if ((v[0] & 0x0f) != 1) return fail(r, Drop::bad_type);
  const std::size_t count = v[3];
  const std::size_t want = 8 + 4 * count + (version == 2 ? kAuthLen : 0);
  if (v.size() < want) return fail(r, Drop::bad_length);
  // The checksum covers the whole VRRP message as the IP length delimits it (RFC 3768
  // §5.3.8, RFC 5798 §5.2.8); bytes after the announced fields are tolerated.
  const auto body = v.first(want);
  uint32_t sum = version == 3 ? pseudo_header_sum(r.src, r.dst, v.size()) : 0;
  if (checksum_fold(checksum_add(sum, v)) != 0) return fail(r, Drop::bad_checksum);

  Advert& a = r.advert;
  a.version = version;
  a.vrid = v[1];
  a.priority = v[2];
  if (version == 2) {
    a.auth_type = v[4];
    a.interval_cs = static_cast<uint16_t>(v[5] * 100);
    std::copy_n(body.begin() + static_cast<std::ptrdiff_t>(8 + 4 * count), kAuthLen, a.auth.begin());
  } else {
    a.interval_cs = static_cast<uint16_t>(get16(v, 4) & 0x0fff);
  }
  for (std::size_t i = 0; i < count; ++i) a.addrs.push_back(get32(v, 8 + 4 * i));

  if (a.vrid != e.vrid) return fail(r, Drop::other_vrid);
  if (std::find(e.own.begin(), e.own.end(), r.src) != e.own.end()) return fail(r, Drop::own_packet);
  if (!e.peers.empty() && std::find(e.peers.begin(), e.peers.end(), r.src) == e.peers.end())
    return fail(r, Drop::unknown_peer);
  if (version == 2) {
    // RFC 3768 §7.1: auth type must match; type 1 compares the 8 bytes of the password.
    if (a.auth_type != e.auth_type) return fail(r, Drop::bad_auth_type);
    if (a.auth_type == 1 && a.auth != e.auth) return fail(r, Drop::bad_auth);
    // RFC 3768 §7.1: the advertisement interval MUST match the local one. (v3 backups
    // learn the master's interval instead, RFC 5798 §6.4.2.)
    if (a.interval_cs != e.interval_cs) return fail(r, Drop::bad_interval);
  } else if (a.interval_cs == 0) {
    return fail(r, Drop::bad_interval);
  }
  // RFC 3768 §7.1 / RFC 5798 §7.1: a mismatched address list is dropped unless the sender
  // is the address owner (priority 255).
  if (a.priority != 255 && !same_set(a.addrs, e.addrs)) return fail(r, Drop::bad_addr_list);
  r.kind = CheckResult::Kind::Ok;
  return r;
}

}  // namespace mqnode::vrrp
