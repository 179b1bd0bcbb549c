// What changed in the cluster between two looks at raft's status, for the membership
// events of the event bus (core/events.hpp): members that joined or left, and whether
// this node reaches a majority. Pure: no raft, no clock of its own (callers pass the time).
#pragma once

#include <chrono>
#include <optional>
#include <vector>

#include "cluster/state_machine.hpp"

namespace mqnode::cluster {

struct MemberDiff {
  std::vector<Member> joined;  // in <after>, not in <before> (by id)
  std::vector<Member> left;    // in <before>, not in <after>
};
MemberDiff diff_members(const std::vector<Member>& before, const std::vector<Member>& after);

// Whether this node is in the majority: raft knows a leader. A node that knows none for
// longer than <grace> (an election takes an election timeout or two) is in a minority.
class QuorumWatch {
 public:
  using Clock = std::chrono::steady_clock;
  explicit QuorumWatch(Clock::duration grace) : grace_(grace) {}
  // <leader_known> at <now>: the new state (true: majority) when it changed, else nullopt.
  // The first call sets the state without reporting it unless it is a minority.
  std::optional<bool> update(bool leader_known, Clock::time_point now);
  bool majority() const { return majority_; }

 private:
  Clock::duration grace_;
  bool majority_ = true;
  std::optional<Clock::time_point> lost_since_;
};

}  // namespace mqnode::cluster
