// Message counters in RabbitMQ's message_stats names, kept per node, channel, queue and
// exchange. The hot path only increments them; the management module samples them on a
// timer into rates (RabbitMQ's *_details).
#pragma once

#include <cstdint>

namespace mqnode::broker {

// Each field once, in RabbitMQ's name; the list feeds the management API's message_stats.
#define MQ_MESSAGE_STATS(C) \
  C(publish)                \
  C(publish_in)             \
  C(publish_out)            \
  C(confirm)                \
  C(deliver)                \
  C(deliver_no_ack)         \
  C(get)                    \
  C(get_no_ack)             \
  C(ack)                    \
  C(redeliver)              \
  C(return_unroutable)

struct MessageStats {
#define MQ_MESSAGE_COUNTER(n) uint64_t n = 0;
  MQ_MESSAGE_STATS(MQ_MESSAGE_COUNTER)
#undef MQ_MESSAGE_COUNTER
};

}  // namespace mqnode::broker
