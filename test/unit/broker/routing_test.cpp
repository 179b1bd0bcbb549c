#include <doctest/doctest.h>

#include "broker/routing.hpp"

using mqnode::amqp::FieldTable;
using mqnode::amqp::FieldValue;
using mqnode::amqp::Void;
using mqnode::broker::headers_binding_error;
using mqnode::broker::headers_match;

TEST_CASE("headers exchange matching") {
  FieldTable msg;
  msg.set("format", "pdf");
  msg.set("type", "report");
  msg.set("n", int8_t{3});

  FieldTable all;
  all.set("x-match", "all");
  all.set("format", "pdf");
  all.set("type", "report");
  CHECK(headers_match(all, &msg));
  all.set("type", "log");
  CHECK_FALSE(headers_match(all, &msg));

  FieldTable any;
  any.set("x-match", "any");
  any.set("format", "zip");
  any.set("type", "report");
  CHECK(headers_match(any, &msg));
  any.set("type", "other");
  CHECK_FALSE(headers_match(any, &msg));
  CHECK_FALSE(headers_match(any, nullptr));

  SUBCASE("x-match defaults to all; x- keys are ignored unless -with-x") {
    FieldTable b;
    b.set("format", "pdf");
    b.set("x-extra", "ignored");
    CHECK(headers_match(b, &msg));
    b.set("x-match", "all-with-x");
    CHECK_FALSE(headers_match(b, &msg));
  }
  SUBCASE("integers compare by value across widths; void matches presence") {
    FieldTable b;
    b.set("n", int64_t{3});
    CHECK(headers_match(b, &msg));
    FieldTable p;
    p.set("type", Void{});
    CHECK(headers_match(p, &msg));
    p.set("missing", Void{});
    CHECK_FALSE(headers_match(p, &msg));
  }
  SUBCASE("x-match values are checked at bind time") {
    CHECK(headers_binding_error({}).empty());
    FieldTable b;
    b.set("x-match", "any-with-x");
    CHECK(headers_binding_error(b).empty());
    b.set("x-match", "foo");
    CHECK(headers_binding_error(b) ==
          "Invalid x-match field value <<\"foo\">>; expected all, any, all-with-x, or any-with-x");
  }
  SUBCASE("a binding with no keys matches everything under all") {
    FieldTable b;
    CHECK(headers_match(b, &msg));
    CHECK(headers_match(b, nullptr));
    b.set("x-match", "any");
    CHECK_FALSE(headers_match(b, &msg));
  }
}
