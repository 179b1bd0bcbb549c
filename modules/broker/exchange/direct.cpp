#include "broker/exchange/types.hpp"

namespace mqnode::broker {

void DirectExchange::indexed(uint32_t pos) { slots_.insert(by_key_[bindings()[pos].key], pos); }

void DirectExchange::unindexing(uint32_t pos) {
  auto it = by_key_.find(bindings()[pos].key);
  slots_.erase(it->second, pos);
  if (it->second.empty()) by_key_.erase(it);
}

void DirectExchange::moved(uint32_t from, uint32_t to) {
  slots_.renumber(by_key_.find(bindings()[to].key)->second, from, to);
}

void DirectExchange::route(const Message& msg, std::vector<BindingTarget>& out) const {
  auto it = by_key_.find(msg.routing_key);
  if (it == by_key_.end()) return;
  for (uint32_t pos : it->second) out.push_back(bindings()[pos].destination);
}

}  // namespace mqnode::broker
