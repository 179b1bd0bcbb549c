#include "ctl_cluster.hpp"

#include <chrono>
#include <iostream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ctl.hpp"

namespace mqnode::app {

namespace {

using nlohmann::json;

inline constexpr int kExitTempFail = 75;  // EX_TEMPFAIL: rabbitmqctl's timeouts

void print_nodes(const json& status, const char* title, const char* key) {
  std::cout << "\n" << title << "\n\n";
  if (status.contains(key) && status[key].is_array())
    for (const auto& n : status[key]) std::cout << n.get<std::string>() << "\n";
}

// Sections in rabbitmqctl 3.10's order; a node's facts only for the running ones.
void print_status(const json& s, bool quiet) {
  if (!quiet) std::cout << "Cluster status of node " << s.value("node", "") << " ...\n";
  const auto cpu_cores = s.value("cpu_cores", json::object());
  std::cout << "Basics\n\nCluster name: " << s.value("cluster_name", "") << "\n";
  if (s.contains("leader")) std::cout << "Leader: " << s.value("leader", "") << "\n";
  print_nodes(s, "Disk Nodes", "disk_nodes");
  if (!s.value("ram_nodes", json::array()).empty()) print_nodes(s, "RAM Nodes", "ram_nodes");
  print_nodes(s, "Running Nodes", "running_nodes");
  std::cout << "\nVersions\n\n";
  const auto versions = s.value("versions", json::object());
  for (const auto& [name, v] : versions.items())
    std::cout << name << ": " << v.value("rabbitmq_name", "mqnode") << " " << v.value("rabbitmq_version", "") << "\n";
  std::cout << "\nCPU Cores\n\n";
  for (const auto& [name, c] : cpu_cores.items())
    std::cout << "Node: " << name << ", available CPU cores: " << c.get<int>() << "\n";
  std::cout << "\nMaintenance status\n\n";
  const auto maintenance = s.value("maintenance_status", json::object());
  for (const auto& [name, st] : maintenance.items())
    std::cout << "Node: " << name << ", status: " << st.get<std::string>() << "\n";
  std::cout << "\nAlarms\n\n";
  const auto alarms = s.value("alarms", json::array());
  if (alarms.empty()) std::cout << "(none)\n";
  for (const auto& a : alarms)
    std::cout << (a.value("resource", "") == "disk" ? "Free disk space alarm on node " : "Memory alarm on node ")
              << a.value("node", "") << "\n";
  // Raft never splits the cluster: a minority refuses writes instead.
  std::cout << "\nNetwork Partitions\n\n(none)\n";
  std::cout << "\nListeners\n\n";
  const auto listeners = s.value("listeners", json::object());
  if (listeners.empty()) std::cout << "(none)\n";
  for (const auto& [name, ls] : listeners.items())
    for (const auto& l : ls)
      std::cout << fmt::format("Node: {}, interface: {}, port: {}, protocol: {}, purpose: {}\n", name,
                               l.value("interface", ""), l.value("port", 0), l.value("protocol", ""),
                               l.value("purpose", ""));
  std::cout << "\nFeature flags\n\n";
  const auto flags = s.value("feature_flags", json::array());
  if (flags.empty()) std::cout << "(none)\n";
  for (const auto& f : flags) std::cout << "Flag: " << f.value("name", "") << ", state: " << f.value("state", "") << "\n";
}

}  // namespace

CtlCluster::CtlCluster(CLI::App& ctl) {
  reset_ = ctl.add_subcommand("reset", "leave the cluster and forget the node's cluster state (requires stop_app)");
  force_reset_ = ctl.add_subcommand("force_reset", "forget the node's cluster state without asking the cluster "
                                                   "(requires stop_app; then forget_cluster_node it on a member)");
  join_cluster_ = ctl.add_subcommand("join_cluster", "make this node a member of NODE's cluster (requires stop_app)");
  join_cluster_->add_flag("--ram", ram_, "join as a RAM node (a non-voting raft standby)");
  join_cluster_->add_flag("--disc", disc_, "join as a disc node (a voter); the default for --role disc");
  join_cluster_->add_option("node", node_, "a node of the cluster: rabbit@host, host or host:port")->required();
  cluster_status_ = ctl.add_subcommand("cluster_status", "the cluster's disc, RAM and running nodes");
  cluster_status_->add_option("--formatter", formatter_, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  forget_ = ctl.add_subcommand("forget_cluster_node", "remove NODE (not running) from the cluster");
  forget_->add_flag("--offline", offline_, "this node's app is stopped: a running member removes NODE");
  forget_->add_option("node", node_, "the node to remove")->required();
  change_type_ = ctl.add_subcommand("change_cluster_node_type", "make this node a disc (voter) or ram (standby) node "
                                                                "(requires stop_app; done at start_app)");
  change_type_->add_option("type", type_, "disc or ram")->required()->check(CLI::IsMember({"disc", "disk", "ram"}));
  update_nodes_ = ctl.add_subcommand("update_cluster_nodes", "take the list of cluster members from NODE "
                                                             "(requires stop_app)");
  update_nodes_->add_option("node", node_, "a running member of this node's cluster")->required();
  await_startup_ = ctl.add_subcommand("await_startup", "wait until the node's broker app has started (in a cluster: "
                                                       "knows its leader)");
  await_startup_->add_option("-t,--timeout", timeout_, "seconds to wait")->capture_default_str();
  for (CLI::App* cmd : {reset_, force_reset_, join_cluster_, cluster_status_, forget_, change_type_, update_nodes_,
                        await_startup_})
    cmd->fallthrough();
}

bool CtlCluster::selected() const {
  for (CLI::App* cmd : {reset_, force_reset_, join_cluster_, cluster_status_, forget_, change_type_, update_nodes_,
                        await_startup_})
    if (cmd->parsed()) return true;
  return false;
}

int CtlCluster::run(const std::string& socket, bool quiet) const {
  auto say = [quiet](const json& body) {
    if (!quiet && !body.value("message", "").empty()) std::cout << body.value("message", "") << "\n";
  };
  if (reset_->parsed() || force_reset_->parsed()) {
    say(node_command(socket, reset_->parsed() ? "reset" : "force_reset"));
  } else if (join_cluster_->parsed()) {
    if (ram_ && disc_) throw CtlFailure{kExitUsage, "Error: --ram and --disc exclude each other"};
    json args{{"node", node_}};
    if (ram_ || disc_) args["ram"] = ram_;
    say(node_command(socket, "join_cluster", args));
  } else if (forget_->parsed()) {
    // As rabbitmqctl, the banner comes first, whatever the outcome.
    if (!quiet) std::cout << fmt::format("Removing node {} from the cluster\n", node_);
    node_command(socket, "forget_cluster_node", json{{"node", node_}, {"offline", offline_}});
  } else if (change_type_->parsed()) {
    say(node_command(socket, "change_cluster_node_type", json{{"type", type_ == "disk" ? "disc" : type_}}));
  } else if (update_nodes_->parsed()) {
    say(node_command(socket, "update_cluster_nodes", json{{"node", node_}}));
  } else if (cluster_status_->parsed()) {
    auto body = node_command(socket, "cluster_status");
    body.erase("message");
    if (formatter_ == "json") {
      std::cout << body.dump() << "\n";
    } else {
      print_status(body, quiet);
    }
  } else if (await_startup_->parsed()) {
    // The node answers 409 until its app runs; a node not up yet has no socket (69): both wait.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_);
    for (;;) {
      try {
        node_command(socket, "await_startup");
        return 0;
      } catch (const CtlFailure& f) {
        if (f.code != kExitUnavailable) throw;
        if (std::chrono::steady_clock::now() >= deadline)
          throw CtlFailure{kExitTempFail, fmt::format("Error: timed out waiting for the node to start up ({} s): {}",
                                                      timeout_, f.message)};
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  return 0;
}

}  // namespace mqnode::app
