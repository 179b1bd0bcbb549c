// Exchanges' bind / unbind / unbind_all and route against a plain model (a list of
// bindings matched one by one), for every type, after seeded random sequences of changes.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "amqp/properties.hpp"
#include "broker/exchange/exchange.hpp"
#include "broker/routing.hpp"

using namespace mqnode::broker;
using mqnode::amqp::FieldTable;

namespace {

// Destinations need distinct addresses only: exchanges are the cheapest real objects.
std::vector<ExchangePtr> make_destinations(int n) {
  std::vector<ExchangePtr> out;
  for (int i = 0; i < n; ++i) out.push_back(make_exchange({"d" + std::to_string(i), "fanout", false, false, false, {}}));
  return out;
}

Message message(std::string key, const FieldTable* headers = nullptr) {
  Message m;
  m.routing_key = std::move(key);
  mqnode::amqp::BasicProperties p;
  if (headers) p.headers = *headers;
  mqnode::amqp::encode_properties(p, m.properties);
  return m;
}

std::vector<const Exchange*> routed(const Exchange& ex, const Message& m) {
  std::vector<BindingTarget> out;
  ex.route(m, out);
  std::vector<const Exchange*> dests;
  for (const auto& t : out) dests.push_back(t.exchange);
  std::sort(dests.begin(), dests.end());
  return dests;
}

// What the exchange must hold: bindings() in any order, without duplicates (<model> has
// none, so equal sizes and each model binding found once make the two the same set).
void check_bindings(const Exchange& ex, const std::vector<Binding>& model) {
  const auto& got = ex.bindings();
  REQUIRE(got.size() == model.size());
  for (const auto& b : model) CHECK(std::count(got.begin(), got.end(), b) == 1);
}

// RabbitMQ's topic rule restated on whole strings (no trie, no word vector): '*' takes
// one word, '#' takes none or one and stays. <p_has> / <k_has>: words are left ("" after
// a final '.' is still a word).
bool topic_reference(std::string_view p, bool p_has, std::string_view k, bool k_has) {
  if (!p_has) return !k_has;
  auto pdot = p.find('.'), kdot = k.find('.');
  std::string_view word = p.substr(0, pdot), p_rest = pdot == p.npos ? "" : p.substr(pdot + 1);
  std::string_view k_rest = kdot == k.npos ? "" : k.substr(kdot + 1);
  if (word == "#")
    return topic_reference(p_rest, pdot != p.npos, k, k_has) || (k_has && topic_reference(p, true, k_rest, kdot != k.npos));
  if (!k_has || (word != "*" && word != k.substr(0, kdot))) return false;
  return topic_reference(p_rest, pdot != p.npos, k_rest, kdot != k.npos);
}

bool model_matches(std::string_view type, const Binding& b, const Message& m, const FieldTable* headers) {
  if (type == "fanout") return true;
  if (type == "direct") return b.key == m.routing_key;
  if (type == "topic") return topic_reference(b.key, !b.key.empty(), m.routing_key, !m.routing_key.empty());
  return headers_match(b.arguments, headers);
}

}  // namespace

TEST_CASE("exchanges: bind is idempotent, unbind and unbind_all remove exactly what they name") {
  auto dests = make_destinations(3);
  BindingTarget d0{nullptr, dests[0].get()}, d1{nullptr, dests[1].get()};
  for (std::string_view type : kExchangeTypes) {
    CAPTURE(type);
    auto ex = make_exchange({"x", std::string(type), false, false, false, {}});
    FieldTable args;
    args.set("k", "v");
    CHECK(ex->bind({d0, "a", {}}));
    CHECK_FALSE(ex->bind({d0, "a", {}}));  // duplicate
    CHECK(ex->bind({d0, "a", args}));      // other arguments: another binding
    CHECK(ex->bind({d0, "b", {}}));
    CHECK(ex->bind({d1, "a", {}}));
    CHECK(ex->bindings().size() == 4);
    CHECK_FALSE(ex->unbind({d1, "b", {}}));
    CHECK(ex->unbind({d0, "a", args}));
    CHECK_FALSE(ex->unbind({d0, "a", args}));
    CHECK(ex->unbind_all(d0) == 2);
    CHECK(ex->unbind_all(d0) == 0);
    check_bindings(*ex, {{d1, "a", {}}});
    CHECK(ex->unbind({d1, "a", {}}));
    CHECK(ex->bindings().empty());
    CHECK(ex->bind({d0, "a", {}}));  // everything works again on an emptied exchange
    check_bindings(*ex, {{d0, "a", {}}});
  }
}

