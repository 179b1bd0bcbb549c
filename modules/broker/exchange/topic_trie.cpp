#include "broker/exchange/topic_trie.hpp"

#include <algorithm>

namespace mqnode::broker {

namespace {
// Calls <fn> for each word of <s>: "" has none, "a." has "a" and "".
template <typename Fn>
void for_each_word(std::string_view s, Fn&& fn) {
  if (s.empty()) return;
  for (;;) {
    auto dot = s.find('.');
    fn(s.substr(0, dot));
    if (dot == std::string_view::npos) return;
    s.remove_prefix(dot + 1);
  }
}
}  // namespace

TopicTrie::Node& TopicTrie::node_for(std::string_view pattern, std::vector<Hop>* path) {
  Node* n = &root_;
  bool after_hash = false;
  for_each_word(pattern, [&](std::string_view w) {
    // "#.#" matches exactly what "#" matches: one node for both keeps a run of '#' from
    // multiplying the ways a key can be split between them.
    if (w == "#" && after_hash) return;
    after_hash = w == "#";
    if (path) path->push_back({n, w});
    std::unique_ptr<Node>* next;
    if (w == "*") {
      next = &n->star;
    } else if (w == "#") {
      next = &n->hash;
    } else {
      if (!n->words) n->words = std::make_unique<Node::Words>();
      auto it = n->words->find(w);
      if (it == n->words->end()) it = n->words->emplace(std::string(w), nullptr).first;
      next = &it->second;
    }
    if (!*next) *next = std::make_unique<Node>();
    n = next->get();
  });
  return *n;
}

void TopicTrie::insert(std::string_view pattern, uint32_t pos) { slots_.insert(node_for(pattern, nullptr).bound, pos); }

void TopicTrie::erase(std::string_view pattern, uint32_t pos) {
  std::vector<Hop> path;
  Node* n = &node_for(pattern, &path);
  slots_.erase(n->bound, pos);
  // Prune the branch this leaves empty, deepest first, so the trie holds only live patterns.
  for (auto hop = path.rbegin(); hop != path.rend() && n->empty(); ++hop) {
    Node& parent = *hop->parent;
    if (hop->word == "*") {
      parent.star.reset();
    } else if (hop->word == "#") {
      parent.hash.reset();
    } else {
      parent.words->erase(parent.words->find(hop->word));
      if (parent.words->empty()) parent.words.reset();
    }
    n = &parent;
  }
}

void TopicTrie::renumber(std::string_view pattern, uint32_t from, uint32_t to) {
  slots_.renumber(node_for(pattern, nullptr).bound, from, to);
}

bool TopicTrie::empty() const { return root_.empty(); }

// RabbitMQ's trie_match: at each node try the key's next word, then '*', then let '#'
// swallow any number of words. A '#' node may be reached again with a different number of
// words consumed; it is expanded from each word index at most once, which keeps the work
// polynomial and reports every binding once.
struct TopicTrie::Matcher {
  std::vector<std::string_view> words;
  std::vector<uint32_t>& out;
  std::vector<std::pair<const Node*, std::size_t>> hash_from;  // '#' node -> lowest index expanded

  // <n> is reached with the first <i> words consumed.
  void visit(const Node& n, std::size_t i) {
    if (i == words.size()) {
      out.insert(out.end(), n.bound.begin(), n.bound.end());
    } else {
      if (n.words)
        if (auto it = n.words->find(words[i]); it != n.words->end()) visit(*it->second, i + 1);
      if (n.star) visit(*n.star, i + 1);
    }
    if (n.hash) swallow(*n.hash, i);
  }

  // The '#' node <h> is reached with <i> words consumed; it consumes words i..j-1 for each j.
  void swallow(const Node& h, std::size_t i) {
    std::size_t end = words.size() + 1;
    auto seen = std::find_if(hash_from.begin(), hash_from.end(), [&](const auto& s) { return s.first == &h; });
    if (seen == hash_from.end()) {
      hash_from.emplace_back(&h, i);
    } else {
      if (seen->second <= i) return;
      end = seen->second;
      seen->second = i;
    }
    for (std::size_t j = i; j < end; ++j) visit(h, j);
  }
};

void TopicTrie::match(std::string_view routing_key, std::vector<uint32_t>& out) const {
  Matcher m{{}, out, {}};
  for_each_word(routing_key, [&](std::string_view w) { m.words.push_back(w); });
  m.visit(root_, 0);
}

}  // namespace mqnode::broker
