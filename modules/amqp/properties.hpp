// Basic content properties (spec §1.8 class basic, the 14 properties of the content header).
// Messages keep their properties as raw bytes; this decoder runs only when the broker has
// to look inside (headers exchange, user-id check, reply-to rewrite, expiration).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "amqp/field_table.hpp"

namespace mqnode::amqp {

struct BasicProperties {
  std::optional<std::string> content_type;      // flag bit 15
  std::optional<std::string> content_encoding;  // 14
  std::optional<FieldTable> headers;            // 13
  std::optional<uint8_t> delivery_mode;         // 12
  std::optional<uint8_t> priority;              // 11
  std::optional<std::string> correlation_id;    // 10
  std::optional<std::string> reply_to;          // 9
  std::optional<std::string> expiration;        // 8
  std::optional<std::string> message_id;        // 7
  std::optional<uint64_t> timestamp;            // 6
  std::optional<std::string> type;              // 5
  std::optional<std::string> user_id;           // 4
  std::optional<std::string> app_id;            // 3
  std::optional<std::string> cluster_id;        // 2

  bool operator==(const BasicProperties&) const = default;
};

// <raw> = property flags (with continuation bit 0 handled) + property list.
// Throws DecodeError when truncated, when flags have bits beyond those 14 set (bit 1, or
// any bit but the continuation bit in a continuation word), or on trailing bytes.
BasicProperties decode_properties(std::span<const uint8_t> raw);

// The few properties the broker acts on for every message.
struct PropertySummary {
  uint8_t delivery_mode = 0;  // 2 = persistent
  uint8_t priority = 0;
  bool has_expiration = false;
  std::string_view expiration;  // points into the raw bytes
};
// Throws exactly when decode_properties(<raw>) would, but builds nothing and never
// allocates: the check to run on every publish when the properties are only stored.
PropertySummary validate_properties(std::span<const uint8_t> raw);
// Appends flags + list (one flag word). Throws EncodeError on a shortstr over 255 bytes,
// leaving <out> unchanged.
void encode_properties(const BasicProperties& p, std::vector<uint8_t>& out);

}  // namespace mqnode::amqp
