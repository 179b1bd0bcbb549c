// The raft-thread logic of a node, apart from how raft does its I/O (libuv in RaftNode, the
// in-memory fixture in the unit tests): the bridge from raft's FSM callbacks to our
// StateMachine, and the rules that defend against libraft 0.15's known defects
// (canonical/raft#220: a new leader may count entries of older terms as committed; votes on
// unpersisted indexes):
//   - a new leader appends a barrier and serves nothing (proposals, membership changes)
//     until raft has applied it; what arrives meanwhile waits, in order;
//   - success reaches a proposer only from raft's apply callback for that very request;
//   - an appended request whose callback reports an error (RAFT_LEADERSHIPLOST, a stop) is
//     Unknown, never a success and never a plain failure: it may be applied anyway.
// Nothing here calls into raft from inside a raft callback: follow-ups wait for observe().
// Raft thread only, all of it.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <vector>

// libraft's headers declare no C linkage of their own.
extern "C" {
#include <raft.h>
}

#include "cluster/state_machine.hpp"

namespace mqnode::cluster {

class RaftCore {
 public:
  using Done = std::function<void(ProposeResult)>;  // called once, on the raft thread

  explicit RaftCore(StateMachine& sm);
  RaftCore(const RaftCore&) = delete;
  RaftCore& operator=(const RaftCore&) = delete;
  ~RaftCore();

  // For raft_init(), before attach().
  raft_fsm* fsm() { return &fsm_; }
  // The raft instance this core serves; it must be closed before the core goes.
  void attach(raft* r) { raft_ = r; }

  // <announce>: once committed, tell the followers at once (a barrier entry carries the new
  // commit index) rather than with the next heartbeat — for a proposal another node
  // forwarded: that node answers its client only once it has applied the entry itself.
  void propose(std::vector<uint8_t> command, Done done, bool announce = false);
  // raft_add (as a spare, raft's only way in) and then raft_assign(<role>): two changes.
  void add_member(uint64_t id, const std::string& address, Role role, Done done);
  void assign_role(uint64_t id, Role role, Done done);
  void remove_member(uint64_t id, Done done);
  // To <id>, or to the most up-to-date voter when 0. Committed{} when raft reports the move.
  void transfer_leadership(uint64_t id, Done done);

  // Call after every batch of raft events (each libuv loop iteration; each fixture step):
  // notices a new or lost leadership, runs follow-ups, lets waiting requests through.
  void observe();
  RaftStatus status() const;
  // Before raft_close(): requests not yet handed to raft fail as Failed; later ones too.
  void stop();

 private:
  struct Waiting {
    std::function<void()> submit;  // hands the request to raft
    Done done;                     // fails it if leadership goes first
  };
  struct Apply;
  struct Barrier;
  struct Notice;
  struct Change;
  struct Transfer;

  void when_serving(std::function<void()> submit, Done done);
  void submit_apply(std::vector<uint8_t> command, Done done, bool announce);
  void announce_commit();
  enum class ChangeKind { Add, Assign, Remove };
  void submit_change(ChangeKind kind, uint64_t id, const std::string& address, int role, Done done);
  // Runs <call> (raft_apply & co. on <req>); if raft refuses at once, frees <req> and answers.
  template <class Request, class Call>
  void hand_over(Request* req, Call call);
  NotLeader not_leader() const;
  ProposeResult refused(int rv) const;

  static int fsm_apply(raft_fsm* fsm, const raft_buffer* buf, void** result) noexcept;
  static int fsm_snapshot(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n_bufs) noexcept;
  static int fsm_restore(raft_fsm* fsm, raft_buffer* buf) noexcept;
  static void apply_cb(struct raft_apply* req, int status, void* result) noexcept;
  static void barrier_cb(struct raft_barrier* req, int status) noexcept;
  static void notice_cb(struct raft_barrier* req, int status) noexcept;
  static void change_cb(raft_change* req, int status) noexcept;
  static void transfer_cb(struct raft_transfer* req) noexcept;

  StateMachine& sm_;
  raft_fsm fsm_{};
  raft* raft_ = nullptr;
  raft_term barrier_term_ = 0;  // the term whose barrier was appended (0: none)
  bool serving_ = false;        // that barrier is applied and the term has not changed
  bool stopped_ = false;
  // Commit notices (announce): one barrier in flight at a time; commits meanwhile ask for
  // one more when it is applied.
  bool notice_in_flight_ = false;
  bool notice_again_ = false;
  std::deque<Waiting> waiting_;
  std::vector<std::function<void()>> deferred_;  // follow-ups queued by raft callbacks
  // The reply of the entry raft just applied: raft calls the request's callback right after
  // the FSM's apply, for the same index, with no other apply between them.
  uint64_t reply_index_ = 0;
  std::vector<uint8_t> reply_;
};

}  // namespace mqnode::cluster
