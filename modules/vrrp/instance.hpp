// One VRRP virtual router (a VRID on an interface): the RFC 5798 §6 state machine plus
// keepalived's Fault state for tracked health. Pure: time comes in as arguments and every
// effect (send an advert, take or release the VIPs) goes out through InstanceIo, so unit tests
// drive it on a fake clock and the module drives it from a steady_timer and a raw socket.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/metrics.hpp"
#include "vrrp/packet.hpp"

namespace mqnode::vrrp {

using Time = std::chrono::steady_clock::time_point;

// RFC 5798 §6.4 states; Fault is keepalived's (tracked health down: no adverts, no VIPs).
enum class State { Init, Backup, Master, Fault };
std::string_view state_name(State s);

struct Vip {
  IpAddr addr;
  uint8_t prefix = 32;  // 1..32, or 1..128 for IPv6
};

// A tracked module of this process (health from the EventBus) or a track_script. As
// keepalived's track_script: weight 0 = Fault while down; a positive weight is added to the
// priority while up, a negative one while down; reverse flips the direction (weight 0
// reverse: Fault while up).
struct Track {
  std::string name;  // module name, or /vrrp/track_scripts key
  int weight = 0;
  enum class Kind : uint8_t { Module, Script } kind = Kind::Module;
  bool reverse = false;
  // What this track adds to the priority in status <up>.
  int contribution(bool up) const {
    int c = weight > 0 ? (up ? weight : 0) : (up ? 0 : weight);
    return reverse ? -c : c;
  }
  bool faults(bool up) const { return weight == 0 && (reverse ? up : !up); }
};

struct InstanceConfig {
  std::string name;
  std::string interface;
  uint8_t vrid = 0;
  uint8_t version = 3;
  uint8_t priority = 100;        // 255 = address owner (RFC 5798 §6.1)
  uint16_t interval_cs = 100;    // advert interval in centiseconds
  bool preempt = true;           // RFC 5798 §6.1 Preempt_Mode (keepalived: !nopreempt)
  std::chrono::milliseconds preempt_delay{0};  // keepalived: no preemption this long after start
  uint8_t auth_type = 0;         // v2: 0 none, 1 simple password
  std::array<uint8_t, kAuthLen> auth{};
  std::vector<Vip> vips;
  std::string vip_label;         // optional IFA_LABEL, e.g. "eth0:vip"
  // The family of the instance is the one of its vips (one family per instance, as keepalived).
  bool ipv6() const { return !vips.empty() && vips.front().addr.v6; }
  IpAddr source;                 // unset = the interface's first IPv4 / link-local IPv6 address
  std::vector<IpAddr> unicast_peers;  // empty = multicast 224.0.0.18 / ff02::12
  std::vector<Track> track;
  // keepalived's notify hooks (argv; empty = none). notify gets INSTANCE <name> <STATE> <prio>.
  std::vector<std::string> notify_master, notify_backup, notify_fault, notify_stop, notify;
  int garp_count = 3;
  std::chrono::milliseconds garp_interval{100};
};

// Effects of the state machine. Called synchronously from Instance methods.
class InstanceIo {
 public:
  virtual ~InstanceIo() = default;
  virtual void send_advert(const Advert& a) = 0;
  virtual void take_vips() = 0;     // add the addresses, then gratuitous ARP
  virtual void release_vips() = 0;  // remove the addresses
  virtual void on_transition(State from, State to, std::string_view reason) = 0;
};

// Counters declared once (STYLE §12) with their metric help; the same list feeds dump()
// and write_metrics(). Drops come from check_packet() reasons (MQ_VRRP_DROPS).
#define MQ_VRRP_STATS(C)                                                                           \
  C(adverts_sent, "Advertisements sent, priority 0 included.")                                    \
  C(adverts_received, "Advertisements received that passed every check.")                        \
  C(priority0_sent, "Priority 0 advertisements sent (leaving Master: shutdown or fault).")        \
  C(priority0_received, "Priority 0 advertisements received (the master resigned).")             \
  C(became_master, "Transitions to Master.")                                                      \
  C(became_backup, "Transitions to Backup.")                                                      \
  C(became_fault, "Transitions to Fault (a tracked module or script is down).")                  \
  C(master_changes, "Times the master this instance sees (itself or a peer) changed.")           \
  C(send_errors, "Advertisements the socket refused to send.")                                    \
  C(vip_errors, "Virtual addresses netlink failed to add or remove.")

struct InstanceStats {
#define MQ_VRRP_COUNTER(n, ...) uint64_t n = 0;
  MQ_VRRP_STATS(MQ_VRRP_COUNTER)
  MQ_VRRP_DROPS(MQ_VRRP_COUNTER)
#undef MQ_VRRP_COUNTER
  void count_drop(Drop d);
  void dump(nlohmann::json& out) const;
};

class Instance {
 public:
  // <primary> is the address adverts are sent from; it breaks priority ties (RFC 5798 §6.4.3).
  Instance(InstanceConfig cfg, InstanceIo& io, IpAddr primary);

