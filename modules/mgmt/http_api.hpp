// The management HTTP API: the RabbitMQ management routes mqnode implements (JSON shapes,
// status codes and errors as RabbitMQ 3.10's, so rabbitmqadmin and other clients work),
// mqnode's own status route and the Prometheus /metrics scrape of every module. The same
// routes serve the control socket (mqnode ctl; file permissions are the authentication, so
// it may do everything) and the optional TCP listener (HTTP basic auth by a broker user
// whose tags say what it may do, as RabbitMQ's). Every definition it changes is a
// broker::Change proposed to the Catalog, the broker's one metadata path.
//
// The handlers live in one file per area: http_api.cpp (routing, authorisation, overview,
// policies, node commands), api_access.cpp (users, vhosts, permissions), api_resources.cpp
// (exchanges, queues, bindings), api_definitions.cpp, api_live.cpp (connections, channels,
// consumers, health checks, nodes).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/auth.hpp"
#include "broker/broker_module.hpp"
#include "broker/change.hpp"
#include "broker/policy.hpp"
#include "core/http.hpp"
#include "core/log.hpp"
#include "core/module.hpp"
#include "core/cert_expiry.hpp"
#include "core/tls.hpp"
#include "mgmt/rates.hpp"

namespace mqnode::mgmt {

// A request the API refuses: <status> and RabbitMQ's {"error", "reason"} body.
struct ApiError : std::runtime_error {
  ApiError(int s, std::string e, const std::string& reason) : std::runtime_error(reason), status(s), error(std::move(e)) {}
  int status;
  std::string error;  // "bad_request", "not_found", ...
};

// Who is asking. Over the control socket: everything is allowed. Over TCP: the broker user
// of the request's basic credentials, whose tags give its rights (RabbitMQ's meaning:
// management sees and uses the vhosts it has permissions on; policymaker also manages their
// policies and parameters; monitoring sees every vhost, connection and channel;
// administrator does everything).
struct Caller {
  bool control = false;
  std::string user;
  std::vector<std::string> tags;

  bool has(std::string_view tag) const;
  bool administrator() const { return control || has("administrator"); }
  bool monitoring() const { return administrator() || has("monitoring"); }
  bool policymaker() const { return administrator() || has("policymaker"); }
  bool management() const { return monitoring() || policymaker() || has("management"); }
};

// What a route needs of its caller (the vhost of the request is checked by the route).
enum class Right { Management, Policymaker, Monitoring, Administrator };
// RabbitMQ's reason ("Not administrator user", ...) when <c> lacks <r>; nullopt otherwise.
std::optional<std::string> missing_right(const Caller& c, Right r);

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

// A request body that must be a JSON object (empty: {}); ApiError 400 otherwise.
nlohmann::json parse_object_body(std::string_view body);

// The URL-decoded path segments after <prefix> ("/api/policies/%2F/ttl" after
// "/api/policies/" → {"/", "ttl"}); empty segments are kept so "a//b" is not "a/b".
std::vector<std::string> path_segments(std::string_view path, std::string_view prefix);

// A policy as GET /api/policies returns it.
nlohmann::json policy_to_api(const broker::Policy& p);
// A user as GET /api/users returns it.
nlohmann::json user_to_api(const broker::AccessControl::User& u);
// User tags as PUT /api/users and definitions give them: "a,b" or ["a", "b"]; ApiError 400.
std::vector<std::string> parse_tags(const nlohmann::json& j);

// RabbitMQ's properties key of a binding: "~" for no key and no arguments, else the
// quoted key, followed by "~" and a digest of the arguments when there are any.
std::string binding_props_key(const std::string& key, const amqp::FieldTable& args);

// A JSON error response in RabbitMQ's shape.
core::http::Response error_response(int status, std::string_view error, std::string_view reason);
core::http::Response json_response(int status, const nlohmann::json& j);
core::http::Response no_content();  // 204

// What the API reads: the node, every module (status, health, metrics) and the broker
// module when this node runs one.
struct ApiSources {
  core::NodeInfo node;
  std::vector<const core::Module*> modules;
  broker::BrokerModule* broker = nullptr;
  // The node's listeners serving TLS now (AMQPS, HTTPS), for the certificate-expiration check.
  std::function<std::vector<core::tls::TlsListener>()> tls_listeners;
  const Rates* rates = nullptr;  // the sampled rates; nullptr: none (counts only)
};

class HttpApi {
 public:
  HttpApi(ApiSources src, core::Logger log) : src_(std::move(src)), log_(std::move(log)) {}

