#include "mgmt/json_table.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "amqp/codec.hpp"
#include "mgmt/overload.hpp"

namespace mqnode::mgmt {

nlohmann::json value_to_json(const amqp::FieldValue& v) {
  return std::visit(
      Overload{[](bool b) -> nlohmann::json { return b; },
               [](const amqp::Decimal& d) -> nlohmann::json {
                 double x = d.value;
                 for (int i = 0; i < d.scale; ++i) x /= 10;
                 return x;
               },
               [](const std::string& s) -> nlohmann::json { return s; },
               [](const amqp::ByteArray& b) -> nlohmann::json { return b.bytes; },
               [](const amqp::FieldArray& a) -> nlohmann::json {
                 auto out = nlohmann::json::array();
                 for (const auto& e : a) out.push_back(value_to_json(e));
                 return out;
               },
               [](const amqp::Timestamp& t) -> nlohmann::json { return t.seconds; },
               [](const amqp::FieldTable& t) -> nlohmann::json { return table_to_json(t); },
               [](const amqp::Void&) -> nlohmann::json { return nullptr; },
               [](auto n) -> nlohmann::json { return n; }},
      v.v);
}

nlohmann::json table_to_json(const amqp::FieldTable& t) {
  auto out = nlohmann::json::object();
  for (const auto& [k, v] : t.entries) out[k] = value_to_json(v);
  return out;
}

amqp::FieldValue json_to_value(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::boolean: return j.get<bool>();
    case nlohmann::json::value_t::number_integer: return j.get<int64_t>();
    case nlohmann::json::value_t::number_unsigned: {
      auto u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return static_cast<double>(u);
      return static_cast<int64_t>(u);
    }
    case nlohmann::json::value_t::number_float: return j.get<double>();
    case nlohmann::json::value_t::string: return j.get<std::string>();
    case nlohmann::json::value_t::object: return json_to_table(j, "table");
    case nlohmann::json::value_t::array: {
      amqp::FieldArray a;
      for (const auto& e : j) a.push_back(json_to_value(e));
      return a;
    }
    default: return amqp::Void{};
  }
}

amqp::FieldTable json_to_table(const nlohmann::json& j, const std::string& what) {
  amqp::FieldTable t;
  if (j.is_null()) return t;
  if (!j.is_object()) throw std::invalid_argument(fmt::format("{}: expected a JSON object, got {}", what, j.dump()));
  for (const auto& [k, v] : j.items()) t.entries.emplace_back(k, json_to_value(v));
  return t;
}

nlohmann::json properties_to_json(const amqp::BasicProperties& p) {
  auto out = nlohmann::json::object();
  auto put = [&out](const char* key, const auto& opt) {
    if (opt) out[key] = *opt;
  };
  put("content_type", p.content_type);
  put("content_encoding", p.content_encoding);
  if (p.headers) out["headers"] = table_to_json(*p.headers);
  put("delivery_mode", p.delivery_mode);
  put("priority", p.priority);
  put("correlation_id", p.correlation_id);
  put("reply_to", p.reply_to);
  put("expiration", p.expiration);
  put("message_id", p.message_id);
  put("timestamp", p.timestamp);
  put("type", p.type);
  put("user_id", p.user_id);
  put("app_id", p.app_id);
  put("cluster_id", p.cluster_id);
  return out;
}

amqp::BasicProperties json_to_properties(const nlohmann::json& j) {
  amqp::BasicProperties p;
  if (j.is_null() || (j.is_array() && j.empty())) return p;  // rabbitmqadmin sends [] for none
  if (!j.is_object()) throw std::invalid_argument("properties: expected a JSON object");
  auto str = [](const std::string& key, const nlohmann::json& v) {
    if (!v.is_string()) throw std::invalid_argument(fmt::format("properties.{}: expected a string", key));
    return v.get<std::string>();
  };
  auto num = [](const std::string& key, const nlohmann::json& v, int64_t max) {
    int64_t n = -1;
    if (v.is_number_integer()) n = v.get<int64_t>();
    else if (v.is_string()) try { n = std::stoll(v.get<std::string>()); } catch (const std::exception&) {}
    if (n < 0 || n > max)
      throw std::invalid_argument(fmt::format("properties.{}: expected an integer 0..{}, got {}", key, max, v.dump()));
    return n;
  };
  for (const auto& [k, v] : j.items()) {
    if (k == "content_type") p.content_type = str(k, v);
    else if (k == "content_encoding") p.content_encoding = str(k, v);
    else if (k == "headers") p.headers = json_to_table(v, "properties.headers");
    else if (k == "delivery_mode") p.delivery_mode = static_cast<uint8_t>(num(k, v, 2));
    else if (k == "priority") p.priority = static_cast<uint8_t>(num(k, v, 255));
    else if (k == "correlation_id") p.correlation_id = str(k, v);
    else if (k == "reply_to") p.reply_to = str(k, v);
    else if (k == "expiration") p.expiration = v.is_number_integer() ? std::to_string(v.get<int64_t>()) : str(k, v);
    else if (k == "message_id") p.message_id = str(k, v);
    else if (k == "timestamp") p.timestamp = static_cast<uint64_t>(num(k, v, INT64_MAX));
    else if (k == "type") p.type = str(k, v);
    else if (k == "user_id") p.user_id = str(k, v);
    else if (k == "app_id") p.app_id = str(k, v);
    else if (k == "cluster_id") p.cluster_id = str(k, v);
    else throw std::invalid_argument(fmt::format("properties: unknown property '{}'", k));
  }
  return p;
}

std::string table_digest(const amqp::FieldTable& t) {
  std::vector<uint8_t> bytes;
  amqp::Writer w(bytes);
  w.table(t);
  uint32_t h = 2166136261u;  // FNV-1a
  for (uint8_t b : bytes) h = (h ^ b) * 16777619u;
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  for (int i = 0; i < 6; ++i, h >>= 6) out += kAlphabet[h & 63];
  return out;
}

}  // namespace mqnode::mgmt

namespace mqnode::mgmt {

std::string base64_encode(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(n >> s) & 63];
  }
  if (i < in.size()) {
    uint32_t n = uint32_t(uint8_t(in[i])) << 16;
    if (i + 1 < in.size()) n |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<uint8_t>(s[i]);
    std::size_t n;  // continuation bytes
    if (c < 0x80) n = 0;
    else if ((c >> 5) == 6) n = 1;
    else if ((c >> 4) == 14) n = 2;
    else if ((c >> 3) == 30) n = 3;
    else return false;
    if (s.size() - i <= n) return false;
    uint32_t cp = n == 0 ? c : c & (0x3fu >> n);
    for (std::size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc >> 6) != 2) return false;
      cp = (cp << 6) | (cc & 0x3fu);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

}  // namespace mqnode::mgmt
