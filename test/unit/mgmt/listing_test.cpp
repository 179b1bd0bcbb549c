#include <doctest/doctest.h>

#include "mgmt/http_api.hpp"
#include "mgmt/json_table.hpp"
#include "mgmt/listing.hpp"

using namespace mqnode;
using nlohmann::json;

namespace {
json queues() {
  return json::parse(R"([{"name": "b3", "vhost": "/", "messages": 2}, {"name": "A1", "vhost": "/", "messages": 10},
                         {"name": "a2", "vhost": "/", "messages": 1}, {"name": "x", "vhost": "other", "messages": 5},
                         {"name": "B5", "vhost": "/", "messages": 7}])");
}
std::vector<std::string> names(const json& items) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(i["name"]);
  return out;
}
std::string error_of(const std::map<std::string, std::string>& params) {
  try {
    mgmt::apply_list_query(queues(), params);
  } catch (const mgmt::ApiError& e) {
    CHECK(e.status == 400);
    return e.error + ": " + e.what();
  }
  return "(no error)";
}
using V = std::vector<std::string>;
}  // namespace

TEST_CASE("lists: sorted by vhost then name unless sort says otherwise") {
  CHECK(names(mgmt::apply_list_query(queues(), {})) == V{"A1", "B5", "a2", "b3", "x"});
  CHECK(names(mgmt::apply_list_query(queues(), {{"sort", "messages"}})) == V{"a2", "b3", "x", "B5", "A1"});
  CHECK(names(mgmt::apply_list_query(queues(), {{"sort", "name"}, {"sort_reverse", "true"}})) ==
        V{"x", "b3", "a2", "B5", "A1"});
}

TEST_CASE("lists: columns keep the top-level keys named (a dotted column keeps its head)") {
  auto out = mgmt::apply_list_query(queues(), {{"columns", "name,messages.rate"}, {"sort", "name"}});
  CHECK(out[0] == json{{"name", "A1"}, {"messages", 10}});
}

TEST_CASE("lists: pages filter by name and count as RabbitMQ's") {
  auto page = mgmt::apply_list_query(queues(), {{"page", "1"}, {"page_size", "2"}, {"name", "a"}});
  CHECK(page["filtered_count"] == 2);
  CHECK(page["total_count"] == 5);
  CHECK(page["item_count"] == 2);
  CHECK(page["page_count"] == 1);
  CHECK(names(page["items"]) == V{"A1", "a2"});
  auto regex = mgmt::apply_list_query(queues(), {{"page", "1"}, {"name", "^b"}, {"use_regex", "true"}});
  CHECK(names(regex["items"]) == V{"B5", "b3"});
  CHECK(regex["page_size"] == 100);
  // Without a page the name filter does not apply, as RabbitMQ.
  CHECK(mgmt::apply_list_query(queues(), {{"name", "zzz"}}).size() == 5);

  CHECK(error_of({{"page", "9"}, {"page_size", "2"}}) ==
        "page_out_of_range: Page out of range, page: 9 page size: 2, len: 5");
  CHECK(error_of({{"page", "0"}}) ==
        "invalid_pagination_parameters: Invalid pagination parameters: page number 0, page size undefined");
  CHECK(error_of({{"page", "1"}, {"page_size", "900"}}) ==
        "invalid_pagination_parameters: Invalid pagination parameters: page number 1, page size 900");
  CHECK(error_of({{"page", "x"}}) == "bad_request: Pagination parameters are invalid");
  CHECK(error_of({{"page", "1"}, {"name", "("}, {"use_regex", "true"}}) ==
        "bad_request: Pagination parameters are invalid");
}

TEST_CASE("field tables as JSON, both ways") {
  amqp::FieldTable t;
  t.entries.emplace_back("x-max-length", int64_t{5});
  t.entries.emplace_back("s", std::string("text"));
  t.entries.emplace_back("b", true);
  t.entries.emplace_back("n", amqp::FieldTable{{{"i", int32_t{-3}}}});
  t.entries.emplace_back("a", amqp::FieldArray{int8_t{1}, std::string("two")});
  t.entries.emplace_back("v", amqp::Void{});
  auto j = mgmt::table_to_json(t);
  CHECK(j == json::parse(R"({"x-max-length": 5, "s": "text", "b": true, "n": {"i": -3}, "a": [1, "two"], "v": null})"));
  auto back = mgmt::json_to_table(j, "arguments");
  CHECK(back.find("x-max-length")->as_int() == 5);
  CHECK(back.find("x-max-length")->tag() == 'l');  // RabbitMQ's management API types integers as long
  CHECK(*back.find("s")->as_string() == "text");
  CHECK(back.find("n")->as_table()->find("i")->as_int() == -3);
  CHECK_THROWS_WITH(mgmt::json_to_table(json::array(), "arguments"), "arguments: expected a JSON object, got []");
}

