#include "lb/backend.hpp"

#include <algorithm>

namespace mqnode::lb {

Backend::Backend(const BackendConfig& cfg, int iid, Clock::time_point now) : cfg_(cfg), iid_(iid), last_change_(now) {
  int sid = 0;
  for (const auto& s : cfg_.servers) servers_.push_back(std::make_shared<Server>(s, cfg_.check, ++sid, now));
  build_balancers();
  was_up_ = up();
}

void Backend::build_balancers() {
  std::vector<Server*> active;
  backups_.clear();
  for (const auto& s : servers_) (s->backup() ? backups_ : active).push_back(s.get());
  active_ = make_balancer(cfg_.balance, std::move(active));
}

void Backend::reconfigure(const BackendConfig& cfg, Clock::time_point now) {
  int last_sid = 0;
  for (const auto& s : servers_) last_sid = std::max(last_sid, s->sid());
  std::vector<ServerPtr> next;
  for (const auto& sc : cfg.servers) {
    auto it = std::find_if(servers_.begin(), servers_.end(), [&](const auto& s) { return s->name() == sc.name; });
    if (it != servers_.end()) {
      (*it)->reconfigure(sc, cfg.check, now);
      next.push_back(*it);
    } else {
      next.push_back(std::make_shared<Server>(sc, cfg.check, ++last_sid, now));
    }
  }
  cfg_ = cfg;
  servers_ = std::move(next);
  build_balancers();
}

Server* Backend::find(std::string_view name) const {
  for (const auto& s : servers_)
    if (s->name() == name) return s.get();
  return nullptr;
}

Server* Backend::pick(const PickContext& ctx) {
  if (Server* s = active_->pick(ctx)) return s;
  Server* fallback = nullptr;
  for (Server* s : backups_) {
    if (!s->usable()) continue;
    if (s != ctx.avoid) return s;
    fallback = s;
  }
  return fallback;
}

void Backend::on_server_change() {
  active_->on_server_change();
}

Backend::QueuePos Backend::enqueue(Waiter w) {
  ++stats.queued;
  if (++stats.qcur > stats.qmax) stats.qmax = stats.qcur;
  return queue_.insert(queue_.end(), std::move(w));
}

void Backend::dequeue(QueuePos pos) {
  queue_.erase(pos);
  --stats.qcur;
}

void Backend::dispatch(Clock::time_point now) {
  while (!queue_.empty()) {
    Server* s = pick(queue_.front().ctx);
    if (!s) return;
    auto grant = std::move(queue_.front().grant);
    dequeue(queue_.begin());
    s->session_started(now);
    grant(*s);
  }
}

void Backend::release(Server& s, Clock::time_point now) {
  s.session_ended();
  dispatch(now);
}

int Backend::active_up() const {
  int n = 0;
  for (const auto& s : servers_) n += !s->backup() && s->counts_up();
  return n;
}

int Backend::backup_up() const {
  int n = 0;
  for (const auto& s : servers_) n += s->backup() && s->counts_up();
  return n;
}

int Backend::total_weight() const {
  // HAProxy: the active servers' weights, or the backups' when no active one is up.
  int act = 0, bck = 0;
  for (const auto& s : servers_) {
    if (!s->in_rotation()) continue;
    (s->backup() ? bck : act) += s->weight();
  }
  return act ? act : bck;
}

bool Backend::up() const {
  for (const auto& s : servers_)
    if (s->in_rotation()) return true;
  return false;
}

bool Backend::refresh_state(Clock::time_point now) {
  bool u = up();
  if (u == was_up_) return false;
  was_up_ = u;
  last_change_ = now;
  if (!u) {
    down_since_ = now;
    ++stats.chkdown;
  } else {
    downtime_ += now - down_since_;
  }
  return true;
}

int64_t Backend::last_change_s(Clock::time_point now) const {
  return std::chrono::duration_cast<std::chrono::seconds>(now - last_change_).count();
}

int64_t Backend::downtime_s(Clock::time_point now) const {
  auto d = downtime_ + (was_up_ ? Clock::duration{} : now - down_since_);
  return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

void Backend::dump(nlohmann::json& out, Clock::time_point now) const {
  out["name"] = name();
  out["balance"] = algorithm_name(cfg_.balance);
  out["status"] = up() ? "UP" : "DOWN";
  stats.dump(out["stats"]);
  auto& arr = out["servers"] = nlohmann::json::array();
  for (const auto& s : servers_) {
    nlohmann::json j;
    s->dump(j, now);
    arr.push_back(std::move(j));
  }
}

}  // namespace mqnode::lb
