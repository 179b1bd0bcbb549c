#include <doctest/doctest.h>

#include "core/endpoint.hpp"

using mqnode::core::parse_endpoint;

TEST_CASE("listener addresses") {
  auto a = parse_endpoint("0.0.0.0:5672");
  REQUIRE(a);
  CHECK(a->host == "0.0.0.0");
  CHECK(a->port == 5672);
  auto b = parse_endpoint("[::1]:0");
  REQUIRE(b);
  CHECK(b->host == "::1");
  CHECK(b->to_string() == "[::1]:0");
  CHECK_FALSE(parse_endpoint("localhost:5672"));  // numeric addresses only
  CHECK_FALSE(parse_endpoint("127.0.0.1"));
  CHECK_FALSE(parse_endpoint("127.0.0.1:"));
  CHECK_FALSE(parse_endpoint("127.0.0.1:65536"));
  CHECK_FALSE(parse_endpoint("127.0.0.1:12x"));
  CHECK_FALSE(parse_endpoint(":5672"));
}
