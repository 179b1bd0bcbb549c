// Byte-level reader and writer for AMQP 0-9-1 wire types (spec §4.2.5, RabbitMQ errata).
// Pure: no I/O. A Reader throws DecodeError on any truncation or bad value; callers map it
// to 502 SYNTAX_ERROR (methods) or 501 FRAME_ERROR (frames).
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "amqp/field_table.hpp"

namespace mqnode::amqp {

struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct EncodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}

  uint8_t u8();
  uint16_t u16();
  uint32_t u32();
  uint64_t u64();
  std::string shortstr();
  std::string longstr();
  FieldTable table();
  FieldValue field_value();  // one type-tagged value (tag octet + payload)
  // Check and step over a table / one field value exactly as table() / field_value() would
  // read it (same DecodeErrors, same nesting cap) without building anything: no allocation.
  void skip_table();
  void skip_field_value();
  std::span<const uint8_t> bytes(std::size_t n);

  std::size_t remaining() const { return in_.size() - pos_; }
  std::size_t position() const { return pos_; }

  // Tables and arrays nested deeper than this are a DecodeError (stack safety).
  static constexpr int kMaxNesting = 100;

 private:
  void need(std::size_t n) const;
  Reader nested(std::size_t n);  // sub-reader over the next <n> bytes, one level deeper
  std::span<const uint8_t> in_;
  std::size_t pos_ = 0;
  int depth_ = 0;
};

// Appends to a caller-owned buffer, so frames can be built in place in a connection's
// output buffer without intermediate copies.
class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}

  void u8(uint8_t v);
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  void shortstr(std::string_view s);  // throws EncodeError if longer than 255
  void longstr(std::string_view s);
  void table(const FieldTable& t);
  void field_value(const FieldValue& v);
  void bytes(std::span<const uint8_t> b);
  void bytes(std::string_view b);

  std::size_t size() const { return out_.size(); }
  void patch_u32(std::size_t at, uint32_t v);  // overwrite a length written earlier
  std::vector<uint8_t>& buffer() { return out_; }

 private:
  void patch_length(std::size_t at);  // u32 at <at> := bytes written after it
  std::vector<uint8_t>& out_;
};

}  // namespace mqnode::amqp
