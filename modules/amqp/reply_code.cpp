// Reply-code names as they appear in close reply-text (spec §1.1 constants, RabbitMQ style).
#include "amqp/reply_code.hpp"

namespace mqnode::amqp {

const char* reply_text(ChannelReplyCode c) {
  switch (c) {
    case ChannelReplyCode::ContentTooLarge: return "CONTENT_TOO_LARGE";
    case ChannelReplyCode::NoRoute: return "NO_ROUTE";
    case ChannelReplyCode::NoConsumers: return "NO_CONSUMERS";
    case ChannelReplyCode::AccessRefused: return "ACCESS_REFUSED";
    case ChannelReplyCode::NotFound: return "NOT_FOUND";
    case ChannelReplyCode::ResourceLocked: return "RESOURCE_LOCKED";
    case ChannelReplyCode::PreconditionFailed: return "PRECONDITION_FAILED";
  }
  return "UNKNOWN";
}

const char* reply_text(ConnectionReplyCode c) {
  switch (c) {
    case ConnectionReplyCode::ConnectionForced: return "CONNECTION_FORCED";
    case ConnectionReplyCode::InvalidPath: return "INVALID_PATH";
    case ConnectionReplyCode::AccessRefused: return "ACCESS_REFUSED";
    case ConnectionReplyCode::FrameError: return "FRAME_ERROR";
    case ConnectionReplyCode::SyntaxError: return "SYNTAX_ERROR";
    case ConnectionReplyCode::CommandInvalid: return "COMMAND_INVALID";
    case ConnectionReplyCode::ChannelError: return "CHANNEL_ERROR";
    case ConnectionReplyCode::UnexpectedFrame: return "UNEXPECTED_FRAME";
    case ConnectionReplyCode::ResourceError: return "RESOURCE_ERROR";
    case ConnectionReplyCode::NotAllowed: return "NOT_ALLOWED";
    case ConnectionReplyCode::NotImplemented: return "NOT_IMPLEMENTED";
    case ConnectionReplyCode::InternalError: return "INTERNAL_ERROR";
  }
  return "UNKNOWN";
}

}  // namespace mqnode::amqp
