#include "core/config.hpp"

#include <fmt/format.h>

namespace mqnode::core {

namespace {
// JSON pointer escaping (RFC 6901 §3).
std::string escape_token(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

const char* type_name(const nlohmann::json& v) {
  return v.type_name();
}
}  // namespace

std::string describe(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return fmt::format("{} {}", type_name(v), s);
}

ConfigNode::ConfigNode(const nlohmann::json& j, std::string path) : json_(j), path_(std::move(path)) {
  if (!json_.is_object() && !json_.is_null())
    throw ConfigError(fmt::format("{}: expected an object, got {}", path_.empty() ? "/" : path_,
                                  describe(json_)));
}

std::string ConfigNode::path_of(std::string_view key) const {
  return path_ + "/" + escape_token(key);
}

bool ConfigNode::has(std::string_view key) const {
  return json_.is_object() && json_.contains(key);
}

const nlohmann::json* ConfigNode::find(std::string_view key) {
  known_.emplace(key);
  if (!json_.is_object()) return nullptr;
  auto it = json_.find(key);
  return it == json_.end() ? nullptr : &*it;
}

void ConfigNode::fail(std::string_view key, std::string_view expected) const {
  const nlohmann::json* v = nullptr;
  if (json_.is_object()) {
    auto it = json_.find(key);
    if (it != json_.end()) v = &*it;
  }
  throw ConfigError(fmt::format("{}: expected {}, got {}", path_of(key), expected,
                                v ? describe(*v) : std::string("nothing")));
}

std::string ConfigNode::string(std::string_view key, std::string def) {
  const auto* v = find(key);
  if (!v) return def;
  if (!v->is_string()) fail(key, "a string");
  return v->get<std::string>();
}

std::string ConfigNode::required_string(std::string_view key) {
  const auto* v = find(key);
  if (!v || !v->is_string() || v->get_ref<const std::string&>().empty())
    fail(key, "a non-empty string");
  return v->get<std::string>();
}

int64_t ConfigNode::integer(std::string_view key, int64_t def, int64_t min, int64_t max) {
  const auto* v = find(key);
  if (!v) return def;
  const auto expected = fmt::format("an integer in {}..{}", min, max);
  if (!v->is_number_integer()) fail(key, expected);
  int64_t x;
  if (v->is_number_unsigned()) {
    auto u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) fail(key, expected);
    x = static_cast<int64_t>(u);
  } else {
    x = v->get<int64_t>();
  }
  if (x < min || x > max) fail(key, expected);
  return x;
}

double ConfigNode::number(std::string_view key, double def, double min, double max) {
  const auto* v = find(key);
  if (!v) return def;
  const auto expected = fmt::format("a number in {}..{}", min, max);
  if (!v->is_number()) fail(key, expected);
  double x = v->get<double>();
  if (!(x >= min && x <= max)) fail(key, expected);
  return x;
}

bool ConfigNode::boolean(std::string_view key, bool def) {
  const auto* v = find(key);
  if (!v) return def;
  if (!v->is_boolean()) fail(key, "true or false");
  return v->get<bool>();
}

std::vector<std::string> ConfigNode::strings(std::string_view key, std::vector<std::string> def) {
  const auto* v = find(key);
  if (!v) return def;
  if (!v->is_array()) fail(key, "an array of strings");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < v->size(); ++i) {
    const auto& e = (*v)[i];
    if (!e.is_string())
      throw ConfigError(fmt::format("{}/{}: expected a string, got {}", path_of(key), i, describe(e)));
    out.push_back(e.get<std::string>());
  }
  return out;
}

ConfigNode ConfigNode::object(std::string_view key) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  const auto* v = find(key);
  if (!v) return ConfigNode(kEmpty, path_of(key));
  if (!v->is_object()) fail(key, "an object");
  return ConfigNode(*v, path_of(key));
}

std::vector<ConfigNode> ConfigNode::objects(std::string_view key) {
  const auto* v = find(key);
  std::vector<ConfigNode> out;
  if (!v) return out;
  if (!v->is_array()) fail(key, "an array of objects");
  for (std::size_t i = 0; i < v->size(); ++i) {
    const auto& e = (*v)[i];
    auto p = fmt::format("{}/{}", path_of(key), i);
    if (!e.is_object()) throw ConfigError(fmt::format("{}: expected an object, got {}", p, describe(e)));
    out.emplace_back(e, p);
  }
  return out;
}

const nlohmann::json& ConfigNode::raw(std::string_view key) {
  static const nlohmann::json kNull;
  const auto* v = find(key);
  return v ? *v : kNull;
}

void ConfigNode::finish() const {
  if (!json_.is_object()) return;
  for (const auto& [k, v] : json_.items()) {
    if (!known_.count(k)) {
      std::string known;
      for (const auto& n : known_) known += (known.empty() ? "" : ", ") + n;
      throw ConfigError(fmt::format("{}: unknown key (known keys here: {})", path_of(k), known));
    }
  }
}

}  // namespace mqnode::core
