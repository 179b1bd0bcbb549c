#include "vrrp/vrrp_module.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/format.h>

#include "core/events.hpp"
#include "vrrp/garp.hpp"
#include "vrrp/netlink.hpp"
#include "vrrp/process.hpp"

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

// A notify hook that hangs is killed after this long (the next one waits for it).
constexpr milliseconds kNotifyTimeout{30'000};
// At shutdown, notify_stop and the last hooks get this long to finish.
constexpr milliseconds kStopGrace{2'000};

// A command given with a path must exist and be executable at start; a bare name is looked
// up in PATH when it runs.
void check_command(const std::vector<std::string>& argv, std::string_view path) {
  if (argv.empty() || argv[0].find('/') == std::string::npos) return;
  if (::access(argv[0].c_str(), X_OK) < 0)
    throw std::runtime_error(fmt::format("{}: cannot execute {}: {}", path, argv[0], std::strerror(errno)));
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

std::string one_line(std::string s) {
  for (auto& c : s)
    if (c == '\n' || c == '\r' || c == '"') c = c == '"' ? '\'' : ' ';
  if (s.size() > 300) s = s.substr(0, 300) + "...";
  return s;
}

}  // namespace

// One /vrrp/track_scripts entry: runs the command every interval (never two at once),
// counts results with ScriptTracker, and tells the instances when the status changes.
class ScriptRunner {
 public:
  ScriptRunner(VrrpModule& m, const ScriptConfig& cfg)
      : m_(m), cfg_(cfg), log_(m.ctx_.log.child("track_script").child(cfg.name)), tracker_(cfg), timer_(m.ctx_.io) {}
  ~ScriptRunner() { stop(); }

  const ScriptConfig& config() const { return cfg_; }
  const ScriptTracker& tracker() const { return tracker_; }

  void start() {
    tracker_.start(steady_clock::now());
    log_.info("running every {} ms timeout_ms={} fall={} rise={} weight={}{} command=\"{}\"", cfg_.interval.count(),
              cfg_.timeout.count(), cfg_.fall, cfg_.rise, cfg_.weight, cfg_.reverse ? " reverse" : "",
              fmt::join(cfg_.argv, " "));
    arm();
  }

  void stop() {
    stopped_ = true;
    timer_.cancel();
    if (proc_) proc_->cancel();
    proc_.reset();
  }

  void dump(nlohmann::json& j) const {
    j = {{"up", tracker_.up()},          {"known", tracker_.known()},     {"running", tracker_.running()},
         {"runs", tracker_.runs()},      {"failed_runs", tracker_.failed_runs()}, {"timeouts", tracker_.timeouts()},
         {"last_result", last_}};
  }

 private:
  void arm() {
    if (stopped_) return;
    timer_.expires_at(tracker_.deadline());
    timer_.async_wait([this](const asio::error_code& ec) {
      if (ec || stopped_) return;
      if (tracker_.due(steady_clock::now())) run();
      else arm();
    });
  }

  void run() {
    tracker_.started(steady_clock::now());
    proc_ = Process::start(m_.ctx_.io, cfg_.argv, cfg_.timeout, [this](const ProcessResult& r) { on_result(r); });
  }

  void on_result(const ProcessResult& r) {
    proc_.reset();
    auto o = r.timed_out ? ScriptTracker::Outcome::Timeout
                         : r.success() ? ScriptTracker::Outcome::Success : ScriptTracker::Outcome::Failure;
    last_ = r.describe();
    bool changed = tracker_.finished(steady_clock::now(), o);
    if (!r.success())
      log_.debug("run failed: {} duration_ms={} output=\"{}\"", last_, r.duration.count(), one_line(r.output));
    if (changed) {
      if (tracker_.up())
        log_.info("status up: {} (rise {})", last_, cfg_.rise);
      else
        log_.warn("status down: {} (fall {}) output=\"{}\"", last_, cfg_.fall, one_line(r.output));
      m_.on_script(cfg_.name, tracker_.up(), last_);
    }
    arm();
  }

  VrrpModule& m_;
  const ScriptConfig& cfg_;
  core::Logger log_;
  ScriptTracker tracker_;
  asio::steady_timer timer_;
  std::shared_ptr<Process> proc_;
  std::string last_;
  bool stopped_ = false;
};

// One instance on its interface: the I/O half of the state machine. Loop thread only.
class Runner final : public InstanceIo {
 public:
  Runner(VrrpModule& m, const InstanceConfig& cfg, std::string path)
      : m_(m), cfg_(cfg), path_(std::move(path)), log_(m.ctx_.log.child(cfg.name)), rx_(m.ctx_.io),
        timer_(m.ctx_.io), garp_timer_(m.ctx_.io) {}

  ~Runner() override {
    if (notify_proc_) notify_proc_->cancel();
    if (tx_ >= 0) ::close(tx_);
  }

  void open() {
    ifindex_ = static_cast<int>(::if_nametoindex(cfg_.interface.c_str()));
    if (ifindex_ == 0)
      throw std::runtime_error(fmt::format("{}/interface: no interface named \"{}\"", path_, cfg_.interface));
    v6_ = cfg_.ipv6();
    auto addrs = m_.nl_->list(ifindex_, v6_);
    auto is_vip = [&](const IpAddr& a) {
      for (const auto& v : cfg_.vips)
        if (v.addr == a) return true;
      return false;
    };
    IpAddr src = cfg_.source;
    if (src.unset()) {
      // IPv6 adverts come from the interface's link-local address (RFC 5798 §5.1.2.1) --
      // except to unicast peers named by global addresses: they accept adverts only from
      // the addresses they list, which are then global ones too.
      const bool link_local = !v6_ || cfg_.unicast_peers.empty() || cfg_.unicast_peers.front().link_local();
      for (const auto& a : addrs)
        if (!is_vip(a.addr) && (!v6_ || a.addr.link_local() == link_local)) {
          src = a.addr;
          break;
        }
      if (src.unset())
        throw std::runtime_error(fmt::format("{}/interface: {} has no {} address to send adverts from (set /source)", path_,
                                             cfg_.interface, !v6_ ? "IPv4" : link_local ? "link-local IPv6" : "global IPv6"));
    }
    // RFC 5798 §5.2.9 wants the link-local VIP first in an IPv6 advert; keepalived sends the
    // list as configured and warns, and so do we (peers compare the lists as sets).
    if (v6_ && !cfg_.vips.front().addr.link_local())
      log_.warn("the first IPv6 vip {} is not link-local (RFC 5798 §5.2.9 wants one first); sent as configured",
                to_string(cfg_.vips.front().addr));
    // A VIP still on the interface was left by a run that could not clean up (SIGKILL).
    // Backups must not hold it: remove it now. The address owner (255) adopts it instead.
    if (cfg_.priority != 255) {
      for (const auto& a : addrs) {
        if (!is_vip(a.addr)) continue;
        std::string err;
        m_.nl_->remove(ifindex_, a, err);
        log_.warn("removed leftover vip={} from interface={} (a previous run did not release it)", to_string(a.addr),
                  cfg_.interface);
      }
    }
    inst_ = std::make_unique<Instance>(cfg_, *this, src);
    expect_ = inst_->expect();
    src_ = src;
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

  void start(const core::EventBus& bus) {
    for (const auto& t : cfg_.track) {
      if (t.kind == Track::Kind::Script) {
        const auto* sr = m_.script_runner(t.name);
        inst_->on_script(steady_clock::now(), t.name, sr->tracker().up(), sr->tracker().known() ? "init_fail" : "");
        continue;
      }
      const auto* h = bus.last_health(t.name);
      // A tracked module that never announced itself is not running here: fail safe.
      if (!h)
        inst_->on_track(steady_clock::now(), t.name, false, "not running in this process");
      else
        inst_->on_track(steady_clock::now(), t.name, h->state != core::Health::State::Down, h->detail);
    }
    log_.info("starting vrid={} version={} interface={} source={} priority={} advert_int_cs={} mode={}", cfg_.vrid,
              cfg_.version, cfg_.interface, to_string(src_), cfg_.priority, cfg_.interval_cs,
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

  void on_script(std::string_view script, bool up, std::string_view detail) {
    if (stopped_) return;
    inst_->on_script(steady_clock::now(), script, up, detail);
    rearm();
  }

  bool notifying() const { return notify_proc_ != nullptr || !notify_queue_.empty(); }
  void cancel_notify() {
    notify_queue_.clear();
    if (notify_proc_) notify_proc_->cancel();
    notify_proc_.reset();
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
    auto send_to = [&](const IpAddr& dst) {
      auto pkt = encode(a, src_, dst);
      sockaddr_storage to{};
      const socklen_t len = to_sockaddr(dst, ifindex_, to);
      if (::sendto(tx_, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&to), len) < 0) {
        ++inst_->stats().send_errors;
        log_.warn("advert send failed dst={} error=\"{}\"", to_string(dst), std::strerror(errno));
      }
    };
    if (cfg_.unicast_peers.empty())
      send_to(v6_ ? kGroup6 : kGroup4);
    else
      for (const auto& p : cfg_.unicast_peers) send_to(p);
  }

  void take_vips() override {
    for (const auto& v : cfg_.vips) {
      std::string err;
      auto r = m_.nl_->add(ifindex_, v, cfg_.vip_label, err);
      if (r == Netlink::Outcome::Error) {
        ++inst_->stats().vip_errors;
        log_.error("cannot add vip={}/{} interface={} error=\"{}\"", to_string(v.addr), v.prefix, cfg_.interface, err);
      } else if (r == Netlink::Outcome::AlreadyThere) {
        log_.info("vip={} already on interface={}: adopted", to_string(v.addr), cfg_.interface);
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
        log_.error("cannot remove vip={}/{} interface={} error=\"{}\"", to_string(v.addr), v.prefix, cfg_.interface, err);
      }
    }
  }

  void on_transition(State from, State to, std::string_view reason) override {
    log_.info("transition from={} to={} priority={} reason=\"{}\"", state_name(from), state_name(to),
              inst_ ? inst_->priority() : cfg_.priority, reason);
    asio::post(m_.ctx_.io, [&m = m_] { m.publish_health(); });
    queue_notify(to);
  }

 private:
  void send_garps() {
    if (garps_left_ <= 0 || stopped_) return;
    --garps_left_;
    for (const auto& v : cfg_.vips) {
      std::string err;
      if (!announcer_->send(v.addr, err))
        log_.warn("{} failed vip={} error=\"{}\"", v6_ ? "neighbor advertisement" : "gratuitous ARP", to_string(v.addr), err);
    }
    if (garps_left_ <= 0) return;
    garp_timer_.expires_after(cfg_.garp_interval);
    garp_timer_.async_wait([this](const asio::error_code& ec) {
      if (!ec) send_garps();
    });
  }

  // keepalived: notify_<state> first, then notify with INSTANCE <name> <STATE> <priority>.
  // Run one at a time per instance, in transition order, never blocking the loop.
  void queue_notify(State to) {
    const char* word = "STOP";
    const std::vector<std::string>* hook = &cfg_.notify_stop;
    switch (to) {
      case State::Master:
        word = "MASTER", hook = &cfg_.notify_master;
        break;
      case State::Backup:
        word = "BACKUP", hook = &cfg_.notify_backup;
        break;
      case State::Fault:
        word = "FAULT", hook = &cfg_.notify_fault;
        break;
      case State::Init:
        break;
    }
    if (!hook->empty()) notify_queue_.push_back({fmt::format("notify_{}", to == State::Init ? "stop" : state_name(to)), *hook});
    if (!cfg_.notify.empty()) {
      auto argv = cfg_.notify;
      argv.insert(argv.end(), {"INSTANCE", cfg_.name, word, std::to_string(inst_ ? inst_->priority() : cfg_.priority)});
      notify_queue_.push_back({"notify", std::move(argv)});
    }
    if (!notify_proc_) next_notify();
  }

  void next_notify() {
    if (notify_queue_.empty()) return;
    auto [what, argv] = std::move(notify_queue_.front());
    notify_queue_.pop_front();
    notify_proc_ = Process::start(m_.ctx_.io, argv, kNotifyTimeout, [this, what = what, argv = argv](const ProcessResult& r) {
      notify_proc_.reset();
      if (r.success())
        log_.info("{} ran: {} duration_ms={} command=\"{}\" output=\"{}\"", what, r.describe(), r.duration.count(),
                  fmt::join(argv, " "), one_line(r.output));
      else
        log_.warn("{} failed: {} duration_ms={} command=\"{}\" output=\"{}\"", what, r.describe(), r.duration.count(),
                  fmt::join(argv, " "), one_line(r.output));
      next_notify();
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
      while (receive_one()) {
      }
      rearm();
      read_loop();
    });
  }

  void bind_to_device(int fd) {
    must(::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, cfg_.interface.c_str(), static_cast<socklen_t>(cfg_.interface.size())),
         "SO_BINDTODEVICE");
  }

  // Reads and handles one datagram; false when none is waiting.
  bool receive_one() {
    uint8_t buf[1500];
    if (!v6_) {
      ssize_t n = ::recv(rx_.native_handle(), buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) return false;
      on_checked(check_packet(std::span<const uint8_t>(buf, static_cast<std::size_t>(n)), expect_));
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
    on_checked(check_advert(std::span<const uint8_t>(buf, static_cast<std::size_t>(n)), src, dst, hops, expect_));
    return true;
  }

  void on_checked(const CheckResult& r) {
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
    log_.warn("dropped advert src={} reason={}", to_string(r.src), drop_name(r.reason));
  }

  VrrpModule& m_;
  const InstanceConfig& cfg_;
  std::string path_;
  core::Logger log_;
  std::unique_ptr<Instance> inst_;
  Expect expect_;
  int ifindex_ = 0;
  bool v6_ = false;
  IpAddr src_;
  asio::posix::stream_descriptor rx_;
  int tx_ = -1;
  std::unique_ptr<Announcer> announcer_;
  asio::steady_timer timer_;
  asio::steady_timer garp_timer_;
  Time armed_ = Time::max();
  uint64_t gen_ = 0;
  int garps_left_ = 0;
  bool stopped_ = false;
  Time last_drop_log_{};
  std::deque<std::pair<std::string, std::vector<std::string>>> notify_queue_;
  std::shared_ptr<Process> notify_proc_;
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
  // Only scripts some instance tracks are run (as keepalived does).
  for (const auto& sc : cfg_.track_scripts) {
    bool used = false;
    for (const auto& inst : cfg_.instances)
      for (const auto& t : inst.track) used |= t.kind == Track::Kind::Script && t.name == sc.name;
    if (!used) {
      ctx_.log.warn("track script {} is not tracked by any instance: not run", sc.name);
      continue;
    }
    check_command(sc.argv, fmt::format("/vrrp/track_scripts/{}/script", sc.name));
    scripts_.push_back(std::make_unique<ScriptRunner>(*this, sc));
  }
  for (std::size_t i = 0; i < cfg_.instances.size(); ++i) {
    const auto& inst = cfg_.instances[i];
    for (auto [key, argv] : {std::pair{"notify_master", &inst.notify_master}, std::pair{"notify_backup", &inst.notify_backup},
                             std::pair{"notify_fault", &inst.notify_fault}, std::pair{"notify_stop", &inst.notify_stop},
                             std::pair{"notify", &inst.notify}})
      check_command(*argv, fmt::format("/vrrp/instances/{}/{}", i, key));
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
  for (auto& s : scripts_) s->start();
  for (auto& r : runners_) r->start(ctx_.events);
  started_ = true;
  publish_health();
}

asio::awaitable<void> VrrpModule::stop() {
  stopping_ = true;
  if (subscription_) ctx_.events.unsubscribe(subscription_);
  subscription_ = 0;
  for (auto& s : scripts_) s->stop();
  for (auto& r : runners_) r->shutdown();
  // notify_stop (and hooks still queued) get a bounded time to finish and be logged.
  asio::steady_timer t(ctx_.io);
  asio::error_code ec;
  auto until = steady_clock::now() + kStopGrace;
  auto busy = [&] {
    for (auto& r : runners_)
      if (r->notifying()) return true;
    return false;
  };
  while (busy() && steady_clock::now() < until) {
    t.expires_after(10ms);
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  for (auto& r : runners_) r->cancel_notify();
}

const ScriptRunner* VrrpModule::script_runner(std::string_view name) const {
  for (const auto& s : scripts_)
    if (s->config().name == name) return s.get();
  return nullptr;
}

void VrrpModule::on_script(std::string_view name, bool up, std::string_view detail) {
  if (stopping_) return;
  for (auto& r : runners_) r->on_script(name, up, detail);
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

void VrrpModule::metrics(core::MetricsWriter& out) const {
  std::vector<const Instance*> instances;
  for (const auto& r : runners_) instances.push_back(&r->instance());
  write_metrics(out, instances);
  if (scripts_.empty()) return;
  using Type = core::MetricsWriter::Type;
  out.family("mqnode_vrrp_track_script_up", Type::Gauge, "1 while the track script counts as succeeding (after fall/rise).");
  for (const auto& sc : scripts_) out.sample({{"script", sc->config().name}}, sc->tracker().up() ? 1 : 0);
  out.family("mqnode_vrrp_track_script_runs_total", Type::Counter, "Track script runs.");
  for (const auto& sc : scripts_) out.sample({{"script", sc->config().name}}, static_cast<double>(sc->tracker().runs()));
  out.family("mqnode_vrrp_track_script_failed_runs_total", Type::Counter, "Track script runs that failed or timed out.");
  for (const auto& sc : scripts_)
    out.sample({{"script", sc->config().name}}, static_cast<double>(sc->tracker().failed_runs()));
}

void VrrpModule::dump(nlohmann::json& out) const {
  auto& arr = out["instances"];
  arr = nlohmann::json::array();
  for (const auto& r : runners_) {
    nlohmann::json j;
    r->instance().dump(j);
    arr.push_back(std::move(j));
  }
  auto& ts = out["track_scripts"];
  ts = nlohmann::json::object();
  for (const auto& s : scripts_) s->dump(ts[s->config().name]);
}

}  // namespace mqnode::vrrp
