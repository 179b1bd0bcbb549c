#include "vrrp/instance.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace mqnode::vrrp {

using namespace std::chrono;

std::string_view state_name(State s) {
  switch (s) {
    case State::Init:
      return "init";
    case State::Backup:
      return "backup";
    case State::Master:
      return "master";
    case State::Fault:
      return "fault";
  }
  return "?";
}

void InstanceStats::count_drop(Drop d) {
  switch (d) {
    case Drop::None:
      break;
#define MQ_VRRP_DROP_COUNT(n) \
  case Drop::n:               \
    ++n;                      \
    break;
      MQ_VRRP_DROPS(MQ_VRRP_DROP_COUNT)
#undef MQ_VRRP_DROP_COUNT
  }
}

void InstanceStats::dump(nlohmann::json& out) const {
#define MQ_VRRP_DUMP(n, ...) out[#n] = n;
  MQ_VRRP_STATS(MQ_VRRP_DUMP)
#undef MQ_VRRP_DUMP
  auto& d = out["dropped"];
#define MQ_VRRP_DUMP_DROP(n) d[#n] = n;
  MQ_VRRP_DROPS(MQ_VRRP_DUMP_DROP)
#undef MQ_VRRP_DUMP_DROP
}

Instance::Instance(InstanceConfig cfg, InstanceIo& io, IpAddr primary)
    : cfg_(std::move(cfg)), io_(io), primary_(primary), master_interval_cs_(cfg_.interval_cs) {
  tracks_.resize(cfg_.track.size());
}

bool Instance::faulted() const {
  for (std::size_t i = 0; i < cfg_.track.size(); ++i)
    if (cfg_.track[i].faults(tracks_[i].ok)) return true;
  return false;
}

uint8_t Instance::priority() const {
  // The address owner keeps 255 whatever its tracks say (keepalived does the same).
  if (cfg_.priority == 255) return 255;
  int p = cfg_.priority;
  for (std::size_t i = 0; i < cfg_.track.size(); ++i) p += cfg_.track[i].contribution(tracks_[i].ok);
  return static_cast<uint8_t>(std::clamp(p, 1, 254));
}

