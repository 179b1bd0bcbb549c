#include "broker/exchange/exchange.hpp"

#include <algorithm>

#include "broker/exchange/types.hpp"

namespace mqnode::broker {

std::string Exchange::alternate_exchange() const {
  const auto* v = def_.arguments.find("alternate-exchange");
  const auto* s = v ? v->as_string() : nullptr;
  return s ? *s : policy_alternate_.value_or(std::string());
}

bool Exchange::bind(Binding b) {
  if (std::find(bindings_.begin(), bindings_.end(), b) != bindings_.end()) return false;
  bindings_.push_back(std::move(b));
  reindex();
  return true;
}

bool Exchange::unbind(const Binding& b) {
  auto it = std::find(bindings_.begin(), bindings_.end(), b);
  if (it == bindings_.end()) return false;
  bindings_.erase(it);
  reindex();
  return true;
}

std::size_t Exchange::unbind_all(const BindingTarget& dest) {
  auto n = std::erase_if(bindings_, [&](const Binding& b) { return b.destination == dest; });
  if (n) reindex();
  return n;
}

bool is_exchange_type(std::string_view type) {
  return std::find(std::begin(kExchangeTypes), std::end(kExchangeTypes), type) != std::end(kExchangeTypes);
}

ExchangePtr make_exchange(ExchangeDefinition def) {
  if (def.type == "direct") return std::make_unique<DirectExchange>(std::move(def));
  if (def.type == "fanout") return std::make_unique<FanoutExchange>(std::move(def));
  if (def.type == "topic") return std::make_unique<TopicExchange>(std::move(def));
  return std::make_unique<HeadersExchange>(std::move(def));
}

}  // namespace mqnode::broker
