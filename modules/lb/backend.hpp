// A backend: its servers, the balancers over its active and backup tiers, its queue, its
// counters. Backup servers take sessions only while no active server is usable; then the
// first usable backup in configuration order gets them (HAProxy without `option
// allbackups`). When every server in rotation is full (servers[].maxconn), new sessions
// wait in the backend's queue, oldest first, and get the next free slot (HAProxy's
// pendconn queue of the proxy).
#pragma once

#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "lb/balancer/balancer.hpp"
#include "lb/config.hpp"
#include "lb/server.hpp"

namespace mqnode::lb {

class Backend {
 public:
  Backend(const BackendConfig& cfg, int iid, Clock::time_point now);

  const std::string& name() const { return cfg_.name; }
  const BackendConfig& config() const { return cfg_; }
  int iid() const { return iid_; }
  const std::vector<ServerPtr>& servers() const { return servers_; }
  Server* find(std::string_view name) const;
  // Reload: the new config of this backend (same name). Servers that stay (by name) keep
  // their state; new ones start as at startup; removed ones leave the rotation (their
  // sessions keep them alive). New servers get sids after the highest one.
  void reconfigure(const BackendConfig& cfg, Clock::time_point now);

  // The server for a new session, or nullptr when none is usable.
  Server* pick(const PickContext& ctx);
  // Call after any server's state or weight changed.
  void on_server_change();

  // --- queue (servers' maxconn) ---
  struct Waiter {
    PickContext ctx;
    // Called by dispatch() with the server whose slot is now this session's (already
    // counted by Server::session_started). The entry is gone from the queue by then.
    std::function<void(Server&)> grant;
  };
  using QueuePos = std::list<Waiter>::iterator;
  QueuePos enqueue(Waiter w);
  // A waiter that gives up (queue timeout, session killed) before being granted.
  void dequeue(QueuePos pos);
  std::size_t queue_length() const { return queue_.size(); }
  // Hands free slots to the waiters, oldest first, as long as pick() finds a server.
  // Call whenever a slot may have opened: a session ended (release()), a server came up
  // or was enabled, a weight or maxconn grew.
  void dispatch(Clock::time_point now);
  // A session on <s> (a server of this backend) ended or never connected: frees its slot.
  void release(Server& s, Clock::time_point now);

  // Active / backup servers counted as up (HAProxy's act / bck columns).
  int active_up() const;
  int backup_up() const;
  // Sum of the weights of the servers that take traffic now (the BACKEND row's weight).
  int total_weight() const;
  // Has a server that can take a new session (usable(), or merely full).
  bool up() const;
  int64_t last_change_s(Clock::time_point now) const;
  int64_t downtime_s(Clock::time_point now) const;
  // Re-evaluates up() and records BACKEND transitions; returns true on change.
  bool refresh_state(Clock::time_point now);

  void dump(nlohmann::json& out, Clock::time_point now) const;

  BackendStats stats;

 private:
  BackendConfig cfg_;
  int iid_;
  void build_balancers();

  std::vector<ServerPtr> servers_;
  std::unique_ptr<Balancer> active_;
  std::vector<Server*> backups_;
  std::list<Waiter> queue_;
  bool was_up_ = true;
  Clock::time_point last_change_, down_since_{};
  Clock::duration downtime_{};
};

}  // namespace mqnode::lb
