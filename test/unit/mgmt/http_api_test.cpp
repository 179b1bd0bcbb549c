#include <doctest/doctest.h>

#include "mgmt/http_api.hpp"
#include "mgmt/mgmt_module.hpp"

using namespace mqnode;

namespace {
std::string error_of(std::string_view body) {
  try {
    mgmt::parse_policy_body(body);
  } catch (const mgmt::ApiError& e) {
    CHECK(e.status == 400);
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST_CASE("policy bodies: RabbitMQ's PUT /api/policies shape") {
  auto p = mgmt::parse_policy_body(
      R"({"pattern": "^a", "definition": {"max-length": 3}, "priority": 7, "apply-to": "queues", "vhost": "/", "name": "x"})");
  CHECK(p.pattern == "^a");
  CHECK(p.definition == nlohmann::json{{"max-length", 3}});
  CHECK(p.priority == 7);
  CHECK(p.apply_to == "queues");

  auto defaults = mgmt::parse_policy_body(R"({"pattern": ".*", "definition": {}})");
  CHECK(defaults.priority == 0);
  CHECK(defaults.apply_to == "all");
  CHECK(mgmt::parse_policy_body(R"({"pattern": "", "definition": {}, "priority": "-12"})").priority == -12);

  CHECK(error_of("{") == "the body is not valid JSON");
  CHECK(error_of("[]") == "the body must be a JSON object with pattern and definition");
  CHECK(error_of(R"({"definition": {}})") == "pattern is missing");
  CHECK(error_of(R"({"pattern": "x"})") == "definition is missing");
  CHECK(error_of(R"({"pattern": "x", "definition": "max-length=1"})") == "definition: expected a JSON object");
  CHECK(error_of(R"({"pattern": "x", "definition": {}, "priority": "1x"})") == "priority: expected an integer, got \"1x\"");
  CHECK(error_of(R"({"pattern": "x", "definition": {}, "priority": 1.5})") == "priority: expected an integer, got 1.5");
  CHECK(error_of(R"({"pattern": 1, "definition": {}})") == "pattern: expected a string (a regular expression)");
  CHECK(error_of(R"({"pattern": "x", "definition": {}, "apply_to": "all"})") ==
        "unknown key 'apply_to' (expected pattern, definition, priority, apply-to)");
}

TEST_CASE("path segments are URL-decoded one by one") {
  using V = std::vector<std::string>;
  CHECK(mgmt::path_segments("/api/policies/%2F/ttl", "/api/policies/") == V{"/", "ttl"});
  CHECK(mgmt::path_segments("/api/policies/other", "/api/policies/") == V{"other"});
  CHECK(mgmt::path_segments("/api/policies/a%2Fb/c+d", "/api/policies/") == V{"a/b", "c+d"});
  CHECK(mgmt::path_segments("/api/policies/a//b", "/api/policies/") == V{"a", "", "b"});
  CHECK(mgmt::path_segments("/api/other", "/api/policies/").empty());
}

TEST_CASE("policies are listed in RabbitMQ's JSON shape") {
  auto j = nlohmann::json::parse(
      R"({"name": "ttl", "vhost": "other", "pattern": "^q", "priority": 2, "apply_to": "queues", "definition": {"message-ttl": 5}})");
  auto policy = broker::parse_policy(core::ConfigNode(j, ""));
  CHECK(mgmt::policy_to_api(policy) == nlohmann::json::parse(
      R"({"vhost": "other", "name": "ttl", "pattern": "^q", "apply-to": "queues", "definition": {"message-ttl": 5}, "priority": 2})"));
}

TEST_CASE("the management config and the control socket path") {
  nlohmann::json j = {{"bind", "127.0.0.1:0"}};
  auto c = mgmt::parse_mgmt_config(core::ConfigNode(j, "/management"));
  REQUIRE(c.bind.has_value());
  CHECK(c.bind->to_string() == "127.0.0.1:0");
  CHECK_FALSE(mgmt::parse_mgmt_config(core::ConfigNode(nlohmann::json::object(), "/management")).bind.has_value());
  nlohmann::json bad = {{"bind", "localhost:15672"}};
  CHECK_THROWS_WITH_AS(mgmt::parse_mgmt_config(core::ConfigNode(bad, "/management")),
                       "/management/bind: expected \"address:port\" with a numeric IPv4/IPv6 address, got string "
                       "\"localhost:15672\"",
                       core::ConfigError);
  nlohmann::json typo = {{"port", 15672}};
  CHECK_THROWS_AS(mgmt::parse_mgmt_config(core::ConfigNode(typo, "/management")), core::ConfigError);
  CHECK(mgmt::control_socket_path("/var/lib/mqnode") == "/var/lib/mqnode/mqnode.sock");
}

TEST_CASE("routing: the same routes with and without the administrator check; no broker, no policies") {
  auto sink = std::make_shared<core::LogSink>();
  sink->level = core::LogLevel::Error;
  mgmt::HttpApi api({{"mqnode@test", "/nonexistent"}, {}, nullptr, {}, nullptr}, core::Logger(sink, "test"));
  auto get = [](std::string path) {
    core::http::Request r;
    r.method = "GET";
    r.path = std::move(path);
    return r;
  };
  auto local = api.router(false);
  auto tcp = api.router(true);

  auto overview = local->dispatch(get("/api/overview"));
  CHECK(overview.status == 200);
  auto j = nlohmann::json::parse(overview.body);
  CHECK(j["product_name"] == "mqnode");
  CHECK(j["node"] == "mqnode@test");

  auto refused = tcp->dispatch(get("/api/overview"));
  CHECK(refused.status == 401);
  CHECK(nlohmann::json::parse(refused.body)["error"] == "not_authorised");
  REQUIRE(refused.headers.size() == 1);
  CHECK(refused.headers[0].first == "WWW-Authenticate");
  auto with_creds = get("/api/overview");
  with_creds.headers["authorization"] = "Basic Z3Vlc3Q6Z3Vlc3Q=";  // guest:guest, but no broker has users
  CHECK(tcp->dispatch(with_creds).status == 401);

  auto policies = local->dispatch(get("/api/policies/%2F"));
  CHECK(policies.status == 503);
  CHECK(nlohmann::json::parse(policies.body)["reason"] == "this node runs no broker (start it with --role disc)");

  for (auto* router : {&local, &tcp}) {
    auto m = (*router)->dispatch(get("/metrics"));
    CHECK(m.status == 200);
    CHECK(m.content_type == core::kMetricsContentType);
    CHECK(m.body.find("mqnode_build_info{version=\"") != std::string::npos);
  }
  CHECK(local->dispatch(get("/api/nothing")).status == 404);
}
