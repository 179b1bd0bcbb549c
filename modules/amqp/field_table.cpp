// FieldTable lookups and FieldValue accessors. Encoding/decoding lives in codec.cpp.
#include "amqp/field_table.hpp"

#include <type_traits>

namespace mqnode::amqp {

const FieldValue* FieldTable::find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

FieldValue* FieldTable::find(std::string_view key) {
  for (auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

void FieldTable::set(std::string key, FieldValue v) {
  if (FieldValue* existing = find(key)) {
    *existing = std::move(v);
    return;
  }
  entries.emplace_back(std::move(key), std::move(v));
}

char FieldValue::tag() const {
  // Same order as the Variant alternatives.
  static constexpr char kTags[] = "tbBsuIilfdDSxATFV";
  static_assert(sizeof(kTags) - 1 == std::variant_size_v<Variant>);
  return kTags[v.index()];
}

const std::string* FieldValue::as_string() const {
  if (const auto* s = std::get_if<std::string>(&v)) return s;
  if (const auto* b = std::get_if<ByteArray>(&v)) return &b->bytes;
  return nullptr;
}

std::optional<int64_t> FieldValue::as_int() const {
  return std::visit(
      [](const auto& x) -> std::optional<int64_t> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          return static_cast<int64_t>(x);
        } else {
          return std::nullopt;
        }
      },
      v);
}

std::optional<bool> FieldValue::as_bool() const {
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  return std::nullopt;
}

const FieldTable* FieldValue::as_table() const { return std::get_if<FieldTable>(&v); }
const FieldArray* FieldValue::as_array() const { return std::get_if<FieldArray>(&v); }

}  // namespace mqnode::amqp
