#include <doctest/doctest.h>

#include "core/events.hpp"

using namespace mqnode::core;

TEST_CASE("health changes reach subscribers once, synchronously") {
  EventBus bus;
  std::vector<std::string> seen;
  int id = bus.subscribe_health([&](std::string_view m, const Health& h) {
    seen.push_back(std::string(m) + (h.state == Health::State::Ok ? ":ok" : ":down"));
  });
  CHECK(bus.last_health("lb") == nullptr);
  bus.publish_health("lb", {Health::State::Ok, ""});
  bus.publish_health("lb", {Health::State::Ok, ""});  // no change: not announced
  bus.publish_health("lb", {Health::State::Down, "all backends down"});
  REQUIRE(bus.last_health("lb") != nullptr);
  CHECK(bus.last_health("lb")->detail == "all backends down");
  CHECK(seen == std::vector<std::string>{"lb:ok", "lb:down"});
  bus.unsubscribe(id);
  bus.publish_health("lb", {Health::State::Ok, ""});
  CHECK(seen.size() == 2);
}
