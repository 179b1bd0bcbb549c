#include "vrrp/packet.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>

namespace mqnode::vrrp {

namespace {

uint16_t get16(std::span<const uint8_t> p, std::size_t at) {
  return static_cast<uint16_t>((p[at] << 8) | p[at + 1]);
}
IpAddr get_addr(std::span<const uint8_t> p, std::size_t at, bool v6) {
  IpAddr a;
  a.v6 = v6;
  std::copy_n(p.begin() + static_cast<std::ptrdiff_t>(at), a.size(), a.bytes.begin());
  return a;
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

bool same_set(std::vector<IpAddr> a, std::vector<IpAddr> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

}  // namespace

std::string to_string(const IpAddr& a) {
  char buf[INET6_ADDRSTRLEN];
  if (!::inet_ntop(a.v6 ? AF_INET6 : AF_INET, a.bytes.data(), buf, sizeof buf)) return "?";
  return buf;
}

bool parse_ip(std::string_view s, IpAddr& out) {
  if (s.size() >= INET6_ADDRSTRLEN) return false;
  const std::string z(s);  // inet_pton wants a terminated string
  IpAddr a;
  a.v6 = z.find(':') != std::string::npos;
  if (::inet_pton(a.v6 ? AF_INET6 : AF_INET, z.c_str(), a.bytes.data()) != 1) return false;
  out = a;
  return true;
}

uint32_t pseudo_header_sum(const IpAddr& src, const IpAddr& dst, uint8_t proto, std::size_t len) {
  uint32_t sum = checksum_add(checksum_add(0, src.span()), dst.span());
  // IPv4: zero, protocol, 16-bit length. IPv6: 32-bit length, 3 zero bytes, next header;
  // as 16-bit words both come to the same sum.
  return sum + proto + static_cast<uint32_t>(len & 0xffff) + static_cast<uint32_t>(len >> 16);
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

std::vector<uint8_t> encode(const Advert& a, const IpAddr& src, const IpAddr& dst) {
  std::vector<uint8_t> out;
  out.reserve(8 + 16 * a.addrs.size() + kAuthLen);
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
  for (const auto& ip : a.addrs) out.insert(out.end(), ip.span().begin(), ip.span().end());
  // RFC 3768 §5.3.10: v2 always carries 8 bytes of authentication data (zero without auth).
  if (a.version == 2) out.insert(out.end(), a.auth.begin(), a.auth.end());
  uint32_t sum = a.version == 3 ? pseudo_header_sum(src, dst, kIpProtoVrrp, out.size()) : 0;
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
  return check_advert(ip.subspan(ihl, total - ihl), get_addr(ip, 12, false), get_addr(ip, 16, false), ip[8], e);
}

CheckResult check_advert(std::span<const uint8_t> v, const IpAddr& src, const IpAddr& dst, int ttl, const Expect& e) {
  CheckResult r;
  r.src = src;
  r.dst = dst;
  if (v.size() < 8) return fail(r, Drop::truncated);

  // RFC 5798 §7.1 order: TTL, version, length, checksum, VRID, then the instance's rules.
  if (ttl != kTtl) return fail(r, Drop::bad_ttl);
  const uint8_t version = v[0] >> 4;
  if (version != e.version) return fail(r, Drop::bad_version);
  if ((v[0] & 0x0f) != 1) return fail(r, Drop::bad_type);
  const std::size_t count = v[3];
  const std::size_t alen = src.size();
  const std::size_t want = 8 + alen * count + (version == 2 ? kAuthLen : 0);
  if (v.size() < want) return fail(r, Drop::bad_length);
  // The checksum covers the whole VRRP message as the IP length delimits it (RFC 3768
  // §5.3.8, RFC 5798 §5.2.8); bytes after the announced fields are tolerated.
  const auto body = v.first(want);
  uint32_t sum = version == 3 ? pseudo_header_sum(src, dst, kIpProtoVrrp, v.size()) : 0;
  if (checksum_fold(checksum_add(sum, v)) != 0) return fail(r, Drop::bad_checksum);

  Advert& a = r.advert;
  a.version = version;
  a.vrid = v[1];
  a.priority = v[2];
  if (version == 2) {
    a.auth_type = v[4];
    a.interval_cs = static_cast<uint16_t>(v[5] * 100);
    std::copy_n(body.begin() + static_cast<std::ptrdiff_t>(8 + alen * count), kAuthLen, a.auth.begin());
  } else {
    a.interval_cs = static_cast<uint16_t>(get16(v, 4) & 0x0fff);
  }
  for (std::size_t i = 0; i < count; ++i) a.addrs.push_back(get_addr(v, 8 + alen * i, src.v6));

  if (a.vrid != e.vrid) return fail(r, Drop::other_vrid);
  if (std::find(e.own.begin(), e.own.end(), src) != e.own.end()) return fail(r, Drop::own_packet);
  if (!e.peers.empty() && std::find(e.peers.begin(), e.peers.end(), src) == e.peers.end())
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