  // The routes. <require_login>: every /api route needs HTTP basic auth by a broker user
  // with the rights the route needs (401 otherwise, as RabbitMQ 3.10 answers both a failed
  // login and a missing right); /metrics never does, as RabbitMQ's Prometheus endpoint.
  // The handlers keep a pointer to this object: it must outlive the servers.
  std::shared_ptr<const core::http::Router> router(bool require_login) const;

 private:
  using Request = core::http::Request;
  using Response = core::http::Response;
  using Method = Response (HttpApi::*)(const Request&, const Caller&) const;

  // A route that changes definitions: the changes it asks for, proposed in order (the
  // first refusal is the answer, named by <where> when given), and the answer once all
  // are applied. A route that answers at once returns no change and its answer.
  struct ChangeRequest {
    std::vector<broker::Change> changes;
    std::vector<std::string> where;  // empty, or one label per change ("/queues/3")
    Response done;
  };
  using ChangeMethod = ChangeRequest (HttpApi::*)(const Request&, const Caller&) const;
  static ChangeRequest one(broker::Change c, int status);
  static ChangeRequest answer(Response r);

  // ---- http_api.cpp
  // The caller of <req> into <out>, or the refusal (401) when it is not allowed <need>.
  std::optional<Response> authorize(const Request& req, bool require_login, Right need, Caller& out) const;
  // Runs <m> (ApiError: its response) and proposes its changes to the broker's catalog;
  // a refusal gets RabbitMQ's status and body.
  asio::awaitable<Response> propose(Request req, bool require_login, Right need, ChangeMethod m) const;
  asio::awaitable<Response> node_command(Request req, bool require_login) const;
  // The running broker; ApiError 503 when this node has none.
  broker::Broker& broker() const;
  // ApiError 404 unless <vhost> exists; 401 unless <c> may see it (<write>: act in it).
  broker::Vhost& vhost_for(const Caller& c, const std::string& vhost, bool write = false) const;
  // ApiError 401 "Access refused." unless <c> has <what> on <resource> in <vhost>.
  void check_permission(const Caller& c, const std::string& vhost, broker::Permission what,
                        const std::string& resource) const;
  // <items> with the request's sort, columns and pagination applied, as a 200 response.
  Response list(const Request& req, nlohmann::json items) const;
  // RabbitMQ's counts and rate fields for <kind>/<key> into <obj> (rates.hpp).
  void add_rates(nlohmann::json& obj, Rates::Kind kind, const std::string& key, const Values& live,
                 const RateQuery& q) const;
  // Vhosts <c> may see, by name.
  std::vector<broker::Vhost*> visible_vhosts(const Caller& c) const;

  Response overview(const Request& req, const Caller& c) const;
  Response status(const Request& req, const Caller& c) const;
  Response metrics(const Request& req) const;
  Response policies(const Request& req, const Caller& c) const;
  Response policy_get(const Request& req, const Caller& c) const;
  ChangeRequest policy_put(const Request& req, const Caller& c) const;
  ChangeRequest policy_delete(const Request& req, const Caller& c) const;

