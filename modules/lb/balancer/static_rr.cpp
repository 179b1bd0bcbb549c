// `static-rr`: a fixed map built from the configured weights, walked in order; servers out
// of rotation are skipped. As in HAProxy, a runtime weight change only matters as zero vs
// non-zero (no slow start, no map rebuild), which keeps the rotation predictable.
#include "lb/balancer/balancer.hpp"
#include "lb/server.hpp"

namespace mqnode::lb {

namespace {
class StaticRr final : public Balancer {
 public:
  explicit StaticRr(std::vector<Server*> servers) : servers_(std::move(servers)) {
    std::vector<int> weights;
    for (auto* s : servers_) weights.push_back(s->config().weight);
    map_ = weighted_map(weights);
  }

  Server* pick(const PickContext& ctx) override {
    Server* fallback = nullptr;
    for (std::size_t n = 0; n < map_.size(); ++n) {
      Server* s = servers_[map_[pos_]];
      pos_ = (pos_ + 1) % map_.size();
      if (!s->usable()) continue;
      if (s == ctx.avoid) {
        fallback = s;
        continue;
      }
      return s;
    }
    return fallback;
  }

 private:
  std::vector<Server*> servers_;
  std::vector<std::size_t> map_;
  std::size_t pos_ = 0;
};
}  // namespace

std::unique_ptr<Balancer> make_static_rr(std::vector<Server*> servers) {
  return std::make_unique<StaticRr>(std::move(servers));
}

}  // namespace mqnode::lb
