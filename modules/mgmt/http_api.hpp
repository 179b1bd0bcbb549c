// The management HTTP API: the RabbitMQ management routes mqnode implements (JSON shapes as
// RabbitMQ's, so rabbitmqadmin-style clients work), mqnode's own status route and the
// Prometheus /metrics scrape of every module. The same routes serve the control socket
// (mqnode ctl; file permissions are the authentication) and the optional TCP listener
// (HTTP basic auth by a broker administrator).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/broker_module.hpp"
#include "broker/change.hpp"
#include "broker/policy.hpp"
#include "core/http.hpp"
#include "core/log.hpp"
#include "core/module.hpp"

namespace mqnode::mgmt {

// A request the API refuses: <status> and RabbitMQ's {"error", "reason"} body.
struct ApiError : std::runtime_error {
  ApiError(int s, std::string e, const std::string& reason) : std::runtime_error(reason), status(s), error(std::move(e)) {}
  int status;
  std::string error;  // "bad_request", "not_found", ...
};

// The body of PUT /api/policies/{vhost}/{name}:
// {"pattern": "^a", "definition": {...}, "priority": 0, "apply-to": "all"}.
struct PolicyBody {
  std::string pattern;
  nlohmann::json definition;
  int64_t priority = 0;
  std::string apply_to = "all";
};

// Checks the shape of the body (the definition itself is the broker's to validate);
// throws ApiError 400 naming the bad key. "name" and "vhost" keys are ignored (the URL
// says which policy), as clients that send whole definitions include them.
PolicyBody parse_policy_body(std::string_view body);

// The URL-decoded path segments after <prefix> ("/api/policies/%2F/ttl" after
// "/api/policies/" → {"/", "ttl"}); empty segments are kept so "a//b" is not "a/b".
std::vector<std::string> path_segments(std::string_view path, std::string_view prefix);

// A policy as GET /api/policies returns it.
nlohmann::json policy_to_api(const broker::Policy& p);

// A JSON error response in RabbitMQ's shape.
core::http::Response error_response(int status, std::string_view error, std::string_view reason);

// What the API reads: the node, every module (status, health, metrics) and the broker
// module when this node runs one.
struct ApiSources {
  core::NodeInfo node;
  std::vector<const core::Module*> modules;
  broker::BrokerModule* broker = nullptr;
};

class HttpApi {
 public:
  HttpApi(ApiSources src, core::Logger log) : src_(std::move(src)), log_(std::move(log)) {}

  // The routes. <require_admin>: every /api route needs HTTP basic auth by a broker user
  // tagged administrator (401 otherwise); /metrics never does, as RabbitMQ's Prometheus
  // endpoint. The handlers keep a pointer to this object: it must outlive the servers.
  std::shared_ptr<const core::http::Router> router(bool require_admin) const;

 private:
  using Request = core::http::Request;
  using Response = core::http::Response;

  Response overview(const Request& req) const;
  Response status(const Request& req) const;
  Response metrics(const Request& req) const;
  Response policies(const Request& req) const;
  Response policy_get(const Request& req) const;
  // A route that changes definitions: the change it asks for and its status on success.
  struct ChangeRequest {
    broker::Change change;
    int status = 204;
  };
  using ChangeMethod = ChangeRequest (HttpApi::*)(const Request&) const;
  ChangeRequest policy_put(const Request& req) const;
  ChangeRequest policy_delete(const Request& req) const;
  // Runs <m> (ApiError: its response) and proposes its change to the broker's catalog;
  // a refusal gets RabbitMQ's status and body.
  asio::awaitable<Response> propose(Request req, bool require_admin, ChangeMethod m) const;
  // POST /api/mqnode/node/{command} (body: its arguments): the broker module's node
  // commands (stop_app, start_app, reset, join_cluster, cluster_status); the reply is
  // {"message", ...the command's body} with the command's status.
  asio::awaitable<Response> node_command(Request req, bool require_admin) const;
  // 401 unless the request carries an administrator's credentials; nullopt when it does.
  std::optional<Response> refuse_unless_admin(const Request& req) const;
  // The running broker; ApiError 503 when this node has none.
  broker::Broker& broker() const;

  ApiSources src_;
  core::Logger log_;
};

}  // namespace mqnode::mgmt
