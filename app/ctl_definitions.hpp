// rabbitmqctl's definition and inspection verbs for `mqnode ctl`: users, vhosts,
// permissions, the list_* commands with their column arguments, definitions export and
// import, hash_password. Each is one or a few requests to the management API over the
// node's control socket; texts and exit codes are rabbitmqctl 3.10's.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace mqnode::app {

class CtlDefinitions {
 public:
  // Adds the verbs to <ctl> (the "ctl" subcommand).
  explicit CtlDefinitions(CLI::App& ctl);

  // True when one of these verbs was given.
  bool selected() const;
  // Runs it against the node whose control socket is <socket>; the exit code.
  int run(const std::string& socket, bool quiet) const;

 private:
  CLI::App* add(CLI::App& ctl, const char* name, const char* help);

  std::vector<CLI::App*> verbs_;
  std::string vhost_ = "/";
  std::string user_, password_, name_, path_;
  std::string configure_, write_, read_, description_;
  std::vector<std::string> args_;  // tags or columns
  bool no_headers_ = false;
  bool if_empty_ = false, if_unused_ = false;
};

}  // namespace mqnode::app
