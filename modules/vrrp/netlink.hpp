// VIP addresses on an interface through rtnetlink (libmnl): add, remove, list. Requests are
// answered by the kernel synchronously and at once (no I/O wait), so they run on the loop.
#pragma once

#include <string>
#include <vector>

#include "vrrp/instance.hpp"

struct mnl_socket;

namespace mqnode::vrrp {

class Netlink {
 public:
  Netlink();  // throws std::runtime_error when the socket cannot be opened
  ~Netlink();
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;

  enum class Outcome { Done, AlreadyThere, Error };
  // RTM_NEWADDR with NLM_F_EXCL: AlreadyThere when the address exists (adopted, never
  // duplicated). IPv6 addresses skip duplicate address detection (IFA_F_NODAD, as keepalived):
  // the VIP moves deliberately, and a tentative address could not answer for a second or
  // more. <err> gets strerror on Error.
  Outcome add(int ifindex, const Vip& vip, const std::string& label, std::string& err);
  // RTM_DELADDR: AlreadyThere when the address was not there.
  Outcome remove(int ifindex, const Vip& vip, std::string& err);
  // The IPv4 (or IPv6, <v6>) addresses on <ifindex> with their prefix length, in the
  // kernel's order.
  std::vector<Vip> list(int ifindex, bool v6);

 private:
  int request(void* nlh, std::string& err);
  mnl_socket* nl_ = nullptr;
  unsigned port_ = 0;
  unsigned seq_ = 0;
};

}  // namespace mqnode::vrrp
