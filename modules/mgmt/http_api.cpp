#include "mgmt/http_api.hpp"

#include <algorithm>
#include <chrono>

#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "amqp/reply_code.hpp"
#include "broker/resource_alarm.hpp"
#include "core/endpoint.hpp"
#include "core/metrics.hpp"

namespace mqnode::mgmt {

using core::http::Request;
using core::http::Response;

namespace {

Response json_response(int status, const nlohmann::json& j) {
  Response r = Response::json(j.dump());
  r.status = status;
  return r;
}

Response no_content() {
  Response r = Response::text(204, "");
  r.content_type = "application/json";
  return r;
}

const char* health_name(core::Health::State s) {
  switch (s) {
    case core::Health::State::Ok: return "ok";
    case core::Health::State::Degraded: return "degraded";
    case core::Health::State::Down: return "down";
  }
  return "down";
}

const auto kStarted = std::chrono::steady_clock::now();

}  // namespace

Response error_response(int status, std::string_view error, std::string_view reason) {
  return json_response(status, {{"error", error}, {"reason", reason}});
}

PolicyBody parse_policy_body(std::string_view body) {
  auto bad = [](const std::string& reason) { return ApiError(400, "bad_request", reason); };
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw bad("the body is not valid JSON");
  if (!j.is_object()) throw bad("the body must be a JSON object with pattern and definition");
  PolicyBody p;
  bool has_pattern = false, has_definition = false;
  for (const auto& [key, v] : j.items()) {
    if (key == "pattern") {
      if (!v.is_string()) throw bad("pattern: expected a string (a regular expression)");
      p.pattern = v.get<std::string>();
      has_pattern = true;
    } else if (key == "definition") {
      if (!v.is_object()) throw bad("definition: expected a JSON object");
      p.definition = v;
      has_definition = true;
    } else if (key == "priority") {
      // rabbitmqadmin sends what it was given on its command line: a number or a string.
      if (v.is_number_integer()) {
        p.priority = v.get<int64_t>();
      } else {
        std::size_t used = 0;
        try {
          if (v.is_string()) p.priority = std::stoll(v.get<std::string>(), &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (!v.is_string() || used == 0 || used != v.get_ref<const std::string&>().size())
          throw bad(fmt::format("priority: expected an integer, got {}", v.dump()));
      }
    } else if (key == "apply-to") {
      if (!v.is_string()) throw bad("apply-to: expected \"queues\", \"exchanges\" or \"all\"");
      p.apply_to = v.get<std::string>();
    } else if (key != "name" && key != "vhost") {
      throw bad(fmt::format("unknown key '{}' (expected pattern, definition, priority, apply-to)", key));
    }
  }
  if (!has_pattern) throw bad("pattern is missing");
  if (!has_definition) throw bad("definition is missing");
  return p;
}

std::vector<std::string> path_segments(std::string_view path, std::string_view prefix) {
  std::vector<std::string> out;
  if (!path.starts_with(prefix)) return out;
  path.remove_prefix(prefix.size());
  for (;;) {
    auto slash = path.find('/');
    out.push_back(core::http::url_decode(path.substr(0, slash), /*plus_is_space=*/false));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

nlohmann::json policy_to_api(const broker::Policy& p) {
  return {{"vhost", p.vhost},
          {"name", p.name},
          {"pattern", p.pattern},
          {"apply-to", broker::apply_to_name(p.apply_to)},
          {"definition", p.definition},
          {"priority", p.priority}};
}

// ---- routes --------------------------------------------------------------------------

std::shared_ptr<const core::http::Router> HttpApi::router(bool require_admin) const {
  auto r = std::make_shared<core::http::Router>();
  using Method = Response (HttpApi::*)(const Request&) const;
  // Every /api handler goes through here: the one place that checks credentials and
  // turns refusals into RabbitMQ's JSON errors.
  auto api = [this, require_admin](Method m) {
    return [this, require_admin, m](const Request& req) -> Response {
      if (require_admin)
        if (auto refused = refuse_unless_admin(req)) return *refused;
      try {
        return (this->*m)(req);
      } catch (const ApiError& e) {
        return error_response(e.status, e.error, e.what());
      }
    };
  };
  // The routes that change definitions: the method checks the request and says which
  // change it asks for; the answer waits for the catalog.
  auto api_change = [this, require_admin](ChangeMethod m) {
    return [this, require_admin, m](const Request& req) { return propose(req, require_admin, m); };
  };
  r->add("GET", "/api/overview", api(&HttpApi::overview));
  r->add("GET", "/api/mqnode/status", api(&HttpApi::status));
  r->add("GET", "/api/policies", api(&HttpApi::policies));
  r->add_prefix("GET", "/api/policies/", api(&HttpApi::policy_get));
  r->add_prefix_async("PUT", "/api/policies/", api_change(&HttpApi::policy_put));
  r->add_prefix_async("DELETE", "/api/policies/", api_change(&HttpApi::policy_delete));
  r->add_prefix_async("POST", "/api/mqnode/node/",
                       [this, require_admin](const Request& req) { return node_command(req, require_admin); });
  r->add("GET", "/metrics", [this](const Request& req) { return metrics(req); });
  return r;
}

std::optional<Response> HttpApi::refuse_unless_admin(const Request& req) const {
  auto refuse = [](std::string_view reason) {
    Response r = error_response(401, "not_authorised", reason);
    r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"RabbitMQ Management\"");
    return r;
  };
  auto creds = core::http::basic_credentials(req);
  if (!creds) return refuse("Login failed: HTTP basic credentials of an administrator are required");
  broker::Broker* b = src_.broker ? src_.broker->broker() : nullptr;
  if (!b) return refuse("Login failed: this node runs no broker, so it has no users");
  std::string why;
  const auto* user = b->access().authenticate(creds->first, creds->second, core::is_loopback(req.peer.address()), why);
  if (!user) {
    log_.info("management login refused user={} peer={} reason=\"{}\"", creds->first, req.peer.address().to_string(),
              why);
    return refuse("Login failed");
  }
  if (std::find(user->tags.begin(), user->tags.end(), "administrator") == user->tags.end())
    return refuse(fmt::format("user '{}' is not an administrator", creds->first));
  return std::nullopt;
}

broker::Broker& HttpApi::broker() const {
  broker::Broker* b = src_.broker ? src_.broker->broker() : nullptr;
  if (!b) throw ApiError(503, "unavailable", "this node runs no broker (start it with --role disc)");
  return *b;
}

Response HttpApi::overview(const Request&) const {
  nlohmann::json j = {{"management_version", MQNODE_VERSION},
                      // What clients see in connection.start (docs/config.md explains why).
                      {"rabbitmq_version", "3.10.0"},
                      {"product_name", "mqnode"},
                      {"product_version", MQNODE_VERSION},
                      {"node", src_.node.name},
                      {"cluster_name", src_.node.name}};
  broker::Broker* b = src_.broker ? src_.broker->broker() : nullptr;
  if (!b) return json_response(200, j);
  const auto& st = b->stats();
  uint64_t exchanges = 0, queues = 0, ready = 0;
  for (const auto& [name, vh] : b->vhosts()) {
    exchanges += vh->exchanges().size();
    queues += vh->queues().size();
    for (const auto& [qname, q] : vh->queues()) ready += q->message_count();
  }
  uint64_t unacked = b->messages_unacked();
  j["object_totals"] = {{"connections", st.connections}, {"channels", st.channels}, {"exchanges", exchanges},
                        {"queues", queues},              {"consumers", st.consumers}};
  j["queue_totals"] = {{"messages", ready + unacked}, {"messages_ready", ready}, {"messages_unacknowledged", unacked}};
  j["message_stats"] = {{"publish", st.messages_published},
                        {"deliver_get", st.messages_delivered},
                        {"ack", st.messages_acked},
                        {"redeliver", st.messages_redelivered},
                        {"return_unroutable", st.messages_returned}};
  auto& listeners = j["listeners"] = nlohmann::json::array();
  for (const auto& ep : src_.broker->local_endpoints())
    listeners.push_back({{"node", src_.node.name},
                         {"protocol", "amqp"},
                         {"ip_address", ep.address().to_string()},
                         {"port", ep.port()}});
  return json_response(200, j);
}

Response HttpApi::status(const Request&) const {
  nlohmann::json j = {{"node", src_.node.name}, {"version", MQNODE_VERSION}, {"data_dir", src_.node.data_dir}};
  auto& mods = j["modules"] = nlohmann::json::object();
  for (const core::Module* m : src_.modules) {
    auto& mj = mods[std::string(m->name())];
    auto h = m->health();
    mj["health"] = {{"state", health_name(h.state)}, {"detail", h.detail}};
    m->dump(mj["status"]);
  }
  return json_response(200, j);
}

Response HttpApi::metrics(const Request&) const {
  using Type = core::MetricsWriter::Type;
  core::MetricsWriter w;
  w.family("mqnode_build_info", Type::Gauge, "always 1; the labels say which build runs");
  w.sample({{"version", MQNODE_VERSION}, {"node", src_.node.name}}, 1);
  w.family("process_resident_memory_bytes", Type::Gauge, "resident memory of the mqnode process");
  w.sample(static_cast<double>(broker::read_resources(src_.node.data_dir).rss));
  w.family("mqnode_uptime_seconds", Type::Gauge, "seconds since the process started");
  w.sample(std::chrono::duration<double>(std::chrono::steady_clock::now() - kStarted).count());
  w.family("mqnode_module_health", Type::Gauge, "1 for the health state each module reports, 0 for the others");
  for (const core::Module* m : src_.modules) {
    auto state = m->health().state;
    for (auto s : {core::Health::State::Ok, core::Health::State::Degraded, core::Health::State::Down})
      w.sample({{"module", m->name()}, {"state", health_name(s)}}, s == state ? 1 : 0);
  }
  for (const core::Module* m : src_.modules) m->metrics(w);
  Response r;
  r.content_type = std::string(core::kMetricsContentType);
  r.body = w.text();
  return r;
}

Response HttpApi::policies(const Request&) const {
  auto out = nlohmann::json::array();
  for (const auto* p : broker().list_policies("")) out.push_back(policy_to_api(*p));
  return json_response(200, out);
}

Response HttpApi::policy_get(const Request& req) const {
  auto seg = path_segments(req.path, "/api/policies/");
  auto& b = broker();
  if (seg.size() < 1 || seg.size() > 2 || !b.find_vhost(seg[0]))
    throw ApiError(404, "Object Not Found", "Not Found");
  if (seg.size() == 1) {
    auto out = nlohmann::json::array();
    for (const auto* p : b.list_policies(seg[0])) out.push_back(policy_to_api(*p));
    return json_response(200, out);
  }
  for (const auto* p : b.list_policies(seg[0]))
    if (p->name == seg[1]) return json_response(200, policy_to_api(*p));
  throw ApiError(404, "Object Not Found", "Not Found");
}

// No co_await inside a try block here: the refusals are decided before the proposal.
asio::awaitable<Response> HttpApi::propose(Request req, bool require_admin, ChangeMethod m) const {
  if (require_admin)
    if (auto refused = refuse_unless_admin(req)) co_return *refused;
  std::optional<ChangeRequest> request;
  broker::Catalog* catalog = nullptr;
  Response error;
  try {
    catalog = &broker().catalog();
    request = (this->*m)(req);
  } catch (const ApiError& e) {
    error = error_response(e.status, e.error, e.what());
  }
  if (!request) co_return error;
  broker::ChangeResult r = co_await catalog->async_propose(std::move(request->change), asio::use_awaitable);
  if (!r.ok()) {
    // RabbitMQ's API answers an unknown vhost or policy with 404, a bad definition with 400.
    bool not_found = r.code == static_cast<uint16_t>(amqp::ChannelReplyCode::NotFound);
    co_return error_response(not_found ? 404 : 400, not_found ? "not_found" : "bad_request", r.text);
  }
  Response done = no_content();
  done.status = request->status;
  co_return done;
}

asio::awaitable<Response> HttpApi::node_command(Request req, bool require_admin) const {
  if (require_admin)
    if (auto refused = refuse_unless_admin(req)) co_return *refused;
  auto seg = path_segments(req.path, "/api/mqnode/node/");
  if (seg.size() != 1 || !src_.broker) co_return error_response(404, "not_found", "this node runs no broker");
  auto args = req.body.empty() ? nlohmann::json::object() : nlohmann::json::parse(req.body, nullptr, false);
  if (!args.is_object()) co_return error_response(400, "bad_request", "the body must be a JSON object");
  broker::CommandReply reply = co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(broker::CommandReply)>(
      [this](auto handler, std::string op, nlohmann::json a) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        src_.broker->command(op, a, [h](broker::CommandReply r) {
          auto ex = asio::get_associated_executor(*h);
          asio::post(ex, [h, r = std::move(r)]() mutable { std::move(*h)(std::move(r)); });
        });
      },
      asio::use_awaitable, seg[0], std::move(args));
  nlohmann::json body = reply.body.is_object() ? reply.body : nlohmann::json::object();
  body["message"] = reply.message;
  Response out = Response::json(body.dump());
  out.status = reply.status;
  co_return out;
}

HttpApi::ChangeRequest HttpApi::policy_put(const Request& req) const {
  auto seg = path_segments(req.path, "/api/policies/");
  if (seg.size() != 2 || seg[1].empty()) throw ApiError(404, "Object Not Found", "Not Found");
  PolicyBody body = parse_policy_body(req.body);
  const auto existing = broker().list_policies(seg[0]);
  bool exists = std::any_of(existing.begin(), existing.end(), [&](const broker::Policy* p) { return p->name == seg[1]; });
  return {broker::SetPolicy{seg[0], seg[1], body.pattern, body.definition, body.priority, body.apply_to},
          exists ? 204 : 201};
}

HttpApi::ChangeRequest HttpApi::policy_delete(const Request& req) const {
  auto seg = path_segments(req.path, "/api/policies/");
  if (seg.size() != 2) throw ApiError(404, "Object Not Found", "Not Found");
  return {broker::ClearPolicy{seg[0], seg[1]}, 204};
}

}  // namespace mqnode::mgmt
