#include "vrrp/vrrp_module.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/format.h>

#include "core/events.hpp"
#include "vrrp/garp.hpp"
#include "vrrp/netlink.hpp"

namespace mqnode::vrrp {

using namespace std::chrono;

namespace {

// CapEff from /proc/self/status: bit 12 CAP_NET_ADMIN, bit 13 CAP_NET_RAW.
bool has_capabilities(std::string& missing) {
  std::ifstream in("/proc/self/status");
  std::string line;
  uint64_t eff = 0;
  while (std::getline(in, line))
    if (line.rfind("CapEff:", 0) == 0) eff = std::stoull(line.substr(7), nullptr, 16);
  if (!(eff & (1ull << 13))) missing += "CAP_NET_RAW ";
  if (!(eff & (1ull << 12))) missing += "CAP_NET_ADMIN ";
  return missing.empty();
}

int must(int r, std::string_view what) {
  if (r < 0) throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
  return r;
}

}  // namespace

// One instance on its interface: the I/O half of the state machine. Loop thread only.
class Runner final : public InstanceIo {
 public:
  Runner(VrrpModule& m, const InstanceConfig& cfg, std::string path)
      : m_(m), cfg_(cfg), path_(std::move(path)), log_(m.ctx_.log.child(cfg.name)), rx_(m.ctx_.io),
        timer_(m.ctx_.io), garp_timer_(m.ctx_.io) {}

  ~Runner() override {
    if (tx_ >= 0) ::close(tx_);
  }

