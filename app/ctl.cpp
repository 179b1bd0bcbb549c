#include "ctl.hpp"
#include "ctl_definitions.hpp"

#include <iostream>
#include <system_error>

#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/http.hpp"
#include "ctl_cluster.hpp"
#include "mgmt/mgmt_module.hpp"

namespace mqnode::app {

namespace {

// One request over the control socket ("Connection: close", so the reply ends at EOF).
core::http::Response exchange(const std::string& socket, const std::string& method, const std::string& target,
                              const std::string& body = {}) {
  asio::io_context io;
  asio::local::stream_protocol::socket sock(io);
  asio::error_code ec;
  try {
    sock.connect(asio::local::stream_protocol::endpoint(socket), ec);
  } catch (const std::system_error& e) {  // a path longer than a socket address holds
    ec = e.code();
  }
  if (ec)
    throw CtlFailure{kExitUnavailable,
                     fmt::format("Error: unable to connect to the node's control socket {}: {}\n"
                                 "Is mqnode running with this data dir (--data-dir, or /node/data_dir of -c CONFIG)?",
                                 socket, ec.message())};
  std::string req = fmt::format("{} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", method, target);
  if (!body.empty()) req += fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n", body.size());
  req += "\r\n" + body;
  asio::write(sock, asio::buffer(req), ec);
  std::string wire;
  if (!ec) asio::read(sock, asio::dynamic_buffer(wire), ec);  // ends with eof
  auto resp = core::http::parse_response(wire);
  if (!resp)
    throw CtlFailure{kExitSoftware, fmt::format("Error: no valid reply from {} ({})", socket,
                                                ec && ec != asio::error::eof ? ec.message() : "truncated")};
  return *resp;
}

// The node's reason for a refusal, from RabbitMQ's {"error", "reason"} body.
[[noreturn]] void refused(const core::http::Response& r) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  std::string reason = j.is_object() && j.contains("reason") && j["reason"].is_string()
                           ? j["reason"].get<std::string>()
                           : r.body;
  int code = r.status == 503 ? kExitUnavailable : (r.status == 400 || r.status == 404) ? kExitDataErr : kExitSoftware;
  throw CtlFailure{code, "Error:\n" + reason};
}

std::string policy_path(const std::string& vhost, const std::string& name = {}) {
  std::string p = "/api/policies/" + core::http::url_encode(vhost);
  if (!name.empty()) p += "/" + core::http::url_encode(name);
  return p;
}

}  // namespace

nlohmann::json node_command(const std::string& socket, const std::string& op, const nlohmann::json& args) {
  auto r = exchange(socket, "POST", "/api/mqnode/node/" + op, args.is_null() ? std::string{} : args.dump());
  auto body = nlohmann::json::parse(r.body, nullptr, false);
  if (!body.is_object()) throw CtlFailure{kExitSoftware, "Error: the node sent a reply that is not a JSON object"};
  if (r.status == 200) return body;
  const std::string message = body.value("message", body.value("reason", r.body));
  // 412: the app must be stopped first (a usage error for rabbitmqctl 3.10, 64); 409: the
  // cluster refuses (rabbitmqctl's {error, ...} texts) and 503: a peer out of reach: the
  // node cannot do it now (69); anything else (joining itself, an internal error) is 70.
  const int code = r.status == 412                     ? kExitUsage
                   : r.status == 409 || r.status == 503 ? kExitUnavailable
                                                        : kExitSoftware;
  throw CtlFailure{code, message};
}

