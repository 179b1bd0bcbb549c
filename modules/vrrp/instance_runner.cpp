#include "vrrp/instance_runner.hpp"

#include <fmt/format.h>

namespace mqnode::vrrp {

using namespace std::chrono;

namespace {

// A notify hook that hangs is killed after this long (the next one waits for it).
constexpr milliseconds kNotifyTimeout{30'000};

}  // namespace

InstanceRunner::InstanceRunner(asio::io_context& io, const InstanceConfig& cfg, std::string path, core::Logger log,
                               std::unique_ptr<Link> link, Clock& clock, std::function<void()> on_transition)
    : io_(io), cfg_(cfg), path_(std::move(path)), log_(std::move(log)), link_(std::move(link)), clock_(clock),
      on_transition_(std::move(on_transition)), timer_(clock.timer()), garp_timer_(clock.timer()) {}

InstanceRunner::~InstanceRunner() {
  if (notify_proc_) notify_proc_->cancel();
}

void InstanceRunner::open() {
  v6_ = cfg_.ipv6();
  auto addrs = link_->addresses();
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
      link_->remove(a, err);
      log_.warn("removed leftover vip={} from interface={} (a previous run did not release it)", to_string(a.addr),
                cfg_.interface);
    }
  }
  inst_ = std::make_unique<Instance>(cfg_, *this, src);
  src_ = src;
  link_->open(src);
}

void InstanceRunner::start() {
  log_.info("starting vrid={} version={} interface={} source={} priority={} advert_int_cs={} mode={}", cfg_.vrid,
            cfg_.version, cfg_.interface, to_string(src_), cfg_.priority, cfg_.interval_cs,
            cfg_.unicast_peers.empty() ? "multicast" : "unicast");
  inst_->start(clock_.now());
  rearm();
  link_->receive(inst_->expect(), [this](const CheckResult& r) {
    if (stopped_) return;
    on_checked(r);
    rearm();
  });
}

void InstanceRunner::on_health(std::string_view module, const core::Health& h) {
  if (stopped_) return;
  inst_->on_track(clock_.now(), module, h.state != core::Health::State::Down, h.detail);
  rearm();
}

void InstanceRunner::on_script(std::string_view script, bool up, std::string_view detail) {
  if (stopped_) return;
  inst_->on_script(clock_.now(), script, up, detail);
  rearm();
}

void InstanceRunner::cancel_notify() {
  notify_queue_.clear();
  if (notify_proc_) notify_proc_->cancel();
  notify_proc_.reset();
}

void InstanceRunner::shutdown() {
  if (stopped_) return;
  inst_->shutdown(clock_.now());
  stopped_ = true;
  timer_->cancel();
  garp_timer_->cancel();
  link_->close();
}

void InstanceRunner::send_advert(const Advert& a) {
  auto send_to = [&](const IpAddr& dst) {
    std::string err;
    if (!link_->send(encode(a, src_, dst), dst, err)) {
      ++inst_->stats().send_errors;
      log_.warn("advert send failed dst={} error=\"{}\"", to_string(dst), err);
    }
  };
  if (cfg_.unicast_peers.empty())
    send_to(v6_ ? kGroup6 : kGroup4);
  else
    for (const auto& p : cfg_.unicast_peers) send_to(p);
}

void InstanceRunner::take_vips() {
  for (const auto& v : cfg_.vips) {
    std::string err;
    auto r = link_->add(v, cfg_.vip_label, err);
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

void InstanceRunner::release_vips() {
  garps_left_ = 0;
  garp_timer_->cancel();
  for (const auto& v : cfg_.vips) {
    std::string err;
    if (link_->remove(v, err) == Netlink::Outcome::Error) {
      ++inst_->stats().vip_errors;
      log_.error("cannot remove vip={}/{} interface={} error=\"{}\"", to_string(v.addr), v.prefix, cfg_.interface, err);
    }
  }
}

void InstanceRunner::on_transition(State from, State to, std::string_view reason) {
  log_.info("transition from={} to={} priority={} reason=\"{}\"", state_name(from), state_name(to),
            inst_ ? inst_->priority() : cfg_.priority, reason);
  on_transition_();
  queue_notify(to);
}

void InstanceRunner::send_garps() {
  if (garps_left_ <= 0 || stopped_) return;
  --garps_left_;
  for (const auto& v : cfg_.vips) {
    std::string err;
    if (!link_->announce(v.addr, err))
      log_.warn("{} failed vip={} error=\"{}\"", v6_ ? "neighbor advertisement" : "gratuitous ARP", to_string(v.addr), err);
  }
  if (garps_left_ <= 0) return;
  garp_timer_->arm(clock_.now() + cfg_.garp_interval, [this] { send_garps(); });
}

// keepalived: notify_<state> first, then notify with INSTANCE <name> <STATE> <priority>.
// Run one at a time per instance, in transition order, never blocking the loop.
void InstanceRunner::queue_notify(State to) {
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

void InstanceRunner::next_notify() {
  if (notify_queue_.empty()) return;
  auto [what, argv] = std::move(notify_queue_.front());
  notify_queue_.pop_front();
  notify_proc_ = Process::start(io_, argv, kNotifyTimeout, [this, what = what, argv = argv](const ProcessResult& r) {
    notify_proc_.reset();
    if (r.success())
      log_.info("{} ran: {} duration_ms={} command=\"{}\" output=\"{}\"", what, r.describe(), r.duration.count(),
                fmt::join(argv, " "), r.output_line());
    else
      log_.warn("{} failed: {} duration_ms={} command=\"{}\" output=\"{}\"", what, r.describe(), r.duration.count(),
                fmt::join(argv, " "), r.output_line());
    next_notify();
  });
}

void InstanceRunner::rearm() {
  if (stopped_) return;
  Time d = inst_->deadline();
  if (d == armed_) return;
  armed_ = d;
  if (d == Time::max()) {
    timer_->cancel();
    return;
  }
  timer_->arm(d, [this] {
    armed_ = Time::max();
    inst_->on_timer(clock_.now());
    rearm();
  });
}

void InstanceRunner::on_checked(const CheckResult& r) {
  if (r.kind == CheckResult::Kind::Ok) {
    inst_->on_advert(clock_.now(), r.advert, r.src);
    return;
  }
  inst_->stats().count_drop(r.reason);
  if (r.kind == CheckResult::Kind::OtherVrid || r.reason == Drop::own_packet) return;
  // Rate-limited: a misconfigured or hostile peer sends one of these every interval.
  auto now = clock_.now();
  if (now - last_drop_log_ < seconds(5)) return;
  last_drop_log_ = now;
  log_.warn("dropped advert src={} reason={}", to_string(r.src), drop_name(r.reason));
}

}  // namespace mqnode::vrrp
