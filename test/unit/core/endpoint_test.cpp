#include <doctest/doctest.h>

#include <cerrno>

#include "core/endpoint.hpp"

using mqnode::core::parse_endpoint;
namespace core = mqnode::core;

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

TEST_CASE("a defaulted listener falls back to IPv4 only where the host has no IPv6") {
  auto any = core::any_address(5672);
  CHECK(any.host == "::");
  CHECK(any.ipv4_fallback);
  auto no_ipv6_kernel = std::error_code(EAFNOSUPPORT, std::system_category());  // socket(AF_INET6)
  auto ipv6_disabled = std::error_code(EADDRNOTAVAIL, std::system_category());
  for (const auto& error : {no_ipv6_kernel, ipv6_disabled}) {
    auto v4 = core::ipv4_fallback(any, error);
    REQUIRE(v4);
    CHECK(v4->host == "0.0.0.0");
    CHECK(v4->port == 5672);
    CHECK_FALSE(v4->ipv4_fallback);
  }
  // Other failures are reported as they are: IPv4 would not help.
  CHECK_FALSE(core::ipv4_fallback(any, std::error_code(EADDRINUSE, std::system_category())));
  CHECK_FALSE(core::ipv4_fallback(any, std::error_code(EACCES, std::system_category())));
  // "[::]:5672" from the config asked for IPv6.
  CHECK_FALSE(core::ipv4_fallback(*parse_endpoint("[::]:5672"), no_ipv6_kernel));
}

TEST_CASE("loopback in either family, also IPv4 seen through a dual-stack socket") {
  auto loopback = [](const char* a) { return core::is_loopback(asio::ip::make_address(a)); };
  CHECK(loopback("127.0.0.1"));
  CHECK(loopback("127.1.2.3"));
  CHECK(loopback("::1"));
  CHECK(loopback("::ffff:127.0.0.1"));
  CHECK(loopback("::ffff:127.9.9.9"));
  CHECK_FALSE(loopback("10.0.0.1"));
  CHECK_FALSE(loopback("::ffff:10.0.0.1"));
  CHECK_FALSE(loopback("fd00::2"));
  CHECK_FALSE(loopback("::"));
  CHECK_FALSE(loopback("0.0.0.0"));
}