  // ---- api_access.cpp: users, vhosts, permissions, whoami
  Response whoami(const Request& req, const Caller& c) const;
  Response users(const Request& req, const Caller& c) const;
  Response user_get(const Request& req, const Caller& c) const;
  ChangeRequest user_put(const Request& req, const Caller& c) const;
  ChangeRequest user_delete(const Request& req, const Caller& c) const;
  ChangeRequest users_bulk_delete(const Request& req, const Caller& c) const;
  Response vhosts(const Request& req, const Caller& c) const;
  Response vhost_get(const Request& req, const Caller& c) const;
  ChangeRequest vhost_put(const Request& req, const Caller& c) const;
  ChangeRequest vhost_delete(const Request& req, const Caller& c) const;
  Response permissions(const Request& req, const Caller& c) const;
  Response permission_get(const Request& req, const Caller& c) const;
  ChangeRequest permission_put(const Request& req, const Caller& c) const;
  ChangeRequest permission_delete(const Request& req, const Caller& c) const;
  Response user_limits(const Request& req, const Caller& c) const;
  ChangeRequest user_limit_put(const Request& req, const Caller& c) const;
  ChangeRequest user_limit_delete(const Request& req, const Caller& c) const;
  nlohmann::json vhost_to_api(const broker::Vhost& vh) const;

  // ---- api_resources.cpp: exchanges, queues, bindings, publish, get, purge
  Response exchanges(const Request& req, const Caller& c) const;
  Response exchange_get(const Request& req, const Caller& c) const;
  ChangeRequest exchange_put(const Request& req, const Caller& c) const;
  ChangeRequest exchange_delete(const Request& req, const Caller& c) const;
  Response exchange_publish(const Request& req, const Caller& c) const;
  Response queues(const Request& req, const Caller& c) const;
  Response queue_get(const Request& req, const Caller& c) const;
  ChangeRequest queue_put(const Request& req, const Caller& c) const;
  ChangeRequest queue_delete(const Request& req, const Caller& c) const;  // and /contents (purge)
  ChangeRequest queue_post(const Request& req, const Caller& c) const;    // /get and /actions
  Response bindings(const Request& req, const Caller& c) const;
  Response binding_get(const Request& req, const Caller& c) const;
  ChangeRequest binding_post(const Request& req, const Caller& c) const;
  ChangeRequest binding_delete(const Request& req, const Caller& c) const;
  nlohmann::json queue_to_api(const broker::Vhost& vh, const broker::QueueHandle& q, const RateQuery& rq) const;
  // <q> if it is homed on this node; a 400 naming its home otherwise (its messages are there).
  broker::QueuePtr local_queue(const broker::Vhost& vh, const broker::QueueHandle& q) const;
  nlohmann::json exchange_to_api(const broker::Vhost& vh, const broker::Exchange& e, const RateQuery& rq) const;
  // Every binding of <vh> (the default exchange's implicit ones first) that <keep> accepts.
  nlohmann::json bindings_of(const broker::Vhost& vh,
                             const std::function<bool(const nlohmann::json&)>& keep = {}) const;

  // ---- api_definitions.cpp
  Response definitions_get(const Request& req, const Caller& c) const;
  ChangeRequest definitions_post(const Request& req, const Caller& c) const;

  // ---- api_live.cpp: connections, channels, consumers, health checks, nodes
  Response connections(const Request& req, const Caller& c) const;
  Response connection_get(const Request& req, const Caller& c) const;
  ChangeRequest connection_delete(const Request& req, const Caller& c) const;
  Response channels(const Request& req, const Caller& c) const;
  Response consumers(const Request& req, const Caller& c) const;
  asio::awaitable<Response> aliveness(Request req, bool require_login) const;
  Response aliveness_check(const std::string& vhost, const broker::ChangeResult& declared) const;
  Response health_check(const Request& req, const Caller& c) const;
  // /api/health/checks/certificate-expiration/{within}/{unit}
  Response certificate_expiration(const std::string& within, const std::string& unit) const;
  Response cluster_name(const Request& req, const Caller& c) const;
  Response nodes(const Request& req, const Caller& c) const;
  nlohmann::json node_to_api() const;

  ApiSources src_;
  core::Logger log_;
};

}  // namespace mqnode::mgmt
