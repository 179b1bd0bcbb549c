// `roundrobin`: weighted and dynamic. Smooth weighted round robin over the servers usable
// right now with their current weights, so a weight change, a server going down or
// coming back takes effect on the next pick (HAProxy's lb_fwrr does the same with trees).
#include <limits>

#include "lb/balancer/balancer.hpp"
#include "lb/server.hpp"

namespace mqnode::lb {

namespace {
class RoundRobin final : public Balancer {
 public:
  explicit RoundRobin(std::vector<Server*> servers) : servers_(std::move(servers)), current_(servers_.size(), 0) {}

  Server* pick(const PickContext& ctx) override {
    int64_t total = 0;
    std::size_t best = servers_.size();
    Server* fallback = nullptr;
    for (std::size_t i = 0; i < servers_.size(); ++i) {
      Server* s = servers_[i];
      if (!s->usable()) continue;
      if (s == ctx.avoid) {
        fallback = s;
        continue;
      }
      current_[i] += s->weight();
      total += s->weight();
      if (best == servers_.size() || current_[i] > current_[best]) best = i;
    }
    if (best == servers_.size()) {
      // Only the avoided server is left: better it than nothing.
      return fallback;
    }
    current_[best] -= total;
    return servers_[best];
  }

  void on_server_change() override {
    // A server leaving the rotation must not come back with a stale credit.
    for (std::size_t i = 0; i < servers_.size(); ++i)
      if (!servers_[i]->in_rotation()) current_[i] = 0;
  }

 private:
  std::vector<Server*> servers_;
  std::vector<int64_t> current_;
};
}  // namespace

std::unique_ptr<Balancer> make_round_robin(std::vector<Server*> servers) {
  return std::make_unique<RoundRobin>(std::move(servers));
}

}  // namespace mqnode::lb
