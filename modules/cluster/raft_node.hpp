// One node of the cluster's raft group, as the asio loop sees it. Raft (libraft 0.15 with
// its libuv disk I/O and our transport, raft_transport.hpp) runs on a thread of its own
// with its own libuv loop; this object never calls raft. Requests cross to that thread
// through a locked queue and one uv_async_send (signals coalesce: the raft thread drains
// the whole queue each time); results and status come back with asio::post. The rules
// that make an answer trustworthy are RaftCore's (raft_core.hpp).
// Loop thread only, unless a comment says otherwise.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "cluster/link.hpp"
#include "cluster/state_machine.hpp"
#include "core/log.hpp"

namespace mqnode::cluster {

struct RaftNodeConfig {
  std::filesystem::path dir;  // raft's log, metadata and snapshots (<data_dir>/raft); created
  unsigned election_timeout_ms = 1000;
  unsigned heartbeat_timeout_ms = 100;
  unsigned snapshot_threshold = 1024;  // applied entries between snapshots
  unsigned snapshot_trailing = 128;    // entries kept behind a snapshot, for followers just behind
};

class RaftNode {
 public:
  using Done = std::function<void(ProposeResult)>;  // called once, on the loop, never inline

  // The node's identity (raft id, name, cluster address) is <links>' own: raft links to
  // other nodes are <links>' authenticated links with purpose raft. <sm> is called on the
  // raft thread only and must outlive stop().
  RaftNode(asio::io_context& io, std::shared_ptr<Links> links, RaftNodeConfig cfg, StateMachine& sm,
           core::Logger log);
  ~RaftNode();
  RaftNode(const RaftNode&) = delete;
  RaftNode& operator=(const RaftNode&) = delete;

  // Starts raft on its thread from what cfg.dir holds. <bootstrap_if_empty>: with no raft
  // state there, first make a group whose only member is this node, a voter (the first node
  // of a cluster); without it an empty node waits for a leader to add it. Blocks until raft
  // has loaded its state; throws std::runtime_error with raft's reason.
  void start(bool bootstrap_if_empty);
  // Stops raft and joins its thread (after raft's pending disk writes, 5 s at most).
  // Requests in flight end as Committed or Unknown, waiting ones as Failed; later requests
  // fail at once. Idempotent.
  void stop();
  // stop() without blocking the loop while raft writes what it appended: <done> runs on
  // the loop once the raft thread has ended. Keep this object until then (destroying it
  // earlier joins the thread, and <done> is not called).
  void stop_async(std::function<void()> done);

  // Replicates <command>; <done> gets Committed only once raft applied it here for this request.
  // <announce>: the followers learn the commit at once (RaftCore::propose).
  void propose(std::vector<uint8_t> command, Done done, bool announce = false);
  void add_member(uint64_t id, const std::string& address, Role role, Done done);
  void assign_role(uint64_t id, Role role, Done done);
  void remove_member(uint64_t id, Done done);
  void transfer_leadership(uint64_t id, Done done);  // 0: to the most up-to-date voter

  // The last status the raft thread posted (it posts each change).
  const RaftStatus& status() const;
  // A node's name as its links told it (empty if no link with it has been up yet).
  std::string name_of(uint64_t id) const;
  // status() for the status endpoint, members named where known.
  void dump(nlohmann::json& out) const;

 private:
  struct Thread;
  struct LoopSide;
  // Runs <task> on the raft thread, or answers <done> with Failed if raft is not running.
  void to_raft(std::function<void(Thread&)> task, const Done& done);
  // For RaftCore (called on the raft thread): answers <done> on the loop, naming the leader
  // of a redirect when a link has told us its name.
  Done on_loop(Done done) const;

  asio::io_context& io_;
  std::shared_ptr<Links> links_;
  RaftNodeConfig cfg_;
  StateMachine& sm_;
  core::Logger log_;
  std::shared_ptr<LoopSide> side_;
  std::unique_ptr<Thread> thread_;
};

}  // namespace mqnode::cluster