TEST_CASE("exchanges: random bind / unbind / unbind_all agree with a plain model") {
  std::mt19937 rng(1203);
  auto dests = make_destinations(40);
  const std::vector<std::string> words{"a", "b", "", "*", "#"};
  auto pick = [&](auto n) { return static_cast<std::size_t>(std::uniform_int_distribution<std::size_t>(0, n - 1)(rng)); };
  auto key = [&] {
    std::string s;
    for (std::size_t i = 0, n = pick(4); i < n; ++i) s += (i ? "." : "") + words[pick(words.size())];
    return s;
  };
  auto header_args = [&] {
    FieldTable t;
    static const char* kMatch[] = {"all", "any", "all-with-x", "any-with-x"};
    if (pick(5)) t.set("x-match", kMatch[pick(4)]);
    for (const char* k : {"h1", "h2", "x-h"})
      if (pick(2)) t.set(k, static_cast<int32_t>(pick(2)));
    return t;
  };

  for (std::string_view type : kExchangeTypes) {
    CAPTURE(type);
    bool headers = type == "headers";
    auto ex = make_exchange({"x", std::string(type), false, false, false, {}});
    std::vector<Binding> model;
    for (int step = 0; step < 3000; ++step) {
      Binding b{{nullptr, dests[pick(dests.size())].get()}, headers ? "" : key(), headers ? header_args() : FieldTable{}};
      auto found = std::find(model.begin(), model.end(), b);
      switch (pick(8)) {
        case 0:
        case 1:
        case 2:
        case 3:
          CHECK(ex->bind(b) == (found == model.end()));
          if (found == model.end()) model.push_back(b);
          break;
        case 4:
        case 5:
        case 6: {
          // Mostly an existing binding, so unbinds do not only miss.
          if (!model.empty() && pick(4)) found = model.begin() + static_cast<std::ptrdiff_t>(pick(model.size()));
          const Binding& u = found == model.end() ? b : *found;
          CHECK(ex->unbind(u) == (found != model.end()));
          if (found != model.end()) model.erase(found);
          break;
        }
        default: {
          auto n = std::erase_if(model, [&](const Binding& m) { return m.destination == b.destination; });
          CHECK(ex->unbind_all(b.destination) == n);
        }
      }
      if (step % 100 != 99) continue;
      check_bindings(*ex, model);
      for (int i = 0; i < 20; ++i) {
        FieldTable h = header_args();
        Message m = message(headers ? "" : key(), &h);
        std::vector<const Exchange*> want;
        for (const auto& mb : model)
          if (model_matches(type, mb, m, &h)) want.push_back(mb.destination.exchange);
        std::sort(want.begin(), want.end());
        CAPTURE(m.routing_key);
        CHECK(routed(*ex, m) == want);  // one entry per matching binding
      }
    }
  }
}

TEST_CASE("headers exchange: x-match all / any / all-with-x / any-with-x through route") {
  auto dests = make_destinations(4);
  auto ex = make_exchange({"h", "headers", false, false, false, {}});
  const char* kMatch[] = {"all", "any", "all-with-x", "any-with-x"};
  for (int i = 0; i < 4; ++i) {
    FieldTable args;
    args.set("x-match", kMatch[i]);
    args.set("format", "pdf");
    args.set("x-tag", "t");
    CHECK(ex->bind({{nullptr, dests[i].get()}, "", args}));
  }
  auto to = [&](std::initializer_list<int> idx) {
    std::vector<const Exchange*> v;
    for (int i : idx) v.push_back(dests[i].get());
    std::sort(v.begin(), v.end());
    return v;
  };
  FieldTable h;
  h.set("format", "pdf");
  CHECK(routed(*ex, message("", &h)) == to({0, 1, 3}));  // all-with-x also wants x-tag
  h.set("x-tag", "t");
  CHECK(routed(*ex, message("", &h)) == to({0, 1, 2, 3}));
  FieldTable only_x;
  only_x.set("x-tag", "t");
  CHECK(routed(*ex, message("", &only_x)) == to({3}));  // any-with-x: x-tag alone is enough
  CHECK(routed(*ex, message("", nullptr)).empty());
}
