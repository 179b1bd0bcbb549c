#include "broker/exchange/exchange.hpp"

#include <algorithm>
#include <functional>
#include <type_traits>

#include "broker/exchange/types.hpp"

namespace mqnode::broker {

namespace {
std::size_t mix(std::size_t h, std::size_t v) { return h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)); }

// Consistent with FieldValue's ==: equal values hash equal (std::hash gives +0.0 and -0.0
// the same hash). Nested tables and arrays contribute only their size: binding arguments
// that differ only deep inside are rare, and equality still tells them apart.
std::size_t hash_value(const amqp::FieldValue& value) {
  auto h = std::visit(
      [](const auto& x) -> std::size_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_arithmetic_v<T> || std::is_same_v<T, std::string>) return std::hash<T>{}(x);
        else if constexpr (std::is_same_v<T, amqp::ByteArray>) return std::hash<std::string>{}(x.bytes);
        else if constexpr (std::is_same_v<T, amqp::Decimal>) return mix(x.scale, x.value);
        else if constexpr (std::is_same_v<T, amqp::Timestamp>) return std::hash<uint64_t>{}(x.seconds);
        else if constexpr (std::is_same_v<T, amqp::FieldTable>) return x.entries.size();
        else if constexpr (std::is_same_v<T, amqp::FieldArray>) return x.size();
        else return 0;  // Void
      },
      value.v);
  return mix(h, value.v.index());
}
}  // namespace

std::size_t BindingTargetHash::operator()(const BindingTarget& t) const {
  return mix(std::hash<const void*>{}(t.queue), std::hash<const void*>{}(t.exchange));
}

std::size_t Exchange::IdentityHash::operator()(const Binding& b) const {
  std::size_t h = mix(BindingTargetHash{}(b.destination), std::hash<std::string>{}(b.key));
  for (const auto& [key, value] : b.arguments.entries) h = mix(mix(h, std::hash<std::string>{}(key)), hash_value(value));
  return h;
}

Exchange::Exchange(ExchangeDefinition def)
    : def_(std::move(def)), identity_(0, IdentityHash{&bindings_}, IdentityEqual{&bindings_}) {}

std::string Exchange::alternate_exchange() const {
  const auto* v = def_.arguments.find("alternate-exchange");
  const auto* s = v ? v->as_string() : nullptr;
  return s ? *s : policy_alternate_.value_or(std::string());
}

bool Exchange::bind(Binding b) {
  if (identity_.find(b) != identity_.end()) return false;
  auto pos = static_cast<uint32_t>(bindings_.size());
  bindings_.push_back(std::move(b));
  identity_.insert(pos);
  destination_slots_.insert(by_destination_[bindings_[pos].destination], pos);
  indexed(pos);
  return true;
}

bool Exchange::unbind(const Binding& b) {
  auto it = identity_.find(b);
  if (it == identity_.end()) return false;
  erase_at(*it);
  return true;
}

std::size_t Exchange::unbind_all(const BindingTarget& dest) {
  std::size_t n = 0;
  // Each removal may renumber this destination's other bindings, so take the set afresh.
  for (auto it = by_destination_.find(dest); it != by_destination_.end(); it = by_destination_.find(dest)) {
    erase_at(it->second.back());
    ++n;
  }
  return n;
}

// Swap-and-pop: the last binding fills the hole, so every index renumbers one position.
void Exchange::erase_at(uint32_t pos) {
  auto last = static_cast<uint32_t>(bindings_.size() - 1);
  unindexing(pos);
  identity_.erase(pos);
  auto dest = by_destination_.find(bindings_[pos].destination);
  destination_slots_.erase(dest->second, pos);
  if (dest->second.empty()) by_destination_.erase(dest);
  if (pos != last) {
    auto node = identity_.extract(last);  // hashed by the binding, which is still at <last>
    bindings_[pos] = std::move(bindings_[last]);
    node.value() = pos;
    identity_.insert(std::move(node));
    destination_slots_.renumber(by_destination_.find(bindings_[pos].destination)->second, last, pos);
    moved(last, pos);
  }
  bindings_.pop_back();
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
