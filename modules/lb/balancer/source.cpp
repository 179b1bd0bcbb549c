// `source`: a hash of the client's IP address into a weighted map of the servers in
// rotation (HAProxy's map-based `hash-type`): a client keeps its server while the set of
// servers does not change. The map is rebuilt when a server's state or weight changes.
// A full server (maxconn) is not skipped for another: that would move the client.
#include "lb/balancer/balancer.hpp"
#include "lb/server.hpp"

namespace mqnode::lb {

namespace {
// FNV-1a, 32-bit: stable across builds and platforms, which the mapping must be.
uint32_t hash_bytes(const unsigned char* p, std::size_t n) {
  uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}

class Source final : public Balancer {
 public:
  explicit Source(std::vector<Server*> servers) : servers_(std::move(servers)) { on_server_change(); }

  Server* pick(const PickContext& ctx) override {
    if (map_.empty()) return nullptr;
    uint32_t h = 0;
    if (ctx.client && ctx.client->is_v4()) {
      auto b = ctx.client->to_v4().to_bytes();
      h = hash_bytes(b.data(), b.size());
    } else if (ctx.client) {
      auto b = ctx.client->to_v6().to_bytes();
      h = hash_bytes(b.data(), b.size());
    }
    Server* s = map_[h % map_.size()];
    if (s == ctx.avoid || !s->usable()) {
      // Redispatch: the next different usable server in the map.
      for (std::size_t k = 1; k < map_.size(); ++k) {
        Server* t = map_[(h + k) % map_.size()];
        if (t != s && t != ctx.avoid && t->usable()) return t;
      }
      return s->usable() ? s : nullptr;
    }
    return s;
  }

  void on_server_change() override {
    std::vector<Server*> in;
    std::vector<int> weights;
    for (auto* s : servers_)
      if (s->in_rotation()) {
        in.push_back(s);
        weights.push_back(s->weight());
      }
    map_.clear();
    for (auto i : weighted_map(weights)) map_.push_back(in[i]);
  }

 private:
  std::vector<Server*> servers_;
  std::vector<Server*> map_;
};
}  // namespace

std::unique_ptr<Balancer> make_source(std::vector<Server*> servers) {
  return std::make_unique<Source>(std::move(servers));
}

}  // namespace mqnode::lb