  void open() {
    ifindex_ = static_cast<int>(::if_nametoindex(cfg_.interface.c_str()));
    if (ifindex_ == 0)
      throw std::runtime_error(fmt::format("{}/interface: no interface named \"{}\"", path_, cfg_.interface));
    auto addrs = m_.nl_->list(ifindex_);
    auto is_vip = [&](Ip4 a) {
      for (const auto& v : cfg_.vips)
        if (v.addr == a) return true;
      return false;
    };
    Ip4 src = cfg_.source;
    if (!src) {
      for (const auto& a : addrs)
        if (!is_vip(a.addr)) {
          src = a.addr;
          break;
        }
      if (!src)
        throw std::runtime_error(fmt::format("{}/interface: {} has no IPv4 address to send adverts from (set /source)",
                                             path_, cfg_.interface));
    }
    // A VIP still on the interface was left by a run that could not clean up (SIGKILL).
    // Backups must not hold it: remove it now. The address owner (255) adopts it instead.
    if (cfg_.priority != 255) {
      for (const auto& a : addrs) {
        if (!is_vip(a.addr)) continue;
        std::string err;
        for (const auto& v : cfg_.vips)
          if (v.addr == a.addr) m_.nl_->remove(ifindex_, Vip{a.addr, a.prefix}, err);
        log_.warn("removed leftover vip={} from interface={} (a previous run did not release it)",
                  ip4_to_string(a.addr), cfg_.interface);
      }
    }
    inst_ = std::make_unique<Instance>(cfg_, *this, src);
    expect_ = inst_->expect();

    // Receive socket: every protocol-112 datagram on the interface (not bound to an address:
    // a bound raw socket only sees packets addressed to it, which excludes 224.0.0.18).
    int rx = must(::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, kIpProtoVrrp), "raw socket (protocol 112)");
    rx_.assign(rx);
    must(::setsockopt(rx, SOL_SOCKET, SO_BINDTODEVICE, cfg_.interface.c_str(), static_cast<socklen_t>(cfg_.interface.size())),
         "SO_BINDTODEVICE");
    if (cfg_.unicast_peers.empty()) {
      ip_mreqn mr{};
      mr.imr_multiaddr.s_addr = htonl(kMulticastGroup);
      mr.imr_ifindex = ifindex_;
      must(::setsockopt(rx, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr), "join 224.0.0.18");
    }
    // Send socket: bound to the source address so the kernel's IP header carries it (the v3
    // checksum covers it); TTL 255 for unicast and multicast (RFC 5798 §5.1.1.3).
    tx_ = must(::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, kIpProtoVrrp), "raw socket (protocol 112)");
    must(::setsockopt(tx_, SOL_SOCKET, SO_BINDTODEVICE, cfg_.interface.c_str(), static_cast<socklen_t>(cfg_.interface.size())),
         "SO_BINDTODEVICE");
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(src);
    if (::bind(tx_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
      throw std::runtime_error(fmt::format("{}/source: cannot send from {}: {}", path_, ip4_to_string(src), std::strerror(errno)));
    int ttl = kTtl, loop = 0;
    must(::setsockopt(tx_, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl), "IP_TTL");
    must(::setsockopt(tx_, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl), "IP_MULTICAST_TTL");
    must(::setsockopt(tx_, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop), "IP_MULTICAST_LOOP");
    ip_mreqn mi{};
    mi.imr_ifindex = ifindex_;
    must(::setsockopt(tx_, IPPROTO_IP, IP_MULTICAST_IF, &mi, sizeof mi), "IP_MULTICAST_IF");
    garp_ = std::make_unique<GarpSocket>(ifindex_, cfg_.interface);
    src_ = src;
  }

  void start(const core::EventBus& bus) {
    for (const auto& t : cfg_.track) {
      const auto* h = bus.last_health(t.module);
      // A tracked module that never announced itself is not running here: fail safe.
      if (!h)
        inst_->on_track(steady_clock::now(), t.module, false, "not running in this process");
      else
        inst_->on_track(steady_clock::now(), t.module, h->state != core::Health::State::Down, h->detail);
    }
    log_.info("starting vrid={} version={} interface={} source={} priority={} advert_int_cs={} mode={}", cfg_.vrid,
              cfg_.version, cfg_.interface, ip4_to_string(src_), cfg_.priority, cfg_.interval_cs,
              cfg_.unicast_peers.empty() ? "multicast" : "unicast");
    inst_->start(steady_clock::now());
    rearm();
    read_loop();
  }

  void on_health(std::string_view module, const core::Health& h) {
    if (stopped_) return;
    inst_->on_track(steady_clock::now(), module, h.state != core::Health::State::Down, h.detail);
    rearm();
  }

  void shutdown() {
    if (stopped_) return;
    inst_->shutdown(steady_clock::now());
    stopped_ = true;
    timer_.cancel();
    garp_timer_.cancel();
    asio::error_code ec;
    rx_.close(ec);
  }

  const Instance& instance() const { return *inst_; }

  // InstanceIo
  void send_advert(const Advert& a) override {
    auto send_to = [&](Ip4 dst) {
      auto pkt = encode(a, src_, dst);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_addr.s_addr = htonl(dst);
      if (::sendto(tx_, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
        ++inst_->stats().send_errors;
        log_.warn("advert send failed dst={} error=\"{}\"", ip4_to_string(dst), std::strerror(errno));
      }
    };
    if (cfg_.unicast_peers.empty())
      send_to(kMulticastGroup);
    else
      for (Ip4 p : cfg_.unicast_peers) send_to(p);
  }

  void take_vips() override {
    for (const auto& v : cfg_.vips) {
      std::string err;
      auto r = m_.nl_->add(ifindex_, v, cfg_.vip_label, err);
      if (r == Netlink::Outcome::Error) {
        ++inst_->stats().vip_errors;
        log_.error("cannot add vip={}/{} interface={} error=\"{}\"", ip4_to_string(v.addr), v.prefix, cfg_.interface, err);
      } else if (r == Netlink::Outcome::AlreadyThere) {
        log_.info("vip={} already on interface={}: adopted", ip4_to_string(v.addr), cfg_.interface);
      }
    }
    garps_left_ = cfg_.garp_count;
    send_garps();
  }

  void release_vips() override {
    garps_left_ = 0;
    garp_timer_.cancel();
    for (const auto& v : cfg_.vips) {
      std::string err;
      if (m_.nl_->remove(ifindex_, v, err) == Netlink::Outcome::Error) {
        ++inst_->stats().vip_errors;
        log_.error("cannot remove vip={}/{} interface={} error=\"{}\"", ip4_to_string(v.addr), v.prefix, cfg_.interface, err);
      }
    }
  }

  void on_transition(State from, State to, std::string_view reason) override {
    log_.info("transition from={} to={} priority={} reason=\"{}\"", state_name(from), state_name(to),
              inst_ ? inst_->priority() : cfg_.priority, reason);
    asio::post(m_.ctx_.io, [&m = m_] { m.publish_health(); });
  }

 private:
  void send_garps() {
    if (garps_left_ <= 0 || stopped_) return;
    --garps_left_;
    for (const auto& v : cfg_.vips) {
      std::string err;
      if (!garp_->send(v.addr, err)) log_.warn("gratuitous ARP failed vip={} error=\"{}\"", ip4_to_string(v.addr), err);
    }
    if (garps_left_ <= 0) return;
    garp_timer_.expires_after(cfg_.garp_interval);
    garp_timer_.async_wait([this](const asio::error_code& ec) {
      if (!ec) send_garps();
    });
  }

  void rearm() {
    if (stopped_) return;
    Time d = inst_->deadline();
    if (d == armed_) return;
    armed_ = d;
    ++gen_;
    if (d == Time::max()) {
      timer_.cancel();
      return;
    }
    timer_.expires_at(d);
    timer_.async_wait([this, gen = gen_](const asio::error_code& ec) {
      if (ec || gen != gen_ || stopped_) return;
      armed_ = Time::max();
      inst_->on_timer(steady_clock::now());
      rearm();
    });
  }

  void read_loop() {
    rx_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
      if (ec || stopped_) return;
      uint8_t buf[1500];
      for (;;) {
        ssize_t n = ::recv(rx_.native_handle(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) break;
        on_packet(std::span<const uint8_t>(buf, static_cast<std::size_t>(n)));
      }
      rearm();
      read_loop();
    });
  }

  void on_packet(std::span<const uint8_t> pkt) {
    auto r = check_packet(pkt, expect_);
    if (r.kind == CheckResult::Kind::Ok) {
      inst_->on_advert(steady_clock::now(), r.advert, r.src);
      return;
    }
    inst_->stats().count_drop(r.reason);
    if (r.kind == CheckResult::Kind::OtherVrid || r.reason == Drop::own_packet) return;
    // Rate-limited: a misconfigured or hostile peer sends one of these every interval.
    auto now = steady_clock::now();
    if (now - last_drop_log_ < seconds(5)) return;
    last_drop_log_ = now;
    log_.warn("dropped advert src={} reason={}", ip4_to_string(r.src), drop_name(r.reason));
  }

  VrrpModule& m_;
  const InstanceConfig& cfg_;
  std::string path_;
  core::Logger log_;
  std::unique_ptr<Instance> inst_;
  Expect expect_;
  int ifindex_ = 0;
  Ip4 src_ = 0;
  asio::posix::stream_descriptor rx_;
  int tx_ = -1;
  std::unique_ptr<GarpSocket> garp_;
  asio::steady_timer timer_;
  asio::steady_timer garp_timer_;
  Time armed_ = Time::max();
  uint64_t gen_ = 0;
  int garps_left_ = 0;
  bool stopped_ = false;
  Time last_drop_log_{};
};

VrrpModule::VrrpModule(core::ModuleContext ctx) : ctx_(std::move(ctx)) {}
VrrpModule::~VrrpModule() = default;

void VrrpModule::configure(core::ConfigNode slice) {
  cfg_ = parse_vrrp_config(std::move(slice));
}

void VrrpModule::start() {
  if (cfg_.instances.empty()) {
    ctx_.log.warn("no /vrrp/instances configured: the vip role holds no address");
  } else {
    std::string missing;
    if (!has_capabilities(missing))
      throw std::runtime_error(fmt::format(
          "the vip role needs {}(run as root, or grant them, e.g. systemd AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN)",
          missing));
    nl_ = std::make_unique<Netlink>();
  }
  for (std::size_t i = 0; i < cfg_.instances.size(); ++i) {
    auto r = std::make_unique<Runner>(*this, cfg_.instances[i], fmt::format("/vrrp/instances/{}", i));
    r->open();
    runners_.push_back(std::move(r));
  }
  // Tracking is in-process: health changes arrive here in the same turn of the loop as the
  // module's own state change, no polling interval.
  subscription_ = ctx_.events.subscribe_health([this](std::string_view module, const core::Health& h) {
    if (module == name()) return;
    for (auto& r : runners_) r->on_health(module, h);
  });
  for (auto& r : runners_) r->start(ctx_.events);
  started_ = true;
  publish_health();
}

asio::awaitable<void> VrrpModule::stop() {
  stopping_ = true;
  if (subscription_) ctx_.events.unsubscribe(subscription_);
  subscription_ = 0;
  for (auto& r : runners_) r->shutdown();
  co_return;
}

void VrrpModule::publish_health() {
  ctx_.events.publish_health(name(), health());
}

core::Health VrrpModule::health() const {
  if (!started_) return {core::Health::State::Down, "not started"};
  if (stopping_) return {core::Health::State::Down, "stopping"};
  std::string faults;
  for (const auto& r : runners_)
    if (r->instance().state() == State::Fault) faults += (faults.empty() ? "" : ", ") + r->instance().config().name;
  if (!faults.empty()) return {core::Health::State::Degraded, "fault: " + faults};
  return {core::Health::State::Ok, ""};
}

void VrrpModule::dump(nlohmann::json& out) const {
  auto& arr = out["instances"];
  arr = nlohmann::json::array();
  for (const auto& r : runners_) {
    nlohmann::json j;
    r->instance().dump(j);
    arr.push_back(std::move(j));
  }
}

}  // namespace mqnode::vrrp
