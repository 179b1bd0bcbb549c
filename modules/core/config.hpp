// Strict reading of the JSON config: every read names its JSON pointer, wrong types and
// out-of-range values are errors that say what was expected, and keys nobody read are
// errors too (a typo must not be silently ignored).
#pragma once

#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace mqnode::core {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A view of one JSON object in the config at <path> (a JSON pointer such as
// "/broker/listeners/0"). Getters mark keys as known; finish() rejects the rest.
class ConfigNode {
 public:
  ConfigNode(const nlohmann::json& j, std::string path);

  const std::string& path() const { return path_; }
  std::string path_of(std::string_view key) const;
  bool has(std::string_view key) const;

  std::string string(std::string_view key, std::string def);
  std::string required_string(std::string_view key);
  int64_t integer(std::string_view key, int64_t def, int64_t min, int64_t max);
  double number(std::string_view key, double def, double min, double max);
  bool boolean(std::string_view key, bool def);
  std::vector<std::string> strings(std::string_view key, std::vector<std::string> def);
  // Object-valued key; an absent key yields an empty object at that path.
  ConfigNode object(std::string_view key);
  // Array of objects; absent → empty.
  std::vector<ConfigNode> objects(std::string_view key);
  // Marks <key> known and returns the raw value (null when absent) for callers that
  // accept several shapes.
  const nlohmann::json& raw(std::string_view key);

  // Throws for every key in the object that no getter asked for.
  void finish() const;

  [[noreturn]] void fail(std::string_view key, std::string_view expected) const;

 private:
  const nlohmann::json* find(std::string_view key);
  const nlohmann::json& json_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
};

// Renders a JSON value for an error message, shortened if long.
std::string describe(const nlohmann::json& v);

}  // namespace mqnode::core
