// A published message as the broker keeps it: where it was published, its content header
// properties as the raw bytes the publisher sent (so they are delivered byte-identical
// and decoded only when the broker must look inside), and its body.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "amqp/properties.hpp"

namespace mqnode::broker {

struct Message {
  std::string exchange;
  std::string routing_key;
  std::vector<uint8_t> properties;  // property flags + property list (spec §4.2.6.1)
  std::vector<uint8_t> body;
  bool persistent = false;  // delivery_mode 2, read once at publish
  int64_t ttl_ms = -1;      // the "expiration" property in ms; -1 = none
  uint8_t priority = 0;     // the "priority" property

  amqp::BasicProperties decode_properties() const { return amqp::decode_properties(properties); }
};

using MessagePtr = std::shared_ptr<const Message>;

}  // namespace mqnode::broker
