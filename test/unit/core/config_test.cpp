#include <doctest/doctest.h>

#include "core/config.hpp"

using mqnode::core::ConfigError;
using mqnode::core::ConfigNode;
using nlohmann::json;

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST_CASE("config errors name the JSON path, the bad value and what was expected") {
  json j = json::parse(R"({"broker": {"heartbeat_s": -1, "name": 5, "listeners": [{"bind": 7}], "a/b": 1}})");
  ConfigNode root(j, "");
  auto broker = root.object("broker");

  SUBCASE("range") {
    CHECK(error_of([&] { broker.integer("heartbeat_s", 60, 0, 65535); }) ==
          "/broker/heartbeat_s: expected an integer in 0..65535, got number -1");
  }
  SUBCASE("type") {
    CHECK(error_of([&] { broker.string("name", ""); }) == "/broker/name: expected a string, got number 5");
  }
  SUBCASE("array element") {
    auto ls = broker.objects("listeners");
    REQUIRE(ls.size() == 1);
    CHECK(error_of([&] { ls[0].required_string("bind"); }) ==
          "/broker/listeners/0/bind: expected a non-empty string, got number 7");
  }
  SUBCASE("unknown keys are errors, with JSON pointer escaping") {
    broker.integer("heartbeat_s", 60, -5, 5);
    broker.raw("name");
    broker.raw("listeners");
    auto msg = error_of([&] { broker.finish(); });
    CHECK(msg.starts_with("/broker/a~1b: unknown key"));
  }
  SUBCASE("absent keys give defaults and missing objects are empty") {
    CHECK(broker.boolean("flag", true) == true);
    CHECK(broker.strings("list", {"x"}) == std::vector<std::string>{"x"});
    auto empty = root.object("lb");
    CHECK(empty.path() == "/lb");
    CHECK_NOTHROW(empty.finish());
  }
  SUBCASE("wrong shape of an object") {
    json k = json::parse(R"({"node": []})");
    ConfigNode r(k, "");
    CHECK(error_of([&] { r.object("node"); }) == "/node: expected an object, got array []");
  }
  SUBCASE("long values are shortened in messages") {
    json k = {{"s", std::string(200, 'x')}};
    ConfigNode r(k, "");
    auto msg = error_of([&] { r.integer("s", 0, 0, 1); });
    CHECK(msg.size() < 140);
    CHECK(msg.find("...") != std::string::npos);
  }
}
