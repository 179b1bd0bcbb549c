// The topic trie against a reference matcher (the dynamic programme the topic exchange
// used before the trie, kept here only as the oracle): RabbitMQ's edge cases, then
// thousands of seeded random patterns and keys, before and after removals.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "broker/exchange/topic_trie.hpp"

using mqnode::broker::TopicTrie;

namespace {

// "" has no words, "a..b" three.
std::vector<std::string_view> oracle_words(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (!s.empty()) {
    auto dot = s.find('.', start);
    out.push_back(s.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return out;
}

using Words = std::vector<std::string_view>;

// reach[j]: the pattern words taken so far can match the first j words of the key.
bool oracle_matches(const Words& p, const Words& k) {
  std::vector<char> reach(k.size() + 1, 0), next(k.size() + 1, 0);
  reach[0] = 1;
  for (const auto& word : p) {
    std::fill(next.begin(), next.end(), 0);
    if (word == "#") {
      char any = 0;
      for (std::size_t j = 0; j <= k.size(); ++j) next[j] = any |= reach[j];
    } else {
      for (std::size_t j = 0; j < k.size(); ++j)
        if (reach[j] && (word == "*" || word == k[j])) next[j + 1] = 1;
    }
    reach.swap(next);
  }
  return reach[k.size()] != 0;
}

bool trie_matches(std::string_view pattern, std::string_view routing_key) {
  TopicTrie trie;
  trie.insert(pattern, 0);
  std::vector<uint32_t> out;
  trie.match(routing_key, out);
  REQUIRE(out.size() <= 1);  // each binding at most once
  return !out.empty();
}

// Both matchers must agree, and with <expected>.
void check(std::string_view pattern, std::string_view key, bool expected) {
  CAPTURE(pattern);
  CAPTURE(key);
  CHECK(oracle_matches(oracle_words(pattern), oracle_words(key)) == expected);
  CHECK(trie_matches(pattern, key) == expected);
}

// A pattern or key of 0..5 words drawn from <alphabet> ("" included: empty words).
std::string random_topic(std::mt19937& rng, const std::vector<std::string>& alphabet) {
  std::uniform_int_distribution<int> len(0, 5), pick(0, static_cast<int>(alphabet.size()) - 1);
  std::string s;
  int n = len(rng);
  for (int i = 0; i < n; ++i) {
    if (i) s += '.';
    s += alphabet[pick(rng)];
  }
  return s;
}

}  // namespace

TEST_CASE("topic trie: RabbitMQ's edge cases") {
  check("a.b.c", "a.b.c", true);
  check("a.b.c", "a.b", false);
  check("a.b", "a.b.c", false);
  check("*.b.*", "a.b.c", true);
  check("*", "a.b", false);
  check("*.#", "a", true);
  check("*.*.#", "a", false);
  check("a.#", "b.a", false);
  SUBCASE("'#' matches zero or more words") {
    check("#", "", true);
    check("#", "a.b.c", true);
    check("#", ".", true);
    check("a.#", "a", true);
    check("a.#", "a.b.c", true);
    check("#.a", "a", true);
    check("a.#.b", "a.b", true);
    check("a.#.b", "a.x.y.b", true);
    check("a.#.b", "a.x.y.c", false);
    check("a.#.b", "a.b.b", true);
    check("#.#", "", true);
    check("#.#", "a.b", true);
    check("#.*", "", false);
    check("#.*", "a", true);
    check("#.*.#", "a.b", true);
  }
  SUBCASE("empty words: \"\" has none, \"a..b\" three") {
    check("*", "", false);
    check("*.*", ".", true);
    check("*", ".", false);
    check("*.#", "", false);
    check("a..b", "a..b", true);
    check("a.*.b", "a..b", true);
    check("a.b", "a..b", false);
    check("a..b", "a.b", false);
    check("#.", "a.", true);
    check("#.", "a", false);
    check(".a", ".a", true);
    check("*.a", ".a", true);
    check("a.", "a", false);
    check("", "", true);
    check("", "a", false);
    check("a", "", false);
  }
  SUBCASE("wildcards in the key are plain words") {
    check("*", "#", true);
    check("a", "*", false);
    check("#", "*.#", true);
  }
  SUBCASE("runs of '#' stay cheap") {
    check("#.#.#.#.#.#.#.#.z", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.z", true);
    check("#.#.#.#.#.#.#.#.z", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.y", false);
    // Not collapsible: a naive backtracking search tries C(40, 20) splits here.
    std::string pattern = "#", key;
    for (int i = 0; i < 20; ++i) pattern += ".a.#";
    for (int i = 0; i < 40; ++i) key += "a.";
    check(pattern + ".z", key + "y", false);
    check(pattern + ".z", key + "z", true);
  }
}

TEST_CASE("topic trie: many patterns in one trie agree with the reference, before and after removals") {
  std::mt19937 rng(20261203);  // fixed: the same cases every run
  const std::vector<std::string> pattern_words{"a", "b", "", "*", "#", "*", "#"};
  const std::vector<std::string> key_words{"a", "b", "c", "", "*", "#"};
  std::vector<std::string> patterns;  // patterns[pos] is bound at position pos, duplicates included
  for (int i = 0; i < 2000; ++i) patterns.push_back(random_topic(rng, pattern_words));
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; ++i) keys.push_back(random_topic(rng, key_words));

  TopicTrie trie;
  for (uint32_t pos = 0; pos < patterns.size(); ++pos) trie.insert(patterns[pos], pos);
  std::vector<Words> key_words_of;
  for (const auto& key : keys) key_words_of.push_back(oracle_words(key));

  auto agree = [&] {
    std::size_t matches = 0;
    std::vector<Words> pattern_words_of;
    for (const auto& p : patterns) pattern_words_of.push_back(oracle_words(p));
    for (std::size_t i = 0; i < keys.size(); ++i) {
      std::vector<uint32_t> got, want;
      trie.match(keys[i], got);
      for (uint32_t pos = 0; pos < patterns.size(); ++pos)
        if (oracle_matches(pattern_words_of[pos], key_words_of[i])) want.push_back(pos);
      std::sort(got.begin(), got.end());
      CAPTURE(keys[i]);
      REQUIRE(got == want);  // same bindings, each once
      matches += got.size();
    }
    return matches;
  };
  CHECK(agree() > keys.size());  // the case mix matches often, not only never

  // Remove as an exchange does: the last binding moves into the hole.
  std::uniform_int_distribution<std::size_t> any;
  while (patterns.size() > 700) {
    auto pos = static_cast<uint32_t>(any(rng) % patterns.size());
    auto last = static_cast<uint32_t>(patterns.size() - 1);
    trie.erase(patterns[pos], pos);
    if (pos != last) {
      trie.renumber(patterns[last], last, pos);
      patterns[pos] = patterns[last];
    }
    patterns.pop_back();
  }
  agree();

  while (!patterns.empty()) {
    trie.erase(patterns.back(), static_cast<uint32_t>(patterns.size() - 1));
    patterns.pop_back();
  }
  CHECK(trie.empty());  // every node of a removed pattern was pruned
}
