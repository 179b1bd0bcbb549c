// Reply codes and their names against the spec's constants.
#include <doctest/doctest.h>

#include <map>

#include "amqp/reply_code.hpp"
#include "test_util.hpp"

using namespace mqnode::amqp;
using namespace mqnode::amqp::test;

namespace {

struct Constant {
  std::string name;  // FRAME_ERROR
  std::string cls;   // soft-error | hard-error
};

std::map<int, Constant> spec_constants() {
  std::map<int, Constant> out;
  for (const auto& c : spec_json()["constants"]) {
    std::string name = underscored(c["name"].get<std::string>());
    out[c["value"].get<int>()] = {name, c.value("class", "")};
  }
  return out;
}

}  // namespace

TEST_CASE("channel reply codes are the spec's soft errors") {
  const auto spec = spec_constants();
  const ChannelReplyCode all[] = {
      ChannelReplyCode::ContentTooLarge, ChannelReplyCode::NoRoute,
      ChannelReplyCode::NoConsumers,     ChannelReplyCode::AccessRefused,
      ChannelReplyCode::NotFound,        ChannelReplyCode::ResourceLocked,
      ChannelReplyCode::PreconditionFailed};
  for (const auto c : all) {
    const int v = static_cast<int>(c);
    CAPTURE(v);
    REQUIRE(spec.count(v));
    CHECK(spec.at(v).name == reply_text(c));
    CHECK(spec.at(v).cls == "soft-error");
  }
}

TEST_CASE("connection reply codes are the spec's hard errors") {
  const auto spec = spec_constants();
  const ConnectionReplyCode all[] = {
      ConnectionReplyCode::ConnectionForced, ConnectionReplyCode::InvalidPath,
      ConnectionReplyCode::AccessRefused,    ConnectionReplyCode::FrameError,
      ConnectionReplyCode::SyntaxError,      ConnectionReplyCode::CommandInvalid,
      ConnectionReplyCode::ChannelError,     ConnectionReplyCode::UnexpectedFrame,
      ConnectionReplyCode::ResourceError,    ConnectionReplyCode::NotAllowed,
      ConnectionReplyCode::NotImplemented,   ConnectionReplyCode::InternalError};
  for (const auto c : all) {
    const int v = static_cast<int>(c);
    CAPTURE(v);
    REQUIRE(spec.count(v));
    CHECK(spec.at(v).name == reply_text(c));
    // 403 is a soft error in the spec; RabbitMQ also closes the connection with it when
    // authentication fails (authentication_failure_close).
    if (c != ConnectionReplyCode::AccessRefused) CHECK(spec.at(v).cls == "hard-error");
  }
  CHECK(kReplySuccess == 200);
  CHECK(std::string(reply_text(static_cast<ConnectionReplyCode>(999))) == "UNKNOWN");
}

TEST_CASE("ChannelError and ConnectionError carry code, text and method") {
  const ChannelError e(ChannelReplyCode::NotFound, "no exchange 'x' in vhost '/'", 40, 10);
  CHECK(e.code == ChannelReplyCode::NotFound);
  CHECK(std::string(e.what()) == "no exchange 'x' in vhost '/'");
  CHECK(e.class_id == 40);
  CHECK(e.method_id == 10);
  const ConnectionError c(ConnectionReplyCode::FrameError, "bad");
  CHECK(c.class_id == 0);
}
