#include "broker/exchange/types.hpp"
#include "broker/routing.hpp"

namespace mqnode::broker {

void TopicExchange::route(const Message& msg, std::vector<BindingTarget>& out) const {
  for (const auto& b : bindings_)
    if (topic_matches(b.key, msg.routing_key)) out.push_back(b.destination);
}

}  // namespace mqnode::broker
