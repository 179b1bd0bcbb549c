// mqnode ctl's cluster verbs (rabbitmqctl's names, texts and exit codes): join_cluster,
// reset, force_reset, forget_cluster_node, change_cluster_node_type, update_cluster_nodes,
// cluster_status and await_startup. Each is a node command over the control socket
// (modules/broker/cluster_member.hpp does the work); this file parses and prints.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace mqnode::app {

class CtlCluster {
 public:
  // Adds the verbs to <ctl> (mqnode ctl).
  explicit CtlCluster(CLI::App& ctl);

  bool selected() const;
  // Runs the parsed verb against the node at control socket <socket>; returns the exit
  // code, or throws CtlFailure (ctl.hpp).
  int run(const std::string& socket, bool quiet) const;

 private:
  CLI::App* reset_;
  CLI::App* force_reset_;
  CLI::App* join_cluster_;
  CLI::App* cluster_status_;
  CLI::App* forget_;
  CLI::App* change_type_;
  CLI::App* update_nodes_;
  CLI::App* await_startup_;
  bool ram_ = false, disc_ = false, offline_ = false;
  std::string node_, type_, formatter_ = "table";
  int timeout_ = 300;
};

}  // namespace mqnode::app
