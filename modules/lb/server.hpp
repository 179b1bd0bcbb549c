// The runtime state of servers, backends and frontends: operational state driven by health
// checks (HAProxy's rise/fall health counter), administrative state driven by operators and
// the local broker, and the counters the stats page shows. Plain data, no I/O: the balancers
// and the stats renderers are tested on it directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include "lb/config.hpp"

namespace mqnode::lb {

using Clock = std::chrono::steady_clock;

// Counters declared once; names are HAProxy's CSV column names, so the same list feeds
// dump(), the CSV, the JSON and Prometheus. C = monotonic counter, G = gauge.
#define MQ_LB_SERVER_STATS(C, G)                                                               \
  C(stot) C(lbtot) C(bin) C(bout) C(econ) C(eresp) C(wretr) C(wredis) C(chkfail) C(chkdown)  \
  C(cli_abrt) C(srv_abrt) G(scur) G(smax)

#define MQ_LB_FRONTEND_STATS(C, G) C(stot) C(bin) C(bout) C(dreq) C(ereq) C(queued) G(scur) G(smax) G(qcur) G(qmax)

// queued: sessions that waited in the queue (HAProxy has no CSV column for it); a queue
// timeout counts in econ, as HAProxy's failed_conns.
#define MQ_LB_BACKEND_STATS(C, G)                                                           \
  C(stot) C(lbtot) C(bin) C(bout) C(econ) C(eresp) C(wretr) C(wredis) C(nosrv) C(chkdown)  \
  C(cli_abrt) C(srv_abrt) C(queued) G(scur) G(smax) G(qcur) G(qmax)

#define MQ_LB_DECLARE(n) uint64_t n = 0;
struct ServerStats {
  MQ_LB_SERVER_STATS(MQ_LB_DECLARE, MQ_LB_DECLARE)
  void dump(nlohmann::json& out) const;
};
struct FrontendStats {
  MQ_LB_FRONTEND_STATS(MQ_LB_DECLARE, MQ_LB_DECLARE)
  void dump(nlohmann::json& out) const;
};
struct BackendStats {
  MQ_LB_BACKEND_STATS(MQ_LB_DECLARE, MQ_LB_DECLARE)
  void dump(nlohmann::json& out) const;
};
#undef MQ_LB_DECLARE

// Result of the last health check, in HAProxy's words (check_status / check_desc).
struct CheckResult {
  std::string status = "INI";  // INI, L4OK, L4CON, L4TOUT, L7OK, L7RSP, L7TOUT, SOCKERR
  std::string desc = "Initializing";
  int64_t duration_ms = -1;
  bool ran = false;
  Clock::time_point at{};
};

class Server : public std::enable_shared_from_this<Server> {
 public:
  Server(const ServerConfig& cfg, const CheckConfig& check, int sid, Clock::time_point now);
  // Reload: takes the new config of a server that stays (same name). Health and admin
  // state, counters and a runtime weight are kept, except what the config changed
  // (weight, disabled); a server that became unchecked is up.
  void reconfigure(const ServerConfig& cfg, const CheckConfig& check, Clock::time_point now);

  const std::string& name() const { return cfg_.name; }
  const ServerConfig& config() const { return cfg_; }
  const asio::ip::tcp::endpoint& endpoint() const { return endpoint_; }
  int sid() const { return sid_; }
  bool backup() const { return cfg_.backup; }
  bool checked() const { return checked_; }

  // --- operational state (SRV_ST_RUNNING / SRV_ST_STOPPED in HAProxy) ---
  // Servers start up, one failed check away from down, as HAProxy's do.
  bool up() const { return up_; }
  // Feeds one check result; returns true when up() changed.
  bool record_check(bool ok, Clock::time_point now);
  // HAProxy's check_health: 0..rise+fall-1, up while >= rise.
  int health() const;
  // A state change is pending: "UP 2/3" or "DOWN 1/2".
  bool transitioning() const { return up_ ? fails_ > 0 : succ_ > 0; }
  CheckResult& last_check() { return check_; }
  const CheckResult& last_check() const { return check_; }

  // --- administrative state (SRV_ADMF_* ) ---
  bool maint() const { return maint_; }
  void set_maint(bool on, Clock::time_point now);
  bool drain() const { return drain_; }
  void set_drain(bool on) { drain_ = on; }
  // The local broker is stopping or down: no new sessions (lb follows the EventBus).
  bool local_down() const { return local_down_; }
  void set_local_down(bool on) { local_down_ = on; }
  int weight() const { return weight_; }
  void set_weight(int w) { weight_ = w; }

  // In the balancer's rotation: could take sessions were it not full.
  bool in_rotation() const { return up_ && !maint_ && !drain_ && !local_down_ && weight_ > 0; }
  bool full() const { return cfg_.maxconn && stats.scur >= cfg_.maxconn; }
  bool usable() const { return in_rotation() && !full(); }
  // Counts toward a backend's act/bck (up and not in maintenance, as HAProxy's srv_is_usable).
  bool counts_up() const { return up_ && !maint_; }

  // HAProxy's status word: "UP", "DOWN", "UP 1/3", "DOWN 1/2", "NOLB", "MAINT", "DRAIN",
  // "no check".
  std::string status_word() const;
  // Seconds since the last UP/DOWN/MAINT transition, and total time spent down.
  int64_t last_change_s(Clock::time_point now) const;
  int64_t downtime_s(Clock::time_point now) const;
  int64_t last_session_s(Clock::time_point now) const;

  void session_started(Clock::time_point now);
  void session_ended() { --stats.scur; }

  void dump(nlohmann::json& out, Clock::time_point now) const;

  ServerStats stats;

 private:
  void set_up(bool up, Clock::time_point now);

  ServerConfig cfg_;
  CheckConfig check_cfg_;
  asio::ip::tcp::endpoint endpoint_;
  int sid_;
  bool checked_;
  bool up_ = true;
  int fails_ = 0, succ_ = 0;
  bool maint_ = false, drain_ = false, local_down_ = false;
  int weight_;
  CheckResult check_;
  Clock::time_point last_change_, down_since_{}, last_session_{};
  bool ever_session_ = false;
  Clock::duration downtime_{};
};

using ServerPtr = std::shared_ptr<Server>;

}  // namespace mqnode::lb
