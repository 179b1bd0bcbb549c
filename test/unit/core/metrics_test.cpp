#include <doctest/doctest.h>

#include "core/metrics.hpp"

using namespace mqnode::core;

TEST_CASE("metrics: a family is announced once, labels are escaped, values print as Prometheus reads them") {
  MetricsWriter w;
  w.family("mqnode_x_total", MetricsWriter::Type::Counter, "Things\ncounted.");
  w.sample({{"name", "a\"b\\c\nd"}}, 3);
  w.family("mqnode_up", MetricsWriter::Type::Gauge, "Up.");
  w.sample(1);
  w.family("mqnode_x_total", MetricsWriter::Type::Counter, "Things counted.");
  w.sample({{"name", "e"}, {"kind", "f"}}, 0.25);
  CHECK(w.text() ==
        "# HELP mqnode_x_total Things counted.\n"
        "# TYPE mqnode_x_total counter\n"
        "mqnode_x_total{name=\"a\\\"b\\\\c\\nd\"} 3\n"
        "# HELP mqnode_up Up.\n"
        "# TYPE mqnode_up gauge\n"
        "mqnode_up 1\n"
        "mqnode_x_total{name=\"e\",kind=\"f\"} 0.25\n");
}
