#include "broker/exchange/types.hpp"
#include "broker/routing.hpp"

namespace mqnode::broker {

void HeadersExchange::route(const Message& msg, std::vector<BindingTarget>& out) const {
  if (bindings().empty()) return;
  // Decoded once per message, only for this exchange type. A publisher whose properties
  // do not decode was already refused at publish time.
  auto props = msg.decode_properties();
  const amqp::FieldTable* headers = props.headers ? &*props.headers : nullptr;
  for (const auto& b : bindings())
    if (headers_match(b.arguments, headers)) out.push_back(b.destination);
}

}  // namespace mqnode::broker
