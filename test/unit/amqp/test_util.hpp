// Helpers shared by the amqp unit tests: hex byte strings, the spec JSON, a byte builder
// that is independent of amqp::Writer (so known-bytes tests do not check Writer against
// itself).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "spec_json.hpp"

namespace mqnode::amqp::test {

using Bytes = std::vector<uint8_t>;

// "0a 00 1e 'abc'": hex octets, whitespace ignored, '...' adds the ASCII bytes.
inline Bytes hex(std::string_view s) {
  Bytes out;
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == ' ' || c == '\n' || c == '\t') {
      ++i;
    } else if (c == '\'') {
      const std::size_t end = s.find('\'', i + 1);
      if (end == std::string_view::npos) throw std::invalid_argument("unterminated quote");
      for (std::size_t j = i + 1; j < end; ++j) out.push_back(static_cast<uint8_t>(s[j]));
      i = end + 1;
    } else {
      if (i + 1 >= s.size()) throw std::invalid_argument("odd hex digit count");
      out.push_back(static_cast<uint8_t>(std::stoi(std::string(s.substr(i, 2)), nullptr, 16)));
      i += 2;
    }
  }
  return out;
}

inline std::string to_hex(const Bytes& b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i) s += ' ';
    s += kDigits[b[i] >> 4];
    s += kDigits[b[i] & 15];
  }
  return s;
}

// Big-endian byte builder written independently of amqp::Writer.
struct Builder {
  Bytes b;
  Builder& u8(uint64_t v) { return put(v, 1); }
  Builder& u16(uint64_t v) { return put(v, 2); }
  Builder& u32(uint64_t v) { return put(v, 4); }
  Builder& u64(uint64_t v) { return put(v, 8); }
  Builder& raw(std::string_view s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Builder& raw(const Bytes& s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Builder& sstr(std::string_view s) { return u8(s.size()).raw(s); }
  Builder& lstr(std::string_view s) { return u32(s.size()).raw(s); }
  Builder& put(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
};

// The spec JSON (amqp-rabbitmq-0.9.1.json beside this file, compiled in).
inline const nlohmann::json& spec_json() {
  static const nlohmann::json j = nlohmann::json::parse(kSpecJson);
  return j;
}

inline std::string underscored(std::string s) {
  for (char& c : s) {
    if (c == '-') c = '_';
  }
  return s;
}

}  // namespace mqnode::amqp::test
