#include "broker/exchange/types.hpp"

namespace mqnode::broker {

void TopicExchange::indexed(uint32_t pos) { trie_.insert(bindings()[pos].key, pos); }

void TopicExchange::unindexing(uint32_t pos) { trie_.erase(bindings()[pos].key, pos); }

void TopicExchange::moved(uint32_t from, uint32_t to) { trie_.renumber(bindings()[to].key, from, to); }

void TopicExchange::route(const Message& msg, std::vector<BindingTarget>& out) const {
  std::vector<uint32_t> matched;
  trie_.match(msg.routing_key, matched);
  for (uint32_t pos : matched) out.push_back(bindings()[pos].destination);
}

}  // namespace mqnode::broker