microseconds Instance::skew_time() const {
  // RFC 3768 §6.1: (256 - Priority) / 256 seconds. RFC 5798 §6.1: scaled by the master's
  // advert interval, ((256 - Priority) * Master_Adver_Interval) / 256 centiseconds.
  const int64_t p = priority();
  if (cfg_.version == 2) return microseconds((256 - p) * 1'000'000 / 256);
  return microseconds((256 - p) * master_interval_cs_ * 10'000 / 256);
}

microseconds Instance::master_down_interval() const {
  return microseconds(int64_t{3} * master_interval_cs_ * 10'000) + skew_time();
}

Expect Instance::expect() const {
  Expect e;
  e.version = cfg_.version;
  e.vrid = cfg_.vrid;
  e.auth_type = cfg_.auth_type;
  e.auth = cfg_.auth;
  e.interval_cs = cfg_.interval_cs;
  for (const auto& v : cfg_.vips) e.addrs.push_back(v.addr);
  e.own.push_back(primary_);
  e.peers = cfg_.unicast_peers;
  return e;
}

Advert Instance::make_advert(uint8_t prio) const {
  Advert a;
  a.version = cfg_.version;
  a.vrid = cfg_.vrid;
  a.priority = prio;
  a.interval_cs = cfg_.interval_cs;
  a.auth_type = cfg_.auth_type;
  a.auth = cfg_.auth;
  for (const auto& v : cfg_.vips) a.addrs.push_back(v.addr);
  return a;
}

void Instance::send(uint8_t prio) {
  ++stats_.adverts_sent;
  if (prio == 0) ++stats_.priority0_sent;
  io_.send_advert(make_advert(prio));
}

void Instance::transition(Time now, State to, std::string reason) {
  State from = state_;
  state_ = to;
  last_.from = from;
  last_.to = to;
  last_.reason = reason;
  last_.at = now;
  io_.on_transition(from, to, reason);
}

void Instance::become_master(Time now, std::string reason) {
  // RFC 5798 §6.4.1/§6.4.2: send an advert, broadcast gratuitous ARP, arm the advert timer.
  send(priority());
  io_.take_vips();
  set_master(primary_, priority());
  arm(now + microseconds(int64_t{cfg_.interval_cs} * 10'000));
  ++stats_.became_master;
  transition(now, State::Master, std::move(reason));
}

void Instance::become_backup(Time now, std::string reason) {
  const bool was_master = state_ == State::Master;
  arm(now + master_down_interval());
  ++stats_.became_backup;
  if (was_master) io_.release_vips();
  transition(now, State::Backup, std::move(reason));
}

void Instance::become_fault(Time now, std::string reason) {
  if (state_ == State::Master) {
    // Not in the RFC: a faulted master announces priority 0 so that the backup takes over
    // after Skew_Time instead of Master_Down_Interval (RFC 5798 §6.4.2, priority 0 case).
    send(0);
    io_.release_vips();
  }
  arm(Time::max());
  ++stats_.became_fault;
  transition(now, State::Fault, std::move(reason));
}

void Instance::start(Time now) {
  started_ = now;
  master_interval_cs_ = cfg_.interval_cs;
  if (faulted()) {
    std::string why = "tracked module down at start";
    for (std::size_t i = 0; i < cfg_.track.size(); ++i)
      if (cfg_.track[i].faults(tracks_[i].ok))
        why = fmt::format("{} '{}' {} at start", cfg_.track[i].kind == Track::Kind::Script ? "track_script" : "tracked module",
                          cfg_.track[i].name, tracks_[i].ok ? "up (reverse)" : "down");
    become_fault(now, why);
  } else if (cfg_.priority == 255) {
    become_master(now, "address owner (priority 255)");
  } else {
    become_backup(now, "startup");
  }
}

void Instance::set_master(const IpAddr& ip, uint8_t prio) {
  if (ip != master_ip_) ++stats_.master_changes;
  master_ip_ = ip;
  master_priority_ = prio;
}

void Instance::on_advert(Time now, const Advert& a, const IpAddr& src) {
  ++stats_.adverts_received;
  if (a.priority == 0) ++stats_.priority0_received;
  switch (state_) {
    case State::Init:
    case State::Fault:
      return;
    case State::Backup: {
      set_master(src, a.priority);
      if (a.priority == 0) {
        // RFC 5798 §6.4.2: the master resigned; take over after Skew_Time only.
        arm(now + skew_time());
        return;
      }
      const bool in_preempt_delay = now < started_ + cfg_.preempt_delay;
      if (!cfg_.preempt || in_preempt_delay || a.priority >= priority()) {
        // v3 backups adopt the master's interval (RFC 5798 §6.4.2); v2 requires equality.
        if (cfg_.version == 3) master_interval_cs_ = a.interval_cs;
        arm(now + master_down_interval());
      }
      // else: preempting a lower-priority master; let the master-down timer run out.
      return;
    }
    case State::Master: {
      if (a.priority == 0) {
        // RFC 5798 §6.4.3: another router resigned; assert mastership at once.
        send(priority());
        arm(now + microseconds(int64_t{cfg_.interval_cs} * 10'000));
        return;
      }
      const uint8_t mine = priority();
      if (a.priority > mine || (a.priority == mine && src > primary_)) {
        if (cfg_.version == 3) master_interval_cs_ = a.interval_cs;
        set_master(src, a.priority);
        become_backup(now, fmt::format("higher priority master {} priority={}", to_string(src), a.priority));
      }
      // else: a lower-priority router that will yield; discard (RFC 5798 §6.4.3).
      return;
    }
  }
}

void Instance::on_timer(Time now) {
  if (now < deadline_) return;
  switch (state_) {
    case State::Backup:
      become_master(now, master_priority_ == 0 && !master_ip_.unset() ? "master resigned (priority 0)"
                                                                   : "master down timer expired");
      return;
    case State::Master:
      send(priority());
      arm(now + microseconds(int64_t{cfg_.interval_cs} * 10'000));
      return;
    case State::Init:
    case State::Fault:
      arm(Time::max());
      return;
  }
}

void Instance::on_track(Time now, std::string_view module, bool ok, std::string_view detail) {
  update_track(now, Track::Kind::Module, module, ok, detail);
}

void Instance::on_script(Time now, std::string_view script, bool ok, std::string_view detail) {
  update_track(now, Track::Kind::Script, script, ok, detail);
}

void Instance::update_track(Time now, Track::Kind kind, std::string_view name, bool ok, std::string_view detail) {
  std::size_t i = 0;
  while (i < cfg_.track.size() && !(cfg_.track[i].kind == kind && cfg_.track[i].name == name)) ++i;
  if (i == cfg_.track.size()) return;
  auto& st = tracks_[i];
  st.detail = std::string(detail);
  if (st.ok == ok) return;
  const bool was_faulted = faulted();
  const uint8_t old_prio = priority();
  st.ok = ok;
  const std::string what =
      kind == Track::Kind::Module
          ? fmt::format("tracked module '{}' {}{}{}", name, ok ? "up" : "down", detail.empty() ? "" : ": ", detail)
          : fmt::format("track_script '{}' {}{}{}", name, ok ? "succeeded" : "failed", detail.empty() ? "" : ": ", detail);
  if (state_ == State::Init) return;  // start() reads the tracks
  if (!was_faulted && faulted()) {
    become_fault(now, what);
  } else if (was_faulted && !faulted()) {
    if (cfg_.priority == 255)
      become_master(now, what);
    else
      become_backup(now, what);
  } else if (priority() != old_prio && state_ == State::Master) {
    // Tell the backups now rather than at the next interval.
    send(priority());
    arm(now + microseconds(int64_t{cfg_.interval_cs} * 10'000));
  }
}

void Instance::shutdown(Time now) {
  if (state_ == State::Master) {
    send(0);  // RFC 5798 §6.4.3 Shutdown: the backup takes over after Skew_Time
    io_.release_vips();
  }
  arm(Time::max());
  if (state_ != State::Init) transition(now, State::Init, "shutdown");
}

void Instance::dump(nlohmann::json& out) const {
  out["name"] = cfg_.name;
  out["interface"] = cfg_.interface;
  out["vrid"] = cfg_.vrid;
  out["version"] = cfg_.version;
  out["state"] = state_name(state_);
  out["priority"] = cfg_.priority;
  out["effective_priority"] = priority();
  out["master"] = master_ip_.unset() ? "" : to_string(master_ip_);
  out["master_priority"] = master_priority_;
  out["master_advert_int_cs"] = master_interval_cs_;
  auto& lt = out["last_transition"];
  lt["from"] = state_name(last_.from);
  lt["to"] = state_name(last_.to);
  lt["reason"] = last_.reason;
  auto& tr = out["track"];
  tr = nlohmann::json::object();
  auto& ts = out["track_script"];
  ts = nlohmann::json::object();
  for (std::size_t i = 0; i < cfg_.track.size(); ++i) {
    const auto& t = cfg_.track[i];
    (t.kind == Track::Kind::Module ? tr : ts)[t.name] = {
        {"up", tracks_[i].ok}, {"detail", tracks_[i].detail}, {"weight", t.weight}, {"reverse", t.reverse}};
  }
  stats_.dump(out["stats"]);
}

void write_metrics(core::MetricsWriter& w, std::span<const Instance* const> instances) {
  using Type = core::MetricsWriter::Type;
  w.family("mqnode_vrrp_state", Type::Gauge,
           "VRRP instance state: 1 for the current one of init, backup, master, fault (RFC 5798 §6.4).");
  for (const Instance* in : instances)
    for (State s : {State::Init, State::Backup, State::Master, State::Fault})
      w.sample({{"instance", in->config().name}, {"state", state_name(s)}}, in->state() == s ? 1 : 0);
  w.family("mqnode_vrrp_priority", Type::Gauge, "Effective priority: configured priority plus track weights.");
  for (const Instance* in : instances) w.sample({{"instance", in->config().name}}, in->priority());
#define MQ_VRRP_METRIC(n, help)                                              \
  w.family("mqnode_vrrp_" #n "_total", Type::Counter, help);               \
  for (const Instance* in : instances) w.sample({{"instance", in->config().name}}, static_cast<double>(in->stats().n));
  MQ_VRRP_STATS(MQ_VRRP_METRIC)
#undef MQ_VRRP_METRIC
  w.family("mqnode_vrrp_adverts_dropped_total", Type::Counter,
           "Received packets dropped, by reason (other_vrid: another router's VRID on the same group).");
  for (const Instance* in : instances) {
#define MQ_VRRP_METRIC_DROP(n) w.sample({{"instance", in->config().name}, {"reason", #n}}, static_cast<double>(in->stats().n));
    MQ_VRRP_DROPS(MQ_VRRP_METRIC_DROP)
#undef MQ_VRRP_METRIC_DROP
  }
}

}  // namespace mqnode::vrrp
