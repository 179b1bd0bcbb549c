// AMQP field tables and arrays with every type tag RabbitMQ reads and writes
// (t b B s u I i l f d D S x A T F V). Values keep their tag so a table decoded and
// encoded again is byte-identical: clients' headers round-trip unchanged.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace mqnode::amqp {

struct FieldValue;

struct Decimal {
  uint8_t scale = 0;
  uint32_t value = 0;
  bool operator==(const Decimal&) const = default;
};
struct Timestamp {
  uint64_t seconds = 0;
  bool operator==(const Timestamp&) const = default;
};
struct ByteArray {  // 'x'
  std::string bytes;
  bool operator==(const ByteArray&) const = default;
};
struct Void {  // 'V'
  bool operator==(const Void&) const = default;
};

using FieldArray = std::vector<FieldValue>;

// Ordered, duplicates preserved as received (the spec does not forbid them and we must not
// reorder what we pass through).
struct FieldTable {
  std::vector<std::pair<std::string, FieldValue>> entries;

  const FieldValue* find(std::string_view key) const;
  FieldValue* find(std::string_view key);
  void set(std::string key, FieldValue v);  // replace the first entry with key, or append
  bool empty() const;
  bool operator==(const FieldTable&) const;
};

struct FieldValue {
  // Alternatives in tag order: t b B s u I i l f d D S x A T F V
  using Variant = std::variant<bool, int8_t, uint8_t, int16_t, uint16_t, int32_t, uint32_t,
                               int64_t, float, double, Decimal, std::string, ByteArray,
                               FieldArray, Timestamp, FieldTable, Void>;
  Variant v;

  FieldValue() : v(Void{}) {}
  template <typename T>
    requires std::is_constructible_v<Variant, T&&>
  FieldValue(T&& x) : v(std::forward<T>(x)) {}
  FieldValue(const char* s) : v(std::string(s)) {}

  char tag() const;
  bool operator==(const FieldValue& o) const { return v == o.v; }

  // Convenience accessors used by the broker for arguments (x-match, x-max-length, ...).
  const std::string* as_string() const;  // 'S' (and 'x' bytes)
  std::optional<int64_t> as_int() const; // any integer tag
  std::optional<bool> as_bool() const;
  const FieldTable* as_table() const;
  const FieldArray* as_array() const;
};

// Defined here, not in the class body: FieldValue must be complete (clang instantiates eagerly).
inline bool FieldTable::empty() const { return entries.empty(); }
inline bool FieldTable::operator==(const FieldTable& o) const { return entries == o.entries; }

}  // namespace mqnode::amqp