TEST_CASE("message properties as JSON, both ways; a bad one is named") {
  auto p = mgmt::json_to_properties(
      json::parse(R"({"delivery_mode": 2, "headers": {"h": 1}, "content_type": "text/plain", "priority": "3"})"));
  CHECK(p.delivery_mode == 2);
  CHECK(p.priority == 3);
  CHECK(mgmt::properties_to_json(p) ==
        json::parse(R"({"delivery_mode": 2, "headers": {"h": 1}, "content_type": "text/plain", "priority": 3})"));
  CHECK(mgmt::json_to_properties(json::array()) == amqp::BasicProperties{});
  CHECK_THROWS_WITH(mgmt::json_to_properties(json{{"delivery_mode", 3}}),
                    "properties.delivery_mode: expected an integer 0..2, got 3");
  CHECK_THROWS_WITH(mgmt::json_to_properties(json{{"colour", "red"}}), "properties: unknown property 'colour'");
}

TEST_CASE("binding properties keys as RabbitMQ's") {
  CHECK(mgmt::binding_props_key("", {}) == "~");
  CHECK(mgmt::binding_props_key("a.b", {}) == "a.b");
  CHECK(mgmt::binding_props_key("k~1", {}) == "k%7E1");
  CHECK(mgmt::binding_props_key("a/b c", {}) == "a%2Fb%20c");
  amqp::FieldTable args{{{"x", int64_t{1}}}};
  auto key = mgmt::binding_props_key("a.b", args);
  CHECK(key.starts_with("a.b~"));
  CHECK(key.size() == 10);
  CHECK(key == mgmt::binding_props_key("a.b", args));  // stable
  CHECK(key != mgmt::binding_props_key("a.b", amqp::FieldTable{{{"x", int64_t{2}}}}));
}

TEST_CASE("payload helpers: base64 and UTF-8 checks") {
  CHECK(mgmt::base64_encode("") == "");
  CHECK(mgmt::base64_encode("f") == "Zg==");
  CHECK(mgmt::base64_encode("fo") == "Zm8=");
  CHECK(mgmt::base64_encode("foobar") == "Zm9vYmFy");
  CHECK(mgmt::valid_utf8("héllo €"));
  CHECK_FALSE(mgmt::valid_utf8(std::string("\xff\x00", 2)));
  CHECK_FALSE(mgmt::valid_utf8("\xc3"));          // truncated
  CHECK_FALSE(mgmt::valid_utf8("\xc0\xaf"));      // overlong
  CHECK_FALSE(mgmt::valid_utf8("\xed\xa0\x80"));  // surrogate
}

TEST_CASE("tags: RabbitMQ's rights by tag") {
  mgmt::Caller none{false, "u", {}};
  mgmt::Caller mgr{false, "u", {"management"}};
  mgmt::Caller pm{false, "u", {"policymaker"}};
  mgmt::Caller mon{false, "u", {"monitoring"}};
  mgmt::Caller admin{false, "u", {"administrator"}};
  mgmt::Caller control{true, "", {}};
  using R = mgmt::Right;
  CHECK(mgmt::missing_right(none, R::Management) == "Not management user");
  CHECK(mgmt::missing_right(mgr, R::Management) == std::nullopt);
  CHECK(mgmt::missing_right(mgr, R::Policymaker) == "Not policymaker user");
  CHECK(mgmt::missing_right(pm, R::Policymaker) == std::nullopt);
  CHECK(mgmt::missing_right(pm, R::Monitoring) == "Not monitor user");
  CHECK(mgmt::missing_right(mon, R::Monitoring) == std::nullopt);
  CHECK(mgmt::missing_right(mon, R::Administrator) == "Not administrator user");
  CHECK(mgmt::missing_right(mon, R::Policymaker) == "Not policymaker user");
  for (auto r : {R::Management, R::Policymaker, R::Monitoring, R::Administrator}) {
    CHECK(mgmt::missing_right(admin, r) == std::nullopt);
    CHECK(mgmt::missing_right(control, r) == std::nullopt);
  }
}

TEST_CASE("user tags from a string or a list") {
  using V2 = std::vector<std::string>;
  CHECK(mgmt::parse_tags(json("administrator, monitoring")) == V2{"administrator", "monitoring"});
  CHECK(mgmt::parse_tags(json("")) == V2{});
  CHECK(mgmt::parse_tags(json::parse(R"(["a", "b", "a"])")) == V2{"a", "b"});
  CHECK_THROWS_AS(mgmt::parse_tags(json(3)), mgmt::ApiError);
}
