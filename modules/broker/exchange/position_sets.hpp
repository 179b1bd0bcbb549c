// Sets of binding positions (indexes into an exchange's binding vector) with O(1) insert,
// erase and renumber. An exchange removes a binding by moving its last binding into the
// hole (so bindings() stays one dense vector), and every index that names positions must
// follow that move without searching: PositionSlots remembers where each position sits
// in its set.
#pragma once

#include <cstdint>
#include <vector>

namespace mqnode::broker {

// Unordered: erase moves the set's last element into the hole.
using PositionSet = std::vector<uint32_t>;

// Every position of the exchange is in exactly one set of a given PositionSlots (one
// set per key, per trie node, per destination...), so slot_ stays as long as the binding
// vector: insert appends the newest position, and the position that leaves the vector on
// a removal (its last) is the one erase or renumber gives up.
class PositionSlots {
 public:
  // <pos> is the newest binding (== the number of positions already held).
  void insert(PositionSet& set, uint32_t pos) {
    slot_.push_back(static_cast<uint32_t>(set.size()));
    set.push_back(pos);
  }

  // Removes <pos> from <set>, which holds it.
  void erase(PositionSet& set, uint32_t pos) {
    uint32_t i = slot_[pos];
    set[i] = set.back();
    slot_[set[i]] = i;
    set.pop_back();
    shrink_past(pos);
  }

  // The binding at <from> (held by <set>) now lives at <to>.
  void renumber(PositionSet& set, uint32_t from, uint32_t to) {
    uint32_t i = slot_[from];
    set[i] = to;
    slot_[to] = i;
    shrink_past(from);
  }

 private:
  void shrink_past(uint32_t pos) {
    if (pos + 1 == slot_.size()) slot_.pop_back();
  }

  std::vector<uint32_t> slot_;  // by position: its index in the set that holds it
};

}  // namespace mqnode::broker
