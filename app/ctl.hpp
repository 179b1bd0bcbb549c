// `mqnode ctl`: rabbitmqctl's commands for the local node, spoken as HTTP over the node's
// control socket <data_dir>/mqnode.sock (modules/mgmt). Exit codes are rabbitmqctl's
// (sysexits): 0 ok, 64 usage, 65 data error (the node refused the input), 69 node not
// running, 70 anything else.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace mqnode::app {

inline constexpr int kExitUsage = 64;        // EX_USAGE
inline constexpr int kExitDataErr = 65;      // EX_DATAERR
inline constexpr int kExitUnavailable = 69;  // EX_UNAVAILABLE
inline constexpr int kExitSoftware = 70;     // EX_SOFTWARE

class CtlDefinitions;
class CtlCluster;

// Thrown by a verb with the exit code and the message for stderr.
struct CtlFailure {
  int code;
  std::string message;
};

// One node command over the control socket (modules/broker: BrokerModule::command): its
// reply body, or CtlFailure with rabbitmqctl's exit code for the node's status.
nlohmann::json node_command(const std::string& socket, const std::string& op, const nlohmann::json& args = {});

class Ctl {
 public:
  // Adds "ctl" and its commands to <parent>.
  explicit Ctl(CLI::App& parent);
  ~Ctl();

  bool selected() const { return ctl_->parsed(); }
  // --data-dir / -c given to ctl itself (they win over the same options before "ctl").
  const std::string& data_dir() const { return data_dir_; }
  const std::string& config() const { return config_; }

  // Runs the parsed command against the node whose data dir is <data_dir>.
  int run(const std::string& data_dir) const;

 private:
  CLI::App* ctl_;
  std::shared_ptr<CtlDefinitions> definitions_;  // users, vhosts, permissions, list_*, definitions
  CLI::App* set_policy_;
  CLI::App* clear_policy_;
  CLI::App* list_policies_;
  CLI::App* status_;
  CLI::App* stop_app_;
  CLI::App* start_app_;
  std::unique_ptr<CtlCluster> cluster_;  // ctl_cluster.hpp
  std::string data_dir_, config_;
  bool quiet_ = false;
  std::string vhost_ = "/";
  int64_t priority_ = 0;
  std::string apply_to_ = "all";
  std::string name_, pattern_, definition_;
};

}  // namespace mqnode::app
