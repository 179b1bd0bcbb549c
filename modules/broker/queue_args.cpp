#include "broker/queue_args.hpp"

#include <array>
#include <string_view>

#include <fmt/format.h>

#include "amqp/reply_code.hpp"

namespace mqnode::broker {

namespace {
// Arguments RabbitMQ 3.10 compares on redeclare.
constexpr std::array<std::string_view, 12> kComparedArgs = {
    "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    "x-max-length", "x-max-length-bytes", "x-max-priority", "x-overflow",
    "x-queue-mode", "x-queue-type", "x-single-active-consumer", "x-queue-master-locator"};

// Implemented with the durability issue; refused until then so that nobody relies on a
// limit or TTL that is not enforced.
constexpr std::array<std::string_view, 9> kNotYet = {
    "x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-overflow",
    "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority", "x-single-active-consumer"};

[[noreturn]] void refuse(const std::string& text) {
  throw amqp::ChannelError(amqp::ChannelReplyCode::PreconditionFailed, text);
}
}  // namespace

QueueArgs parse_queue_args(const amqp::FieldTable& args, const std::string& queue, const std::string& vhost) {
  QueueArgs out;
  for (const auto& [key, value] : args.entries) {
    if (key == "x-queue-type") {
      const auto* s = value.as_string();
      if (!s) refuse(fmt::format("invalid arg 'x-queue-type' for queue '{}' in vhost '{}': expected a string", queue, vhost));
      if (*s != "classic")
        refuse(fmt::format("invalid arg 'x-queue-type' for queue '{}' in vhost '{}': queue type '{}' is not supported by this node (only 'classic')", queue, vhost, *s));
      out.queue_type = *s;
    } else if (key == "x-queue-mode") {
      const auto* s = value.as_string();
      if (!s || (*s != "default" && *s != "lazy"))
        refuse(fmt::format("invalid arg 'x-queue-mode' for queue '{}' in vhost '{}': expected \"default\" or \"lazy\"", queue, vhost));
      out.queue_mode = *s;
    } else {
      for (auto k : kNotYet)
        if (key == k)
          refuse(fmt::format("arg '{}' for queue '{}' in vhost '{}' is not supported by this mqnode version yet", key, queue, vhost));
    }
  }
  return out;
}

std::string inequivalent_queue_arg(const amqp::FieldTable& declared, const amqp::FieldTable& requested) {
  for (auto key : kComparedArgs) {
    const auto* a = declared.find(key);
    const auto* b = requested.find(key);
    if (!a && !b) continue;
    if (!a || !b || !(*a == *b)) {
      auto ia = a ? a->as_int() : std::nullopt, ib = b ? b->as_int() : std::nullopt;
      if (ia && ib && *ia == *ib) continue;  // same number, different integer width
      return std::string(key);
    }
  }
  return {};
}

}  // namespace mqnode::broker
