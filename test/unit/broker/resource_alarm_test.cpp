#include <vector>

#include <doctest/doctest.h>

#include "broker/resource_alarm.hpp"

using namespace mqnode::broker;

TEST_CASE("resource alarms: RabbitMQ's memory high watermark and disk free limit") {
  ResourceLimits l;  // 0.4 of RAM, 50 MB of disk
  ResourceReading r{.rss = 100, .total_memory = 1000, .disk_free = 60'000'000};
  CHECK_FALSE(evaluate_alarms(l, r).any());
  r.rss = 401;
  CHECK(evaluate_alarms(l, r).memory);
  CHECK(evaluate_alarms(l, r).reason() == "low on memory");
  l.memory_absolute = 500;  // an absolute limit wins over the relative one
  CHECK(memory_limit(l, r.total_memory) == 500);
  CHECK_FALSE(evaluate_alarms(l, r).memory);
  r.disk_free = 49'999'999;
  auto a = evaluate_alarms(l, r);
  CHECK(a.disk);
  CHECK_FALSE(a.memory);
  CHECK(a.reason() == "low on disk");
  r.rss = 501;
  CHECK(evaluate_alarms(l, r).reason() == "low on memory and disk");
  // readings that failed (no RAM figure, unknown disk) never raise an alarm by themselves
  ResourceReading unknown{.rss = 1 << 30, .total_memory = 0, .disk_free = UINT64_MAX};
  CHECK_FALSE(evaluate_alarms(ResourceLimits{}, unknown).any());
}

TEST_CASE("this process can read its own resources, fresh at every reading") {
  auto r = read_resources("/");
  CHECK(r.rss > 0);
  CHECK(r.total_memory > r.rss);
  CHECK(r.disk_free != UINT64_MAX);
  // 64 MiB touched: a second reading through the same descriptor sees them.
  constexpr std::size_t kBig = 64u << 20;
  std::vector<char> big(kBig, 1);
  auto after = read_resources("/");
  CHECK(after.rss >= r.rss + kBig / 2);
  CHECK(big[kBig - 1] == 1);
}
