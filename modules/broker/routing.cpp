#include "broker/routing.hpp"

#include <vector>

namespace mqnode::broker {

namespace {
// As RabbitMQ's topic trie: "" is no words at all, "a..b" is three.
std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> out;
  if (s.empty()) return out;
  std::size_t start = 0;
  for (;;) {
    auto dot = s.find('.', start);
    if (dot == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, dot - start));
    start = dot + 1;
  }
}

// Integer types compare by value across widths (RabbitMQ compares after type class).
bool values_equal(const amqp::FieldValue& a, const amqp::FieldValue& b) {
  auto ia = a.as_int(), ib = b.as_int();
  if (ia && ib) return *ia == *ib;
  return a == b;
}
}  // namespace

bool topic_matches(std::string_view pattern, std::string_view routing_key) {
  auto p = split_words(pattern), k = split_words(routing_key);
  // reach[j]: pattern prefix consumed so far can match key prefix of length j.
  std::vector<char> reach(k.size() + 1, 0), next(k.size() + 1, 0);
  reach[0] = 1;
  for (const auto& word : p) {
    std::fill(next.begin(), next.end(), 0);
    if (word == "#") {
      char any = 0;
      for (std::size_t j = 0; j <= k.size(); ++j) {
        any |= reach[j];
        next[j] = any;
      }
    } else {
      for (std::size_t j = 0; j < k.size(); ++j)
        if (reach[j] && (word == "*" || word == k[j])) next[j + 1] = 1;
    }
    reach.swap(next);
  }
  return reach[k.size()] != 0;
}

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
