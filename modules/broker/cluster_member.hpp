// This node as a member of a cluster (/cluster present): the cookie, the node id, the
// cluster port (links), the raft group that replicates the Catalog (RaftChangeLog), and the
// peer requests nodes make to each other (join, forwarded proposals, status). The broker
// module owns one; its raft part runs while the broker app runs (start_app .. stop_app),
// the links as long as the process. Loop thread only.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "broker/config.hpp"
#include "broker/raft_change_log.hpp"
#include "cluster/config.hpp"
#include "cluster/membership.hpp"
#include "cluster/peer.hpp"
#include "core/events.hpp"
#include "core/module.hpp"

namespace mqnode::broker {

// The answer to an operator's command (mqnode ctl): an HTTP status for the control socket
// and a sentence (or a JSON document).
struct CommandReply {
  // 200 ok, 412 the app must be stopped first, 409 the cluster refuses (rabbitmqctl's
  // {error, …} texts), 503 a peer out of reach, 422 joining or forgetting itself, 500 other.
  int status = 200;
  std::string message;
  nlohmann::json body;
};
using CommandDone = std::function<void(CommandReply)>;

class ClusterMember {
 public:
  // <ram>: this node joins as a standby (raft's non-voter); disc nodes vote.
  ClusterMember(asio::io_context& io, core::NodeInfo node, cluster::ClusterConfig cfg, bool ram, core::Logger log);
  ~ClusterMember();

  // Process start: reads (or creates) the cookie and the node id, listens on /cluster/bind.
  // Throws std::runtime_error (cookie refused, port taken).
  void open();
  // start_app: replicates <catalog> through raft from now on. With no raft state, no join
  // pending and no seeds, the node bootstraps a cluster of its own. Throws on raft errors.
  void start(Catalog& catalog, const BrokerConfig& definitions);
  // stop_app: raft stops (5 s at most); <catalog> applies locally again. stop() waits on
  // the loop; stop_async() calls <done> on the loop once raft's thread ended (start()
  // refuses meanwhile).
  void stop();
  void stop_async(std::function<void()> done);
  // Process stop: stop() and the cluster port closes.
  void close();
  bool running() const { return raft_ != nullptr; }

  // mqnode ctl's cluster commands (<args> as the control socket passed them): reset,
  // force_reset, join_cluster {node, ram?}, cluster_status, forget_cluster_node {node,
  // offline}, change_cluster_node_type {type}, update_cluster_nodes {node}. <done> is
  // called once. Status 404 for another <op>.
  void command(const std::string& op, const nlohmann::json& args, CommandDone done);
  // The cluster side of await_startup: raft runs and knows a leader (this node's catalog
  // is being caught up, or is).
  bool ready() const;
  // What cluster_status reports of this node that the broker knows: {"alarms": ["memory",
  // "disk"], "listeners": [{"interface", "port"}]} (AMQP listeners).
  void set_facts(std::function<nlohmann::json()> facts) { facts_ = std::move(facts); }
  // Where membership events go (joined, left, leaving, minority, majority); nullptr: nowhere.
  void set_events(core::EventBus* events) { events_ = events; }

  // ctl reset / force_reset (app stopped). reset first has the cluster remove this node
  // from raft's configuration (through a running member); force_reset does not ask. Both
  // then forget raft's state and any pending join, and take a new node id, so that the
  // old raft state can never be confused with this node again.
  void reset(bool force, CommandDone done);
  // ctl join_cluster (app stopped): checks that <node> answers with our cookie, then
  // resets; start() asks it to add this node (<ram>: as a standby; nullopt: as the role says).
  void join(const std::string& node, std::optional<bool> ram, CommandDone done);
  // ctl cluster_status: this node's view, every member asked whether it runs.
  void status(CommandDone done);
  // ctl forget_cluster_node [--offline] NODE: removes a member that is not running from
  // raft's configuration. Online (the app runs here) or <offline> (the app is stopped
  // here: a running member of the last known configuration does it).
  void forget(const std::string& node, bool offline, CommandDone done);
  // ctl change_cluster_node_type disc|ram (app stopped): recorded now, carried out by the
  // leader when start_app announces this node again (raft voter or standby).
  void change_type(bool ram, CommandDone done);
  // ctl update_cluster_nodes NODE (app stopped): the members this node remembers (for
  // reset, forget --offline, change_cluster_node_type) are taken from <node>.
  void update_nodes(const std::string& node, CommandDone done);

