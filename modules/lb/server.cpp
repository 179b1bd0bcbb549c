#include "lb/server.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace mqnode::lb {

namespace {
int64_t seconds(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}
}  // namespace

#define MQ_LB_DUMP(n) out[#n] = n;
void ServerStats::dump(nlohmann::json& out) const { MQ_LB_SERVER_STATS(MQ_LB_DUMP, MQ_LB_DUMP) }
void FrontendStats::dump(nlohmann::json& out) const { MQ_LB_FRONTEND_STATS(MQ_LB_DUMP, MQ_LB_DUMP) }
void BackendStats::dump(nlohmann::json& out) const { MQ_LB_BACKEND_STATS(MQ_LB_DUMP, MQ_LB_DUMP) }
#undef MQ_LB_DUMP

Server::Server(const ServerConfig& cfg, const CheckConfig& check, int sid, Clock::time_point now)
    : cfg_(cfg),
      check_cfg_(check),
      endpoint_(cfg.address.resolve()),
      sid_(sid),
      checked_(cfg.check && check.type != CheckType::None),
      maint_(cfg.disabled),
      weight_(cfg.weight),
      last_change_(now) {
  // HAProxy starts a checked server at health == rise: up, but the first failure marks it down.
  if (checked_) fails_ = check_cfg_.fall - 1;
}

void Server::reconfigure(const ServerConfig& cfg, const CheckConfig& check, Clock::time_point now) {
  if (cfg.address.to_string() != cfg_.address.to_string()) endpoint_ = cfg.address.resolve();
  if (cfg.weight != cfg_.weight) weight_ = cfg.weight;
  if (cfg.disabled != cfg_.disabled) set_maint(cfg.disabled, now);
  bool was_checked = checked_;
  checked_ = cfg.check && check.type != CheckType::None;
  check_cfg_ = check;
  if (!checked_) {
    fails_ = succ_ = 0;
    set_up(true, now);
  } else if (!was_checked) {
    fails_ = check_cfg_.fall - 1;  // as at startup: up, one failure away from down
  }
  fails_ = std::min(fails_, check_cfg_.fall - 1);
  succ_ = std::min(succ_, check_cfg_.rise - 1);
  cfg_ = cfg;
}

int Server::health() const {
  if (up_) return check_cfg_.rise + check_cfg_.fall - 1 - fails_;
  return succ_;
}

void Server::set_up(bool up, Clock::time_point now) {
  if (up == up_) return;
  up_ = up;
  if (!up) {
    down_since_ = now;
    ++stats.chkdown;
  } else {
    downtime_ += now - down_since_;
  }
  last_change_ = now;
}

bool Server::record_check(bool ok, Clock::time_point now) {
  bool was = up_;
  if (!ok) ++stats.chkfail;
  if (up_) {
    if (ok) {
      fails_ = 0;
    } else if (++fails_ >= check_cfg_.fall) {
      fails_ = 0;
      succ_ = 0;
      set_up(false, now);
    }
  } else {
    if (!ok) {
      succ_ = 0;
    } else if (++succ_ >= check_cfg_.rise) {
      succ_ = 0;
      fails_ = 0;
      set_up(true, now);
    }
  }
  return was != up_;
}

void Server::set_maint(bool on, Clock::time_point now) {
  if (on == maint_) return;
  maint_ = on;
  last_change_ = now;
  // Leaving maintenance, HAProxy re-checks before trusting the server; so do we, by
  // starting again one failure away from down.
  if (!on && checked_ && up_) fails_ = check_cfg_.fall - 1;
}

std::string Server::status_word() const {
  if (maint_) return "MAINT";
  if (!up_) return succ_ > 0 ? fmt::format("DOWN {}/{}", succ_, check_cfg_.rise) : "DOWN";
  if (drain_ || local_down_) return "DRAIN";
  if (fails_ > 0) return fmt::format("UP {}/{}", check_cfg_.fall - fails_, check_cfg_.fall);
  if (weight_ == 0) return "NOLB";
  if (!checked_) return "no check";
  return "UP";
}

int64_t Server::last_change_s(Clock::time_point now) const {
  return seconds(now - last_change_);
}

int64_t Server::downtime_s(Clock::time_point now) const {
  return seconds(downtime_ + (up_ ? Clock::duration{} : now - down_since_));
}

int64_t Server::last_session_s(Clock::time_point now) const {
  return ever_session_ ? seconds(now - last_session_) : -1;
}

void Server::session_started(Clock::time_point now) {
  ++stats.stot;
  ++stats.lbtot;
  if (++stats.scur > stats.smax) stats.smax = stats.scur;
  last_session_ = now;
  ever_session_ = true;
}

void Server::dump(nlohmann::json& out, Clock::time_point now) const {
  out["name"] = name();
  out["address"] = cfg_.address.to_string();
  out["status"] = status_word();
  out["weight"] = weight_;
  out["backup"] = cfg_.backup;
  out["check_status"] = check_.status;
  out["check_desc"] = check_.desc;
  out["last_change_s"] = last_change_s(now);
  out["downtime_s"] = downtime_s(now);
  stats.dump(out["stats"]);
}

}  // namespace mqnode::lb
