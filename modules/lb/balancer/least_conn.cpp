// `leastconn`: the usable server with the fewest current sessions relative to its weight
// (scur/weight, compared without division). Ties rotate, so equal servers share new
// sessions round-robin as in HAProxy's lb_fwlc.
#include "lb/balancer/balancer.hpp"
#include "lb/server.hpp"

namespace mqnode::lb {

namespace {
class LeastConn final : public Balancer {
 public:
  explicit LeastConn(std::vector<Server*> servers) : servers_(std::move(servers)) {}

  Server* pick(const PickContext& ctx) override {
    Server* best = nullptr;
    Server* fallback = nullptr;
    const std::size_t n = servers_.size();
    for (std::size_t k = 0; k < n; ++k) {
      Server* s = servers_[(next_ + k) % n];
      if (!s->usable()) continue;
      if (s == ctx.avoid) {
        fallback = s;
        continue;
      }
      // s->scur / s->weight < best->scur / best->weight
      if (!best || (s->stats.scur * static_cast<uint64_t>(best->weight()) <
                    best->stats.scur * static_cast<uint64_t>(s->weight())))
        best = s;
    }
    if (!best) return fallback;
    for (std::size_t i = 0; i < n; ++i)
      if (servers_[i] == best) next_ = (i + 1) % n;
    return best;
  }

 private:
  std::vector<Server*> servers_;
  std::size_t next_ = 0;
};
}  // namespace

std::unique_ptr<Balancer> make_least_conn(std::vector<Server*> servers) {
  return std::make_unique<LeastConn>(std::move(servers));
}

}  // namespace mqnode::lb
