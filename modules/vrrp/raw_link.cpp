#include "vrrp/raw_link.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace mqnode::vrrp {

namespace {

int must(int r, std::string_view what) {
  if (r < 0) throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
  return r;
}

// <a> as a sockaddr for bind()/sendto(). Link-scoped IPv6 addresses (fe80::/10, ff02::/16)
// need their interface <ifindex> as scope; the kernel ignores it for the others. Returns the
// length to pass.
socklen_t to_sockaddr(const IpAddr& a, int ifindex, sockaddr_storage& out) {
  if (a.v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&out);
    s6->sin6_family = AF_INET6;
    std::memcpy(&s6->sin6_addr, a.bytes.data(), 16);
    s6->sin6_scope_id = static_cast<uint32_t>(ifindex);
    return sizeof(sockaddr_in6);
  }
  auto* s4 = reinterpret_cast<sockaddr_in*>(&out);
  s4->sin_family = AF_INET;
  std::memcpy(&s4->sin_addr, a.bytes.data(), 4);
  return sizeof(sockaddr_in);
}

}  // namespace

RawLink::RawLink(asio::io_context& io, Netlink& nl, const InstanceConfig& cfg, std::string_view path)
    : nl_(nl), cfg_(cfg), path_(path), v6_(cfg.ipv6()), rx_(io) {
  ifindex_ = static_cast<int>(::if_nametoindex(cfg_.interface.c_str()));
  if (ifindex_ == 0)
    throw std::runtime_error(fmt::format("{}/interface: no interface named \"{}\"", path_, cfg_.interface));
}

RawLink::~RawLink() {
  if (tx_ >= 0) ::close(tx_);
}

std::vector<Vip> RawLink::addresses() {
  return nl_.list(ifindex_, v6_);
}

void RawLink::open(const IpAddr& src) {
  const int family = v6_ ? AF_INET6 : AF_INET;
  const int level = v6_ ? IPPROTO_IPV6 : IPPROTO_IP;
  int one = 1, zero = 0, ttl = kTtl;

  // Receive socket: every protocol-112 datagram on the interface (not bound to an address:
  // a bound raw socket only sees packets addressed to it, which excludes the group).
  int rx = must(::socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, kIpProtoVrrp), "raw socket (protocol 112)");
  rx_.assign(rx);
  bind_to_device(rx);
  if (v6_) {
    // An IPv6 raw socket delivers no header: the hop limit and destination (the checksum
    // covers it) come as ancillary data.
    must(::setsockopt(rx, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &one, sizeof one), "IPV6_RECVHOPLIMIT");
    must(::setsockopt(rx, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one), "IPV6_RECVPKTINFO");
  }
  if (cfg_.unicast_peers.empty()) {
    if (v6_) {
      ipv6_mreq mr{};
      std::memcpy(&mr.ipv6mr_multiaddr, kGroup6.bytes.data(), 16);
      mr.ipv6mr_interface = static_cast<unsigned>(ifindex_);
      must(::setsockopt(rx, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mr, sizeof mr), "join ff02::12");
    } else {
      ip_mreqn mr{};
      std::memcpy(&mr.imr_multiaddr, kGroup4.bytes.data(), 4);
      mr.imr_ifindex = ifindex_;
      must(::setsockopt(rx, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr), "join 224.0.0.18");
    }
  }
  // Send socket: bound to the source address so the kernel's IP header carries it (the v3
  // checksum covers it); TTL / hop limit 255 for unicast and multicast (RFC 5798 §5.1.1.3,
  // §5.1.2.3); our own multicast is not looped back.
  tx_ = must(::socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, kIpProtoVrrp), "raw socket (protocol 112)");
  bind_to_device(tx_);
  sockaddr_storage sa{};
  if (::bind(tx_, reinterpret_cast<sockaddr*>(&sa), to_sockaddr(src, ifindex_, sa)) < 0)
    throw std::runtime_error(fmt::format("{}/source: cannot send from {}: {}", path_, to_string(src), std::strerror(errno)));
  must(::setsockopt(tx_, level, v6_ ? IPV6_UNICAST_HOPS : IP_TTL, &ttl, sizeof ttl), "unicast TTL");
  must(::setsockopt(tx_, level, v6_ ? IPV6_MULTICAST_HOPS : IP_MULTICAST_TTL, &ttl, sizeof ttl), "multicast TTL");
  must(::setsockopt(tx_, level, v6_ ? IPV6_MULTICAST_LOOP : IP_MULTICAST_LOOP, &zero, sizeof zero), "multicast loop");
  if (v6_) {
    must(::setsockopt(tx_, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex_, sizeof ifindex_), "IPV6_MULTICAST_IF");
  } else {
    ip_mreqn mi{};
    mi.imr_ifindex = ifindex_;
    must(::setsockopt(tx_, IPPROTO_IP, IP_MULTICAST_IF, &mi, sizeof mi), "IP_MULTICAST_IF");
  }
  announcer_ = std::make_unique<Announcer>(ifindex_, cfg_.interface, v6_);
}

