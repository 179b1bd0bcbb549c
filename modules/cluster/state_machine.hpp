// What the consensus layer replicates into (the Catalog implements it) and what it answers
// a proposer. Kept free of raft's headers so that users of the cluster do not see them.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace mqnode::cluster {

// Raft thread only, every method: the state machine posts what the loop needs (an
// immutable view) to the loop itself. Given the same entries in the same order, every node
// must end in the same state: apply() is deterministic and consults no clock or local fact.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies the committed entry at <index> (raft indexes, increasing, with gaps where
  // raft's own entries sit). The reply goes to the proposer, if it is on this node (a
  // validation error, say); elsewhere it is dropped. Must not throw: raft cannot skip an
  // entry, so a refusal is a reply, and an exception ends the process (std::terminate).
  virtual std::vector<uint8_t> apply(uint64_t index, std::span<const uint8_t> command) = 0;
  // The whole state, for a snapshot; raft then compacts the log behind it.
  virtual std::vector<uint8_t> snapshot() = 0;
  // Replaces the whole state with <snapshot> (from snapshot() here or on another node).
  // Throws std::exception if it cannot be read; raft then refuses the snapshot.
  virtual void restore(std::span<const uint8_t> snapshot) = 0;
};

// The outcomes of a proposal (and, with index 0 and no reply, of a membership change).
struct Committed {  // applied by this node's raft for this request: a success
  uint64_t index = 0;
  std::vector<uint8_t> reply;
};
struct NotLeader {  // not appended anywhere: send it to the leader, or retry later
  uint64_t leader_id = 0;      // 0 when no leader is known
  std::string leader_address;  // the leader's cluster address
  std::string leader_name;     // when a link has told this node the leader's name
};
struct Unknown {  // appended, then leadership was lost or the node stopped: it may or may not be applied
  std::string why;
};
struct Failed {  // refused before it was appended: it is not applied anywhere
  std::string why;
};
using ProposeResult = std::variant<Committed, NotLeader, Unknown, Failed>;

enum class Role : uint8_t { Voter, Standby };  // disc nodes vote, ram nodes are standbys

struct Member {
  uint64_t id = 0;
  std::string address;
  Role role = Role::Standby;
  bool operator==(const Member&) const = default;
};

// What a node knows of the group at one moment; posted to the loop when it changes.
struct RaftStatus {
  enum class State { Unavailable, Follower, Candidate, Leader };
  State state = State::Unavailable;
  uint64_t term = 0;
  uint64_t leader_id = 0;
  std::string leader_address;
  bool serving = false;  // leader whose barrier for this term is applied: proposals go through
  uint64_t last_applied = 0;
  std::vector<Member> members;  // spares are left out: raft adds a member as a spare first
  bool operator==(const RaftStatus&) const = default;
};

}  // namespace mqnode::cluster
