// The real Link of an instance: raw IP sockets of protocol 112 bound to its interface
// (multicast group membership or unicast peers, TTL 255), the interface's addresses through
// rtnetlink, and gratuitous ARP / unsolicited NA from an AF_PACKET socket.
#pragma once

#include <memory>
#include <string_view>

#include <asio/posix/stream_descriptor.hpp>

#include "vrrp/garp.hpp"
#include "vrrp/instance_runner.hpp"

namespace mqnode::vrrp {

class RawLink final : public Link {
 public:
  // Throws std::runtime_error ("<path>/interface: no interface named ...") when the
  // interface of <cfg> does not exist. <nl> and <cfg> must outlive the link.
  RawLink(asio::io_context& io, Netlink& nl, const InstanceConfig& cfg, std::string_view path);
  ~RawLink() override;

  std::vector<Vip> addresses() override;
  void open(const IpAddr& source) override;
  void receive(Expect expect, std::function<void(const CheckResult&)> on_advert) override;
  void close() override;
  bool send(std::span<const uint8_t> pkt, const IpAddr& dst, std::string& err) override;
  Netlink::Outcome add(const Vip& vip, const std::string& label, std::string& err) override;
  Netlink::Outcome remove(const Vip& vip, std::string& err) override;
  bool announce(const IpAddr& vip, std::string& err) override;

 private:
  void bind_to_device(int fd);
  void read_loop();
  // Reads and checks one datagram; false when none is waiting.
  bool receive_one();

  Netlink& nl_;
  const InstanceConfig& cfg_;
  std::string path_;
  int ifindex_ = 0;
  bool v6_ = false;
  asio::posix::stream_descriptor rx_;
  int tx_ = -1;
  std::unique_ptr<Announcer> announcer_;
  Expect expect_;
  std::function<void(const CheckResult&)> on_advert_;
};

}  // namespace mqnode::vrrp
