// The one place where queue.declare arguments ("x-...") are read and checked. Values of
// the wrong type or range are refused with the text RabbitMQ uses; what this build does
// not implement (quorum and stream queue types) is refused rather than silently ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "amqp/field_table.hpp"

namespace mqnode::broker {

enum class Overflow { DropHead, RejectPublish, RejectPublishDlx };

struct QueueArgs {
  std::string queue_type = "classic";     // x-queue-type
  std::optional<std::string> queue_mode;  // x-queue-mode ("default" | "lazy"), a storage hint
  std::optional<int64_t> message_ttl_ms;  // x-message-ttl
  std::optional<int64_t> expires_ms;      // x-expires: delete when unused this long
  std::optional<int64_t> max_length;      // x-max-length (ready messages)
  std::optional<int64_t> max_length_bytes;  // x-max-length-bytes (ready message bodies)
  Overflow overflow = Overflow::DropHead;   // x-overflow
  bool overflow_set = false;                // x-overflow was given (policies fill it otherwise)
  std::optional<std::string> dead_letter_exchange;     // x-dead-letter-exchange
  std::optional<std::string> dead_letter_routing_key;  // x-dead-letter-routing-key
  std::optional<int64_t> max_priority;        // x-max-priority (1..255)
  bool single_active_consumer = false;        // x-single-active-consumer
};

// Throws amqp::ChannelError 406 PRECONDITION_FAILED naming the argument.
QueueArgs parse_queue_args(const amqp::FieldTable& args, const std::string& queue, const std::string& vhost);

// RabbitMQ refuses a redeclare whose arguments differ in the keys it knows (406). Returns its
// "inequivalent arg ..." text for the first difference, or empty when equivalent.
std::string inequivalent_queue_arg(const amqp::FieldTable& declared, const amqp::FieldTable& requested,
                                   const std::string& queue, const std::string& vhost);

}  // namespace mqnode::broker