  void dump(nlohmann::json& out) const;
  // The cluster port's links (after open()), for the other traffic between nodes.
  const std::shared_ptr<cluster::Links>& links() const { return links_; }
  // Where <node> (a member's name) takes links: "host:port", or empty when unknown.
  std::string address_of(const std::string& node) const;
  // Housekeeping: the leader proposes the config file's definitions that are missing.
  void tick();

 private:
  void on_peer(const cluster::NodeIdentity& from, const nlohmann::json& request, cluster::PeerReplyFn reply);
  void on_join_request(const nlohmann::json& request, cluster::PeerReplyFn reply);
  // {"op": "member", "action": "remove"|"assign", "id", "role"}: the leader changes raft's
  // configuration; a follower redirects to it. Replies {"ok"}, {"redirect"} or {"error"}.
  void on_member_request(const nlohmann::json& request, cluster::PeerReplyFn reply);
  // Has the leader carry out <request> (on_member_request's): here when this node leads,
  // else through the known leader and the remembered members, following redirects.
  // <done> gets {"ok"}, {"error"}, or {"unreachable": why} when no member answered.
  void member_change(nlohmann::json request, cluster::PeerReplyFn done);
  void call_leader(std::vector<std::string> addresses, nlohmann::json request, int hops, std::string last_error,
                   cluster::PeerReplyFn done);
  // For join and update_cluster_nodes: the refusal when the app runs or <node> does not
  // resolve; else nullopt and <address>.
  std::optional<CommandReply> stopped_and_resolved(const std::string& node, std::string& address) const;
  // Forgets raft's state and any pending join; a new node id and links that carry it.
  CommandReply wipe(bool force);
  // Listens on /cluster/bind with links that present <id>.
  void open_links(uint64_t id);
  // The members this node last saw in raft's configuration (<data_dir>/cluster_members.json):
  // [{"id", "address", "name", "role": "disc"|"ram"}]; written when it changes.
  nlohmann::json remembered_members() const;
  void remember_members();
  nlohmann::json members_json() const;
  // The member <node> names (a name as operators type it, or an address), or null.
  nlohmann::json find_member(const std::string& node) const;
  nlohmann::json info() const;
  // tick(): publishes what changed in the membership since the last look.
  void watch_membership();
  void publish(core::MembershipEvent::Kind kind, std::string node, std::string role = {});
  // stop()/stop_async(): the Leaving event, and proposals refused from now on.
  void leave_app();
  void forward(const cluster::NotLeader& leader, std::vector<uint8_t> change, ProposeDone done);
  // Asks the seed of a pending join to add this node; retried every second until it has.
  void announce();
  std::filesystem::path join_file() const;
  std::filesystem::path members_file() const;
  std::filesystem::path raft_dir() const;

  asio::io_context& io_;
  core::NodeInfo node_;
  cluster::ClusterConfig cfg_;
  bool ram_;
  core::Logger log_;
  std::string cookie_path_;
  std::string cookie_;
  std::function<nlohmann::json()> facts_;
  std::vector<cluster::Member> remembered_;  // what members_file() holds
  std::string remembered_dump_;              // and as written (names included)
  core::EventBus* events_ = nullptr;
  std::optional<std::vector<cluster::Member>> seen_;  // members at the last watch_membership()
  cluster::QuorumWatch quorum_;
  std::shared_ptr<cluster::Links> links_;
  Catalog* catalog_ = nullptr;
  const BrokerConfig* definitions_ = nullptr;
  bool definitions_proposed_ = false;
  std::unique_ptr<RaftChangeLog> change_log_;
  std::unique_ptr<cluster::RaftNode> raft_;
  std::unique_ptr<cluster::RaftNode> stopping_raft_;  // stop_async() under way
  asio::steady_timer retry_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // callbacks check it
};

}  // namespace mqnode::broker
