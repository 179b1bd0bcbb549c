#include "vrrp/netlink.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace mqnode::vrrp {

Netlink::Netlink() {
  nl_ = mnl_socket_open(NETLINK_ROUTE);
  if (!nl_) throw std::runtime_error(fmt::format("netlink socket: {}", std::strerror(errno)));
  if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
    int e = errno;
    mnl_socket_close(nl_);
    throw std::runtime_error(fmt::format("netlink bind: {}", std::strerror(e)));
  }
  port_ = mnl_socket_get_portid(nl_);
}

Netlink::~Netlink() {
  if (nl_) mnl_socket_close(nl_);
}

// Sends one request with NLM_F_ACK and reads until the ack; returns 0 or -errno.
int Netlink::request(void* buf, std::string& err) {
  auto* nlh = static_cast<nlmsghdr*>(buf);
  nlh->nlmsg_seq = ++seq_;
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) {
    err = std::strerror(errno);
    return -errno;
  }
  std::vector<char> rx(MNL_SOCKET_BUFFER_SIZE);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, rx.data(), rx.size());
    if (n < 0) {
      err = std::strerror(errno);
      return -errno;
    }
    int r = mnl_cb_run(rx.data(), static_cast<size_t>(n), seq_, port_, nullptr, nullptr);
    if (r == MNL_CB_ERROR) {
      err = std::strerror(errno);
      return -errno;
    }
    if (r == MNL_CB_STOP) return 0;
  }
}

namespace {
nlmsghdr* addr_msg(std::vector<char>& buf, uint16_t type, uint16_t flags, int ifindex, const Vip& vip) {
  auto* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = vip.addr.v6 ? AF_INET6 : AF_INET;
  ifa->ifa_prefixlen = vip.prefix;
  ifa->ifa_flags = vip.addr.v6 ? IFA_F_NODAD : 0;  // see Netlink::add
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;  // IPv6 derives the scope from the address itself
  ifa->ifa_index = static_cast<unsigned>(ifindex);
  const auto a = vip.addr.span();
  mnl_attr_put(nlh, IFA_LOCAL, a.size(), a.data());
  mnl_attr_put(nlh, IFA_ADDRESS, a.size(), a.data());
  return nlh;
}
}  // namespace

Netlink::Outcome Netlink::add(int ifindex, const Vip& vip, const std::string& label, std::string& err) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  auto* nlh = addr_msg(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, ifindex, vip);
  if (!label.empty()) mnl_attr_put_strz(nlh, IFA_LABEL, label.c_str());
  int r = request(nlh, err);
  if (r == -EEXIST) return Outcome::AlreadyThere;
  return r == 0 ? Outcome::Done : Outcome::Error;
}

Netlink::Outcome Netlink::remove(int ifindex, const Vip& vip, std::string& err) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  auto* nlh = addr_msg(buf, RTM_DELADDR, 0, ifindex, vip);
  int r = request(nlh, err);
  if (r == -EADDRNOTAVAIL || r == -ENOENT) return Outcome::AlreadyThere;
  return r == 0 ? Outcome::Done : Outcome::Error;
}

namespace {
struct ListCtx {
  int ifindex;
  bool v6;
  std::vector<Vip>* out;
};

int list_cb(const nlmsghdr* nlh, void* data) {
  auto* ctx = static_cast<ListCtx*>(data);
  const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
  if (ifa->ifa_family != (ctx->v6 ? AF_INET6 : AF_INET) || static_cast<int>(ifa->ifa_index) != ctx->ifindex)
    return MNL_CB_OK;
  // IPv4 puts the address in IFA_LOCAL (IFA_ADDRESS is the peer on point-to-point links);
  // IPv6 has IFA_LOCAL only for a peer address and IFA_ADDRESS always.
  const uint16_t want = ctx->v6 ? IFA_ADDRESS : IFA_LOCAL;
  IpAddr a;
  a.v6 = ctx->v6;
  // mnl_attr_for_each() relies on C's implicit void* conversion; spelled out for C++.
  const auto* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  for (auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(*ifa)));
       mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr))); attr = mnl_attr_next(attr)) {
    if (mnl_attr_get_type(attr) == want && mnl_attr_get_payload_len(attr) == a.size()) {
      std::memcpy(a.bytes.data(), mnl_attr_get_payload(attr), a.size());
      ctx->out->push_back(Vip{a, ifa->ifa_prefixlen});
    }
  }
  return MNL_CB_OK;
}
}  // namespace

std::vector<Vip> Netlink::list(int ifindex, bool v6) {
  std::vector<Vip> out;
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  auto* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = RTM_GETADDR;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = ++seq_;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = v6 ? AF_INET6 : AF_INET;
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) return out;
  ListCtx ctx{ifindex, v6, &out};
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
    if (n <= 0) break;
    int r = mnl_cb_run(buf.data(), static_cast<size_t>(n), seq_, port_, list_cb, &ctx);
    if (r <= MNL_CB_STOP) break;
  }
  return out;
}

}  // namespace mqnode::vrrp
