#include "broker/routing.hpp"

namespace mqnode::broker {

namespace {
// Integer types compare by value across widths (RabbitMQ compares after type class).
bool values_equal(const amqp::FieldValue& a, const amqp::FieldValue& b) {
  auto ia = a.as_int(), ib = b.as_int();
  if (ia && ib) return *ia == *ib;
  return a == b;
}
}  // namespace

std::string headers_binding_error(const amqp::FieldTable& binding_args) {
  const auto* m = binding_args.find("x-match");
  if (!m) return {};
  const auto* s = m->as_string();
  if (s && (*s == "all" || *s == "any" || *s == "all-with-x" || *s == "any-with-x")) return {};
  std::string shown = s ? "<<\"" + *s + "\">>" : "of the wrong type";
  return "Invalid x-match field value " + shown + "; expected all, any, all-with-x, or any-with-x";
}

bool headers_match(const amqp::FieldTable& binding_args, const amqp::FieldTable* headers) {
  bool any = false, with_x = false;
  if (const auto* m = binding_args.find("x-match")) {
    if (const auto* s = m->as_string()) {
      any = *s == "any" || *s == "any-with-x";
      with_x = *s == "all-with-x" || *s == "any-with-x";
    }
  }
  bool matched_any = false;
  for (const auto& [key, want] : binding_args.entries) {
    if (key == "x-match" || (!with_x && key.starts_with("x-"))) continue;
    const amqp::FieldValue* have = headers ? headers->find(key) : nullptr;
    bool ok = have && (std::holds_alternative<amqp::Void>(want.v) || values_equal(want, *have));
    if (any && ok) return true;
    if (!any && !ok) return false;
    matched_any |= ok;
  }
  return any ? matched_any : true;
}

}  // namespace mqnode::broker
