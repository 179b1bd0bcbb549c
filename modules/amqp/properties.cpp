// Basic content properties: flag word(s) then the present properties in flag order
// (spec §4.2.6.1, class basic). Trailing bytes after the last present property are a
// DecodeError, as in RabbitMQ's generated decoder.
#include "amqp/properties.hpp"

#include "amqp/codec.hpp"

namespace mqnode::amqp {

namespace {

constexpr uint16_t kContentType = 1u << 15;
constexpr uint16_t kContentEncoding = 1u << 14;
constexpr uint16_t kHeaders = 1u << 13;
constexpr uint16_t kDeliveryMode = 1u << 12;
constexpr uint16_t kPriority = 1u << 11;
constexpr uint16_t kCorrelationId = 1u << 10;
constexpr uint16_t kReplyTo = 1u << 9;
constexpr uint16_t kExpiration = 1u << 8;
constexpr uint16_t kMessageId = 1u << 7;
constexpr uint16_t kTimestamp = 1u << 6;
constexpr uint16_t kType = 1u << 5;
constexpr uint16_t kUserId = 1u << 4;
constexpr uint16_t kAppId = 1u << 3;
constexpr uint16_t kClusterId = 1u << 2;
constexpr uint16_t kUnused = 1u << 1;
constexpr uint16_t kContinuation = 1u << 0;

uint16_t read_flags(Reader& r) {
  const uint16_t flags = r.u16();
  if (flags & kUnused) throw DecodeError("property flag bit 1 set; basic has 14 properties");
  // Further flag words may only continue the chain; they cannot name a 15th property.
  for (uint16_t more = flags; more & kContinuation;) {
    more = r.u16();
    if (more & ~kContinuation) throw DecodeError("property flags beyond the 14 basic properties");
  }
  return flags;
}

void expect_end(const Reader& r) {
  if (r.remaining() != 0) {
    throw DecodeError(std::to_string(r.remaining()) + " trailing bytes after basic properties");
  }
}

}  // namespace

BasicProperties decode_properties(std::span<const uint8_t> raw) {
  Reader r(raw);
  const uint16_t flags = read_flags(r);
  BasicProperties p;
  if (flags & kContentType) p.content_type = r.shortstr();
  if (flags & kContentEncoding) p.content_encoding = r.shortstr();
  if (flags & kHeaders) p.headers = r.table();
  if (flags & kDeliveryMode) p.delivery_mode = r.u8();
  if (flags & kPriority) p.priority = r.u8();
  if (flags & kCorrelationId) p.correlation_id = r.shortstr();
  if (flags & kReplyTo) p.reply_to = r.shortstr();
  if (flags & kExpiration) p.expiration = r.shortstr();
  if (flags & kMessageId) p.message_id = r.shortstr();
  if (flags & kTimestamp) p.timestamp = r.u64();
  if (flags & kType) p.type = r.shortstr();
  if (flags & kUserId) p.user_id = r.shortstr();
  if (flags & kAppId) p.app_id = r.shortstr();
  if (flags & kClusterId) p.cluster_id = r.shortstr();
  expect_end(r);
  return p;
}

PropertySummary validate_properties(std::span<const uint8_t> raw) {
  PropertySummary sum;
  Reader r(raw);
  const uint16_t flags = read_flags(r);
  const auto shortstr = [&r] { r.bytes(r.u8()); };
  if (flags & kContentType) shortstr();
  if (flags & kContentEncoding) shortstr();
  if (flags & kHeaders) r.skip_table();
  if (flags & kDeliveryMode) sum.delivery_mode = r.u8();
  if (flags & kPriority) sum.priority = r.u8();
  if (flags & kCorrelationId) shortstr();
  if (flags & kReplyTo) shortstr();
  if (flags & kExpiration) {
    auto b = r.bytes(r.u8());
    sum.has_expiration = true;
    sum.expiration = std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
  }
  if (flags & kMessageId) shortstr();
  if (flags & kTimestamp) r.bytes(8);
  if (flags & kType) shortstr();
  if (flags & kUserId) shortstr();
  if (flags & kAppId) shortstr();
  if (flags & kClusterId) shortstr();
  expect_end(r);
  return sum;
}

void encode_properties(const BasicProperties& p, std::vector<uint8_t>& out) {
  const std::size_t start = out.size();
  Writer w(out);
  uint16_t flags = 0;
  if (p.content_type) flags |= kContentType;
  if (p.content_encoding) flags |= kContentEncoding;
  if (p.headers) flags |= kHeaders;
  if (p.delivery_mode) flags |= kDeliveryMode;
  if (p.priority) flags |= kPriority;
  if (p.correlation_id) flags |= kCorrelationId;
  if (p.reply_to) flags |= kReplyTo;
  if (p.expiration) flags |= kExpiration;
  if (p.message_id) flags |= kMessageId;
  if (p.timestamp) flags |= kTimestamp;
  if (p.type) flags |= kType;
  if (p.user_id) flags |= kUserId;
  if (p.app_id) flags |= kAppId;
  if (p.cluster_id) flags |= kClusterId;
  try {
    w.u16(flags);
    if (p.content_type) w.shortstr(*p.content_type);
    if (p.content_encoding) w.shortstr(*p.content_encoding);
    if (p.headers) w.table(*p.headers);
    if (p.delivery_mode) w.u8(*p.delivery_mode);
    if (p.priority) w.u8(*p.priority);
    if (p.correlation_id) w.shortstr(*p.correlation_id);
    if (p.reply_to) w.shortstr(*p.reply_to);
    if (p.expiration) w.shortstr(*p.expiration);
    if (p.message_id) w.shortstr(*p.message_id);
    if (p.timestamp) w.u64(*p.timestamp);
    if (p.type) w.shortstr(*p.type);
    if (p.user_id) w.shortstr(*p.user_id);
    if (p.app_id) w.shortstr(*p.app_id);
    if (p.cluster_id) w.shortstr(*p.cluster_id);
  } catch (...) {
    out.resize(start);  // a shortstr over 255 bytes: leave <out> as it was
    throw;
  }
}

}  // namespace mqnode::amqp
