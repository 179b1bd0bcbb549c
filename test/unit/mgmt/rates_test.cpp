// Rates from samples of a memory-only broker: the node's counters and queue lengths are
// changed between samples at known timestamps, and the *_details objects are checked.
#include <doctest/doctest.h>

#include "broker/broker.hpp"
#include "mgmt/http_api.hpp"
#include "mgmt/rates.hpp"
#include "support/temp_store.hpp"

using namespace mqnode;
using nlohmann::json;

namespace {

struct Node {
  asio::io_context io;
  broker::Broker broker{io, broker::BrokerConfig{}, test::quiet_log(), nullptr};
  mgmt::Rates rates;
  Node() { broker.load(nullptr); }
  // Samples at <ts_ms> after <published> more publishes.
  void sample(int64_t ts_ms, uint64_t published) {
    broker.message_stats().publish += published;
    rates.sample(broker, ts_ms);
  }
  json overview(const mgmt::RateQuery& q = {}) {
    json o;
    rates.annotate(o, mgmt::Rates::Kind::Node, "", mgmt::node_values(broker), q);
    return o;
  }
};

mgmt::RateQuery window(int64_t age_s, int64_t incr_s) {
  return mgmt::parse_rate_query({{"msg_rates_age", std::to_string(age_s)}, {"msg_rates_incr", std::to_string(incr_s)}});
}

}  // namespace

TEST_CASE("the rate is the difference of the last two samples over their interval") {
  Node n;
  CHECK(n.overview()["message_stats"]["publish_details"] == json{{"rate", 0.0}});  // no samples yet
  n.sample(100'000, 0);
  n.sample(105'000, 50);
  auto o = n.overview();
  CHECK(o["message_stats"]["publish"] == 50);
  CHECK(o["message_stats"]["publish_details"]["rate"] == doctest::Approx(10.0));
  CHECK(o["message_stats"]["ack_details"]["rate"] == doctest::Approx(0.0));
  CHECK(o["queue_totals"]["messages_details"]["rate"] == doctest::Approx(0.0));
  n.sample(110'000, 0);
  CHECK(n.overview()["message_stats"]["publish_details"]["rate"] == doctest::Approx(0.0));
}

TEST_CASE("a window gives samples newest first on the increment, with avg and avg_rate") {
  Node n;
  n.sample(100'000, 0);
  n.sample(105'000, 10);
  n.sample(110'000, 20);
  n.sample(115'000, 30);
  auto d = n.overview(window(10, 5))["message_stats"]["publish_details"];
  CHECK(d["samples"] == json::parse(R"([{"sample": 60, "timestamp": 115000}, {"sample": 30, "timestamp": 110000},
                                        {"sample": 10, "timestamp": 105000}])"));
  CHECK(d["avg"] == doctest::Approx(100.0 / 3));
  CHECK(d["avg_rate"] == doctest::Approx(5.0));  // (60 - 10) / 10 s
  CHECK(d["rate"] == doctest::Approx(6.0));
  SUBCASE("older than what is kept stops the list") {
    auto all = n.overview(window(60, 5))["message_stats"]["publish_details"]["samples"];
    CHECK(all.size() == 4);
  }
  SUBCASE("a coarser increment takes the value at each step") {
    auto s = n.overview(window(10, 10))["message_stats"]["publish_details"]["samples"];
    CHECK(s == json::parse(R"([{"sample": 30, "timestamp": 110000}, {"sample": 0, "timestamp": 100000}])"));
  }
}

TEST_CASE("bad windows are refused as RabbitMQ's bad_request") {
  auto error = [](std::map<std::string, std::string> p) {
    try {
      mgmt::parse_rate_query(p);
    } catch (const mgmt::ApiError& e) {
      CHECK(e.status == 400);
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  CHECK(error({{"msg_rates_age", "60"}}) == "msg_rates needs msg_rates_incr");
  CHECK(error({{"lengths_age", "60"}, {"lengths_incr", "x"}}) ==
        "lengths_incr: expected a positive number of seconds, got 'x'");
  CHECK(error({{"data_rates_age", "6000"}, {"data_rates_incr", "1"}}) == "data_rates: more than 100 samples asked for");
  CHECK(error({}) == "(no error)");
}

TEST_CASE("an object that never counted anything lists no message_stats and zero length rates") {
  Node n;
  json q;
  n.rates.sample(n.broker, 1000);
  n.rates.annotate(q, mgmt::Rates::Kind::Queue, mgmt::Rates::key("/", "nope"), mgmt::Values{}, {});
  CHECK(q["message_stats"] == json::object());  // nothing happened: nothing listed
  CHECK(q["messages_details"] == json{{"rate", 0.0}});
}
