// The topic exchange's index: binding patterns in a trie over their words, with a branch
// per literal word and one each for '*' and '#', as RabbitMQ's rabbit_exchange_type_topic.
// Matching a routing key visits only the nodes its words can reach, so its cost does not
// grow with bindings that cannot match. Values are binding positions (see PositionSlots).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/exchange/position_sets.hpp"

namespace mqnode::broker {

// Words are separated by '.'; "" has no words, "a..b" has three ("a", "", "b"). In a
// pattern '*' matches exactly one word (possibly empty) and '#' zero or more; in a routing
// key they are plain words.
class TopicTrie {
 public:
  // Adds <pos> under <pattern>. O(words). <pos> is the newest binding (see PositionSlots).
  void insert(std::string_view pattern, uint32_t pos);
  // Removes <pos>, held under <pattern>, and the nodes this leaves empty. O(words).
  void erase(std::string_view pattern, uint32_t pos);
  // The binding under <pattern> at <from> now lives at <to>. O(words).
  void renumber(std::string_view pattern, uint32_t from, uint32_t to);
  // Appends the positions whose pattern matches <routing_key>, each once. The work is
  // bounded by (nodes reached) x (words + 1), also for patterns such as "#.a.#.a.#".
  void match(std::string_view routing_key, std::vector<uint32_t>& out) const;
  bool empty() const;

 private:
  struct WordHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view w) const { return std::hash<std::string_view>{}(w); }
  };
  struct Node {
    using Words = std::unordered_map<std::string, std::unique_ptr<Node>, WordHash, std::equal_to<>>;
    // Allocated with the first literal child: most nodes are leaves, and an empty map
    // would cost a leaf more than the rest of it.
    std::unique_ptr<Words> words;
    std::unique_ptr<Node> star, hash;
    PositionSet bound;  // bindings whose pattern ends here
    bool empty() const { return !words && !star && !hash && bound.empty(); }
  };
  struct Matcher;
  struct Hop {
    Node* parent;
    std::string_view word;
  };

  // The node <pattern> ends at, created with the nodes leading to it if missing; each hop
  // taken is appended to <path> when given.
  Node& node_for(std::string_view pattern, std::vector<Hop>* path);

  Node root_;
  PositionSlots slots_;
};

}  // namespace mqnode::broker
