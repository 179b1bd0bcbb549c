#include "broker/exchange/types.hpp"

namespace mqnode::broker {

void FanoutExchange::route(const Message&, std::vector<BindingTarget>& out) const {
  for (const auto& b : bindings()) out.push_back(b.destination);
}

}  // namespace mqnode::broker
