// The Catalog replicated by raft: a ChangeLog whose proposals become raft entries, and the
// StateMachine those entries are applied to. Raft calls the StateMachine on its own thread;
// everything that touches the Catalog is posted to the loop (asio::post is FIFO, and raft
// posts an entry's apply before its proposer's Committed), so the loop applies entries in
// log order and a proposer's result is the loop's apply result for its own index.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>

#include <asio/io_context.hpp>

#include "broker/catalog.hpp"
#include "cluster/raft_node.hpp"
#include "cluster/state_machine.hpp"

namespace mqnode::broker {

// The result a proposer gets when raft could not say "applied": an error, never a success.
ChangeResult change_result_of(const cluster::ProposeResult& r);

class RaftChangeLog final : public ChangeLog, public cluster::StateMachine {
 public:
  // What to do with a proposal this node cannot append (it is not the leader): send the
  // encoded change to <leader> and answer <done> with the leader's result.
  using Forward = std::function<void(const cluster::NotLeader& leader, std::vector<uint8_t> change, ProposeDone done)>;

  RaftChangeLog(asio::io_context& io, Catalog& catalog, core::Logger log);
  ~RaftChangeLog() override;

  // Loop thread. <raft>: where proposals go (nullptr: refused, the app is stopping).
  void set_raft(cluster::RaftNode* raft);
  void set_forward(Forward f);

  // ChangeLog, loop thread: proposes <change>; not the leader → forwarded when a Forward is set.
  void submit(const Change& change, ProposeDone done) override;
  // Loop thread: proposes an encoded change here only (a proposal forwarded to this node);
  // <done> also gets the entry's raft index when it was committed (else 0).
  using IndexedDone = std::function<void(ChangeResult, uint64_t index)>;
  void submit_local(std::vector<uint8_t> change, IndexedDone done);
  // Loop thread: runs <fn> once this node's catalog has applied the entry at <index> (a
  // change the leader committed for a forwarded proposal: its proposer here reads its own
  // write), or when raft stops here.
  void when_applied(uint64_t index, std::function<void()> fn);

  // cluster::StateMachine, raft thread only.
  std::vector<uint8_t> apply(uint64_t index, std::span<const uint8_t> command) override;
  std::vector<uint8_t> snapshot() override;
  void restore(std::span<const uint8_t> snapshot) override;

  // How long snapshot() waits for the loop before it gives up (raft retries later).
  static constexpr std::chrono::seconds kLoopWait{5};

 private:
  struct Side;
  // Here: proposed by this node (forwarded to the leader when this is not it). Forwarded:
  // from another node, which waits to apply it (the commit is announced at once).
  enum class Origin { Here, Forwarded };
  void propose(std::vector<uint8_t> change, IndexedDone done, Origin origin);
  // Raft thread: runs <task> on the loop and waits for it, kLoopWait at most; throws
  // std::runtime_error when the loop did not start it in time (then it never runs).
  void on_loop_and_wait(std::function<void(Side&)> task);

  asio::io_context& io_;
  std::shared_ptr<Side> side_;  // loop-side state; posted work and callbacks hold it weakly
  core::Logger log_;
};

// A snapshot: the changes that rebuild a catalog (Catalog::definitions), as frames.
std::vector<uint8_t> encode_definitions(const std::vector<Change>& changes);
std::vector<Change> decode_definitions(std::span<const uint8_t> bytes);  // throws ChangeDecodeError

}  // namespace mqnode::broker