  // Initialize → Master (owner) or Backup (RFC 5798 §6.4.1), or Fault if a track is down.
  void start(Time now);
  // A packet that passed check_packet(). RFC 5798 §6.4.2 (Backup), §6.4.3 (Master).
  void on_advert(Time now, const Advert& a, const IpAddr& src);
  // Fires the due timer (advert or master-down); call when now >= deadline().
  void on_timer(Time now);
  // The next time on_timer() must run; Time::max() when no timer is armed.
  Time deadline() const { return deadline_; }
  // Health of a tracked module changed (<ok> false = down). Unknown names are ignored.
  // Acts at once: a fault-type track going down leaves Master with a priority-0 advert.
  void on_track(Time now, std::string_view module, bool ok, std::string_view detail);
  // Status of a track_script changed (after its fall/rise counting); same effects.
  void on_script(Time now, std::string_view script, bool ok, std::string_view detail);
  // Leaves Master with a priority-0 advert (RFC 5798 §6.4.3 Shutdown) and stops the timers.
  void shutdown(Time now);

  State state() const { return state_; }
  uint8_t priority() const;  // effective: base + weights of failed tracks, 1..254
  const IpAddr& master_ip() const { return master_ip_; }
  uint16_t master_interval_cs() const { return master_interval_cs_; }
  const InstanceConfig& config() const { return cfg_; }
  InstanceStats& stats() { return stats_; }
  const InstanceStats& stats() const { return stats_; }
  Expect expect() const;  // what check_packet() should verify for this instance
  void dump(nlohmann::json& out) const;

  // RFC 5798 §6.1 derived timers, in the instance's current view.
  std::chrono::microseconds skew_time() const;
  std::chrono::microseconds master_down_interval() const;

 private:
  bool faulted() const;
  Advert make_advert(uint8_t priority) const;
  void send(uint8_t priority);
  void become_master(Time now, std::string reason);
  void become_backup(Time now, std::string reason);
  void become_fault(Time now, std::string reason);
  void transition(Time now, State to, std::string reason);
  void arm(Time at) { deadline_ = at; }
  void set_master(const IpAddr& ip, uint8_t priority);
  void update_track(Time now, Track::Kind kind, std::string_view name, bool ok, std::string_view detail);

  InstanceConfig cfg_;
  InstanceIo& io_;
  IpAddr primary_;
  State state_ = State::Init;
  Time deadline_ = Time::max();
  Time started_{};
  uint16_t master_interval_cs_;
  IpAddr master_ip_;
  uint8_t master_priority_ = 0;
  struct TrackState {
    bool ok = true;
    std::string detail;
  };
  std::vector<TrackState> tracks_;  // parallel to cfg_.track
  InstanceStats stats_;
  struct {
    State from = State::Init, to = State::Init;
    std::string reason;
    Time at{};
  } last_;
};

// Prometheus families for <instances>, one family at a time so each family's samples stay
// together as the text format wants: state (one sample per state, 1 for the current one),
// effective priority, every MQ_VRRP_STATS counter and the drops by reason.
void write_metrics(core::MetricsWriter& w, std::span<const Instance* const> instances);

}  // namespace mqnode::vrrp
