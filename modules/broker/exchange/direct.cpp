#include "broker/exchange/types.hpp"

namespace mqnode::broker {

void DirectExchange::reindex() {
  by_key_.clear();
  for (const auto& b : bindings_) by_key_[b.key].push_back(b.destination);
}

void DirectExchange::route(const Message& msg, std::vector<BindingTarget>& out) const {
  auto it = by_key_.find(msg.routing_key);
  if (it != by_key_.end()) out.insert(out.end(), it->second.begin(), it->second.end());
}

}  // namespace mqnode::broker
