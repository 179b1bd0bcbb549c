// For the config-slice unit tests: run a module's parser on JSON text as if it were the
// slice at <pointer>, or get the ConfigError message it gives.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/config.hpp"

namespace mqnode::test {

template <class Parse>
auto parse_json(Parse parse, std::string_view text, const char* pointer) {
  auto j = nlohmann::json::parse(text);
  return parse(core::ConfigNode(j, pointer));
}

// The error text, or "(no error)".
template <class Parse>
std::string config_error_of(Parse parse, std::string_view text, const char* pointer) {
  try {
    parse_json(parse, text, pointer);
  } catch (const core::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace mqnode::test
