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

namespace {
// rabbit_binary_parser's names for field types, as they appear in RabbitMQ's errors.
const char* type_name(const amqp::FieldValue& v) {
  switch (v.tag()) {
    case 't': return "bool";
    case 'b': return "byte";
    case 'B': return "unsignedbyte";
    case 's': return "short";
    case 'u': return "unsignedshort";
    case 'I': return "signedint";
    case 'i': return "unsignedint";
    case 'l': return "long";
    case 'f': return "float";
    case 'd': return "double";
    case 'D': return "decimal";
    case 'S': return "longstr";
    case 'x': return "binary";
    case 'A': return "array";
    case 'T': return "timestamp";
    case 'F': return "table";
    default: return "void";
  }
}

std::string plain(const amqp::FieldValue& v) {
  if (const auto* s = v.as_string()) return *s;
  if (auto i = v.as_int()) return std::to_string(*i);
  if (auto b = v.as_bool()) return *b ? "true" : "false";
  if (const auto* d = std::get_if<double>(&v.v)) return fmt::format("{}", *d);
  if (const auto* f = std::get_if<float>(&v.v)) return fmt::format("{}", *f);
  return "...";
}

std::string described(const amqp::FieldValue* v) {
  return v ? fmt::format("the value '{}' of type '{}'", plain(*v), type_name(*v)) : std::string("none");
}

bool equivalent(const amqp::FieldValue& a, const amqp::FieldValue& b) {
  auto ia = a.as_int(), ib = b.as_int();
  if (ia && ib && !a.as_bool() && !b.as_bool()) return *ia == *ib;  // same number, any integer width
  return a == b;
}
}  // namespace

std::string inequivalent_queue_arg(const amqp::FieldTable& declared, const amqp::FieldTable& requested,
                                   const std::string& queue, const std::string& vhost) {
  for (auto key : kComparedArgs) {
    const auto* have = declared.find(key);
    const auto* got = requested.find(key);
    if (!have && !got) continue;
    auto where = fmt::format("inequivalent arg '{}' for queue '{}' in vhost '{}'", key, queue, vhost);
    if (have && got) {
      if (!equivalent(*have, *got))
        return fmt::format("{}: received '{}' but current is '{}'", where, plain(*got), plain(*have));
    } else {
      return fmt::format("{}: received {} but current is {}", where, described(got), described(have));
    }
  }
  return {};
}

}  // namespace mqnode::broker
