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

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "broker/config.hpp"
#include "broker/raft_change_log.hpp"
#include "cluster/config.hpp"
#include "cluster/peer.hpp"
#include "core/module.hpp"

namespace mqnode::broker {

// The answer to an operator's command (mqnode ctl): an HTTP status for the control socket
// and a sentence (or a JSON document).
struct CommandReply {
  int status = 200;  // 200 ok, 409 wrong state, 503 peer out of reach, 422 joining itself, 500 other
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
  // stop_app: raft stops (5 s at most); <catalog> applies locally again.
  void stop();
  // Process stop: stop() and the cluster port closes.
  void close();
  bool running() const { return raft_ != nullptr; }

  // ctl reset (app stopped): forgets raft's state and any pending join.
  CommandReply reset();
  // ctl join_cluster (app stopped): checks that <node> answers with our cookie, then
  // resets; start() asks it to add this node (<ram>: as a standby; nullopt: as the role says).
  void join(const std::string& node, std::optional<bool> ram, CommandDone done);
  // ctl cluster_status: this node's view, every member asked whether it runs.
  void status(CommandDone done);

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
  nlohmann::json info() const;
  void forward(const cluster::NotLeader& leader, std::vector<uint8_t> change, ProposeDone done);
  // Asks the seed of a pending join to add this node; retried every second until it has.
  void announce();
  std::filesystem::path join_file() const;
  std::filesystem::path raft_dir() const;

  asio::io_context& io_;
  core::NodeInfo node_;
  cluster::ClusterConfig cfg_;
  bool ram_;
  core::Logger log_;
  std::string cookie_path_;
  std::shared_ptr<cluster::Links> links_;
  Catalog* catalog_ = nullptr;
  const BrokerConfig* definitions_ = nullptr;
  bool definitions_proposed_ = false;
  std::unique_ptr<RaftChangeLog> change_log_;
  std::unique_ptr<cluster::RaftNode> raft_;
  asio::steady_timer retry_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // callbacks check it
};

}  // namespace mqnode::broker
