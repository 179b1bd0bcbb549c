#include "lb/balancer/balancer.hpp"

namespace mqnode::lb {

std::unique_ptr<Balancer> make_balancer(Algorithm a, std::vector<Server*> servers) {
  switch (a) {
    case Algorithm::RoundRobin: return make_round_robin(std::move(servers));
    case Algorithm::StaticRr: return make_static_rr(std::move(servers));
    case Algorithm::LeastConn: return make_least_conn(std::move(servers));
    case Algorithm::Source: return make_source(std::move(servers));
  }
  return nullptr;
}

std::vector<std::size_t> weighted_map(const std::vector<int>& weights) {
  int64_t total = 0;
  for (int w : weights) total += w;
  std::vector<int64_t> current(weights.size(), 0);
  std::vector<std::size_t> out;
  out.reserve(static_cast<std::size_t>(total));
  for (int64_t n = 0; n < total; ++n) {
    std::size_t best = 0;
    for (std::size_t i = 0; i < weights.size(); ++i) {
      current[i] += weights[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total;
    out.push_back(best);
  }
  return out;
}

}  // namespace mqnode::lb
