// One VRRP instance on its interface: the I/O half of the Instance state machine. It owns
// the source address choice, the advert / master-down timer, the gratuitous ARP repeats and
// the notify hooks; it reaches the network only through a Link and time only through a
// Clock, so unit tests drive it over fakes of both.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>

#include "core/module.hpp"
#include "core/log.hpp"
#include "vrrp/clock.hpp"
#include "vrrp/instance.hpp"
#include "vrrp/netlink.hpp"
#include "vrrp/process.hpp"

namespace mqnode::vrrp {

// The network side of one instance: its VRRP sockets, the addresses of its interface
// (netlink) and the takeover announcements. RawLink (raw_link.hpp) is the real one.
class Link {
 public:
  virtual ~Link() = default;
  // The interface's addresses of the instance's family, in the kernel's order.
  virtual std::vector<Vip> addresses() = 0;
  // Opens the sockets, sending from <source>. Throws std::runtime_error.
  virtual void open(const IpAddr& source) = 0;
  // From now until close(), every advert received is checked against <expect> (RFC 5798
  // §7.1) and handed to <on_advert>, valid or not.
  virtual void receive(Expect expect, std::function<void(const CheckResult&)> on_advert) = 0;
  virtual void close() = 0;
  // Sends the VRRP payload <pkt> to <dst>; false and <err> when the socket refuses it.
  virtual bool send(std::span<const uint8_t> pkt, const IpAddr& dst, std::string& err) = 0;
  virtual Netlink::Outcome add(const Vip& vip, const std::string& label, std::string& err) = 0;
  virtual Netlink::Outcome remove(const Vip& vip, std::string& err) = 0;
  // One gratuitous ARP (IPv4) or unsolicited neighbor advertisement (IPv6) for <vip>.
  virtual bool announce(const IpAddr& vip, std::string& err) = 0;
};

class InstanceRunner final : public InstanceIo {
 public:
  // <cfg> must outlive the runner; <path> (/vrrp/instances/<i>) prefixes config errors;
  // <on_transition> runs on every state change (the module republishes its health).
  InstanceRunner(asio::io_context& io, const InstanceConfig& cfg, std::string path, core::Logger log,
                 std::unique_ptr<Link> link, Clock& clock, std::function<void()> on_transition);
  ~InstanceRunner() override;
  InstanceRunner(const InstanceRunner&) = delete;
  InstanceRunner& operator=(const InstanceRunner&) = delete;

  // Picks the source address, removes VIPs a killed run left behind, opens the link.
  // Throws std::runtime_error naming the config path.
  void open();
  // Tracked status before start() (initial values) or at any time after.
  void on_health(std::string_view module, const core::Health& h);
  void on_script(std::string_view script, bool up, std::string_view detail);
  // Starts the state machine (RFC 5798 §6.4.1) and the receiving. After open().
  void start();
  // Leaves Master with a priority-0 advert, stops timers and receiving. Idempotent.
  void shutdown();

  // Notify hooks still running or queued; cancel_notify() kills and drops them.
  bool notifying() const { return notify_proc_ != nullptr || !notify_queue_.empty(); }
  void cancel_notify();

  const Instance& instance() const { return *inst_; }

  // InstanceIo
  void send_advert(const Advert& a) override;
  void take_vips() override;
  void release_vips() override;
  void on_transition(State from, State to, std::string_view reason) override;

 private:
  void send_garps();
  void queue_notify(State to);
  void next_notify();
  void rearm();
  void on_checked(const CheckResult& r);

  asio::io_context& io_;
  const InstanceConfig& cfg_;
  std::string path_;
  core::Logger log_;
  std::unique_ptr<Link> link_;
  Clock& clock_;
  std::function<void()> on_transition_;
  std::unique_ptr<Instance> inst_;
  bool v6_ = false;
  IpAddr src_;
  std::unique_ptr<Timer> timer_;
  std::unique_ptr<Timer> garp_timer_;
  Time armed_ = Time::max();
  int garps_left_ = 0;
  bool stopped_ = false;
  Time last_drop_log_{};
  std::deque<std::pair<std::string, std::vector<std::string>>> notify_queue_;
  std::shared_ptr<Process> notify_proc_;
};

}  // namespace mqnode::vrrp
