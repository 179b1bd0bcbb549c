// AMQP reply codes (spec §1.1 constants) split by scope: a channel exception closes the
// channel, a connection exception closes the connection (spec §4.2.3, "soft"/"hard").
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace mqnode::amqp {

enum class ChannelReplyCode : uint16_t {
  ContentTooLarge = 311,
  NoRoute = 312,
  NoConsumers = 313,
  AccessRefused = 403,
  NotFound = 404,
  ResourceLocked = 405,
  PreconditionFailed = 406,
};

enum class ConnectionReplyCode : uint16_t {
  ConnectionForced = 320,
  InvalidPath = 402,
  AccessRefused = 403,  // login refused (authentication_failure_close)
  FrameError = 501,
  SyntaxError = 502,
  CommandInvalid = 503,
  ChannelError = 504,
  UnexpectedFrame = 505,
  ResourceError = 506,
  NotAllowed = 530,
  NotImplemented = 540,
  InternalError = 541,
};

inline constexpr uint16_t kReplySuccess = 200;

const char* reply_text(ChannelReplyCode c);     // "NOT_FOUND", ...
const char* reply_text(ConnectionReplyCode c);  // "FRAME_ERROR", ...

// Thrown by method handlers; the connection's single catch site turns them into
// channel.close / connection.close with <class_id>/<method_id> of the failing method.
struct ChannelError : std::runtime_error {
  ChannelError(ChannelReplyCode c, std::string text, uint16_t cls = 0, uint16_t meth = 0)
      : std::runtime_error(std::move(text)), code(c), class_id(cls), method_id(meth) {}
  ChannelReplyCode code;
  uint16_t class_id;
  uint16_t method_id;
};

struct ConnectionError : std::runtime_error {
  ConnectionError(ConnectionReplyCode c, std::string text, uint16_t cls = 0, uint16_t meth = 0)
      : std::runtime_error(std::move(text)), code(c), class_id(cls), method_id(meth) {}
  ConnectionReplyCode code;
  uint16_t class_id;
  uint16_t method_id;
};

}  // namespace mqnode::amqp