void RawLink::receive(Expect expect, std::function<void(const CheckResult&)> on_advert) {
  expect_ = std::move(expect);
  on_advert_ = std::move(on_advert);
  read_loop();
}

void RawLink::close() {
  asio::error_code ec;
  rx_.close(ec);
}

bool RawLink::send(std::span<const uint8_t> pkt, const IpAddr& dst, std::string& err) {
  sockaddr_storage to{};
  const socklen_t len = to_sockaddr(dst, ifindex_, to);
  if (::sendto(tx_, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&to), len) >= 0) return true;
  err = std::strerror(errno);
  return false;
}

Netlink::Outcome RawLink::add(const Vip& vip, const std::string& label, std::string& err) {
  return nl_.add(ifindex_, vip, label, err);
}

Netlink::Outcome RawLink::remove(const Vip& vip, std::string& err) {
  return nl_.remove(ifindex_, vip, err);
}

bool RawLink::announce(const IpAddr& vip, std::string& err) {
  return announcer_->send(vip, err);
}

void RawLink::bind_to_device(int fd) {
  must(::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, cfg_.interface.c_str(), static_cast<socklen_t>(cfg_.interface.size())),
       "SO_BINDTODEVICE");
}

void RawLink::read_loop() {
  rx_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
    if (ec) return;
    while (receive_one()) {
    }
    read_loop();
  });
}

bool RawLink::receive_one() {
  uint8_t buf[1500];
  if (!v6_) {
    ssize_t n = ::recv(rx_.native_handle(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) return false;
    on_advert_(check_packet(std::span<const uint8_t>(buf, static_cast<std::size_t>(n)), expect_));
    return true;
  }
  sockaddr_in6 from{};
  alignas(cmsghdr) uint8_t control[CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(int))];
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_name = &from;
  msg.msg_namelen = sizeof from;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(rx_.native_handle(), &msg, MSG_DONTWAIT);
  if (n < 0) return false;
  IpAddr src, dst;
  src.v6 = dst.v6 = true;
  std::memcpy(src.bytes.data(), &from.sin6_addr, 16);
  int hops = -1;  // missing ancillary data fails the hop limit check
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != IPPROTO_IPV6) continue;
    if (c->cmsg_type == IPV6_HOPLIMIT) std::memcpy(&hops, CMSG_DATA(c), sizeof hops);
    if (c->cmsg_type == IPV6_PKTINFO) std::memcpy(dst.bytes.data(), CMSG_DATA(c) + offsetof(in6_pktinfo, ipi6_addr), 16);
  }
  on_advert_(check_advert(std::span<const uint8_t>(buf, static_cast<std::size_t>(n)), src, dst, hops, expect_));
  return true;
}

}  // namespace mqnode::vrrp
