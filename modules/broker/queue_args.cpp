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

[[noreturn]] void refuse(const std::string& text) {
  throw amqp::ChannelError(amqp::ChannelReplyCode::PreconditionFailed, text);
}
}  // namespace

const char* type_name(const amqp::FieldValue& v);

QueueArgs parse_queue_args(const amqp::FieldTable& args, const std::string& queue, const std::string& vhost) {
  QueueArgs out;
  // RabbitMQ's rabbit_amqqueue:check_*_arg texts: "invalid arg 'K' for queue 'Q' in vhost
  // 'V': {value_negative,-1}" and the like.
  auto invalid = [&](const std::string& key, const std::string& why) {
    refuse(fmt::format("invalid arg '{}' for queue '{}' in vhost '{}': {}", key, queue, vhost, why));
  };
  auto integer = [&](const std::string& key, const amqp::FieldValue& v, bool zero_ok) {
    auto i = v.as_bool() ? std::nullopt : v.as_int();
    if (!i) invalid(key, fmt::format("\"expected integer, got {}\"", type_name(v)));
    if (*i < 0) invalid(key, fmt::format("{{value_negative,{}}}", *i));
    if (*i == 0 && !zero_ok) invalid(key, "{value_zero,0}");
    return *i;
  };
  auto string = [&](const std::string& key, const amqp::FieldValue& v) {
    const auto* s = std::get_if<std::string>(&v.v);
    if (!s) invalid(key, fmt::format("{{unacceptable_type,{}}}", type_name(v)));
    return *s;
  };
  for (const auto& [key, value] : args.entries) {
    if (key == "x-message-ttl") {
      out.message_ttl_ms = integer(key, value, true);
    } else if (key == "x-expires") {
      out.expires_ms = integer(key, value, false);
    } else if (key == "x-max-length") {
      out.max_length = integer(key, value, true);
    } else if (key == "x-max-length-bytes") {
      out.max_length_bytes = integer(key, value, true);
    } else if (key == "x-overflow") {
      auto v = string(key, value);
      if (v == "drop-head") out.overflow = Overflow::DropHead;
      else if (v == "reject-publish") out.overflow = Overflow::RejectPublish;
      else if (v == "reject-publish-dlx") out.overflow = Overflow::RejectPublishDlx;
      else invalid(key, fmt::format("{{invalid_value,<<\"{}\">>}}", v));
      out.overflow_set = true;
    } else if (key == "x-dead-letter-exchange") {
      out.dead_letter_exchange = string(key, value);
    } else if (key == "x-dead-letter-routing-key") {
      out.dead_letter_routing_key = string(key, value);
    } else if (key == "x-max-priority") {
      auto p = integer(key, value, false);
      if (p > 255) invalid(key, fmt::format("{{value_too_large,{},255}}", p));
      out.max_priority = p;
    } else if (key == "x-single-active-consumer") {
      auto b = value.as_bool();
      if (!b) invalid(key, fmt::format("\"expected boolean, got {}\"", type_name(value)));
      out.single_active_consumer = *b;
    } else if (key == "x-queue-type") {
      const auto* s = value.as_string();
      if (!s) refuse(fmt::format("invalid arg 'x-queue-type' for queue '{}' in vhost '{}': expected a string", queue, vhost));
      // 'quorum' is taken (clients declare it and depend on it) as a classic queue that is
      // not replicated yet; the catalog logs a warning naming the queue.
      if (*s != "classic" && *s != "quorum")
        refuse(fmt::format("invalid arg 'x-queue-type' for queue '{}' in vhost '{}': queue type '{}' is not supported by this node (only 'classic', and 'quorum' as an unreplicated classic queue)", queue, vhost, *s));
      out.queue_type = *s;
    } else if (key == "x-queue-mode") {
      const auto* s = value.as_string();
      if (!s || (*s != "default" && *s != "lazy"))
        refuse(fmt::format("invalid arg 'x-queue-mode' for queue '{}' in vhost '{}': expected \"default\" or \"lazy\"", queue, vhost));
      out.queue_mode = *s;
    }
  }
  return out;
}

namespace {
std::string plain(const amqp::FieldValue& v);
}

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

namespace {
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