Ctl::Ctl(CLI::App& parent) {
  ctl_ = parent.add_subcommand("ctl", "manage the local node over its control socket (rabbitmqctl's commands)");
  ctl_->add_option("--data-dir", data_dir_, "the node's data dir (its control socket is <data_dir>/mqnode.sock)");
  ctl_->add_option("-c,--config", config_, "read the data dir from this config file's /node/data_dir");
  ctl_->add_flag("-q,--quiet", quiet_, "no informational messages");
  ctl_->require_subcommand(1);
  definitions_ = std::make_shared<CtlDefinitions>(*ctl_);

  set_policy_ = ctl_->add_subcommand("set_policy", "set a policy: NAME PATTERN DEFINITION");
  set_policy_->add_option("-p,--vhost", vhost_, "virtual host")->capture_default_str();
  set_policy_->add_option("--priority", priority_, "priority (the highest matching policy applies)")->capture_default_str();
  set_policy_->add_option("--apply-to", apply_to_, "queues, exchanges or all")
      ->check(CLI::IsMember({"queues", "exchanges", "all"}))
      ->capture_default_str();
  set_policy_->add_option("name", name_, "policy name")->required();
  set_policy_->add_option("pattern", pattern_, "regular expression matched against queue/exchange names")->required();
  set_policy_->add_option("definition", definition_, "JSON object, e.g. '{\"max-length\":10}'")->required();

  clear_policy_ = ctl_->add_subcommand("clear_policy", "clear a policy: NAME");
  clear_policy_->add_option("-p,--vhost", vhost_, "virtual host")->capture_default_str();
  clear_policy_->add_option("name", name_, "policy name")->required();

  list_policies_ = ctl_->add_subcommand("list_policies", "list the policies of a virtual host");
  list_policies_->add_option("-p,--vhost", vhost_, "virtual host")->capture_default_str();

  status_ = ctl_->add_subcommand("status", "the node's status: health and state of every module (JSON)");
  stop_app_ = ctl_->add_subcommand("stop_app", "stop the broker (AMQP listeners, connections, cluster membership); "
                                              "the process, lb and vip keep running");
  start_app_ = ctl_->add_subcommand("start_app", "start the broker stopped by stop_app");
  cluster_ = std::make_unique<CtlCluster>(*ctl_);
  // As rabbitmqctl, -q and --data-dir may come after the command too.
  for (CLI::App* cmd : {set_policy_, clear_policy_, list_policies_, status_, stop_app_, start_app_})
    cmd->fallthrough();
}

Ctl::~Ctl() = default;

int Ctl::run(const std::string& data_dir) const {
  const std::string socket = mgmt::control_socket_path(data_dir);
  if (definitions_->selected()) return definitions_->run(socket, quiet_);
  try {
    if (set_policy_->parsed()) {
      auto definition = nlohmann::json::parse(definition_, nullptr, false);
      if (!definition.is_object())
        throw CtlFailure{kExitDataErr, fmt::format("Error:\nDEFINITION must be a JSON object, got: {}", definition_)};
      if (!quiet_)
        std::cout << fmt::format("Setting policy \"{}\" for pattern \"{}\" to \"{}\" with priority \"{}\" for vhost \"{}\" ...\n",
                                 name_, pattern_, definition_, priority_, vhost_);
      nlohmann::json body = {{"pattern", pattern_}, {"definition", definition}, {"priority", priority_},
                             {"apply-to", apply_to_}};
      auto r = exchange(socket, "PUT", policy_path(vhost_, name_), body.dump());
      if (r.status != 201 && r.status != 204) refused(r);
      if (definition.contains("ha-mode"))
        std::cerr << fmt::format("Warning: policy \"{}\" has ha-mode, but mqnode does not replicate queues yet: the "
                                 "queues it matches keep one copy, on their home node\n",
                                 name_);
    } else if (clear_policy_->parsed()) {
      if (!quiet_) std::cout << fmt::format("Clearing policy \"{}\" on vhost \"{}\" ...\n", name_, vhost_);
      auto r = exchange(socket, "DELETE", policy_path(vhost_, name_));
      if (r.status != 204) refused(r);
    } else if (list_policies_->parsed()) {
      if (!quiet_) std::cout << fmt::format("Listing policies for vhost \"{}\" ...\n", vhost_);
      auto r = exchange(socket, "GET", policy_path(vhost_));
      if (r.status != 200) refused(r);
      auto list = nlohmann::json::parse(r.body, nullptr, false);
      if (!list.is_array()) throw CtlFailure{kExitSoftware, "Error: the node sent a policy list that is not a JSON array"};
      std::cout << "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n";
      for (const auto& p : list)
        std::cout << fmt::format("{}\t{}\t{}\t{}\t{}\t{}\n", p.value("vhost", ""), p.value("name", ""),
                                 p.value("pattern", ""), p.value("apply-to", ""), p.value("definition", nlohmann::json::object()).dump(),
                                 p.value("priority", 0));
    } else if (stop_app_->parsed() || start_app_->parsed()) {
      auto body = node_command(socket, stop_app_->parsed() ? "stop_app" : "start_app");
      if (!quiet_) std::cout << body.value("message", "") << "\n";
    } else if (cluster_->selected()) {
      return cluster_->run(socket, quiet_);
    } else if (status_->parsed()) {
      auto r = exchange(socket, "GET", "/api/mqnode/status");
      if (r.status != 200) refused(r);
      auto j = nlohmann::json::parse(r.body, nullptr, false);
      std::cout << (j.is_discarded() ? r.body : j.dump(2)) << "\n";
    }
  } catch (const CtlFailure& f) {
    std::cerr << f.message << "\n";
    return f.code;
  }
  return 0;
}

}  // namespace mqnode::app
