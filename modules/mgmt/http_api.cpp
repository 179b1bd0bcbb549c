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
#include "mgmt/json_table.hpp"
#include "mgmt/listing.hpp"
#include "mgmt/ui_assets.hpp"

namespace mqnode::mgmt {

using core::http::Request;
using core::http::Response;

namespace {

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

Response no_content() {
  Response r = Response::text(204, "");
  r.content_type = "application/json";
  return r;
}

Response json_response(int status, const nlohmann::json& j) {
  Response r = Response::json(j.dump());
  r.status = status;
  return r;
}

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

nlohmann::json parse_object_body(std::string_view body) {
  if (body.empty()) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ApiError(400, "bad_request", "the body is not valid JSON");
  if (!j.is_object()) throw ApiError(400, "bad_request", "the body must be a JSON object");
  return j;
}

nlohmann::json user_to_api(const broker::AccessControl::User& u) {
  return {{"name", u.name},
          {"password_hash", u.password_hash},
          {"hashing_algorithm", "rabbit_password_hashing_sha256"},
          {"tags", u.tags},
          {"limits", nlohmann::json::object()}};
}

std::vector<std::string> parse_tags(const nlohmann::json& j) {
  std::vector<std::string> out;
  auto add = [&out](std::string t) {
    auto first = t.find_first_not_of(" \t"), last = t.find_last_not_of(" \t");
    if (first == std::string::npos) return;
    t = t.substr(first, last - first + 1);
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(std::move(t));
  };
  if (j.is_null()) return out;
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    std::size_t start = 0;
    for (;;) {
      auto comma = s.find(',', start);
      add(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return out;
  }
  if (j.is_array()) {
    for (const auto& t : j) {
      if (!t.is_string()) throw ApiError(400, "bad_request", fmt::format("tags: expected strings, got {}", t.dump()));
      add(t.get<std::string>());
    }
    return out;
  }
  throw ApiError(400, "bad_request", fmt::format("tags: expected \"tag1,tag2\" or a list of strings, got {}", j.dump()));
}

std::string binding_props_key(const std::string& key, const amqp::FieldTable& args) {
  auto quote = [](const std::string& s) {
    std::string q;
    for (char ch : core::http::url_encode(s)) q += ch == '~' ? std::string("%7E") : std::string(1, ch);
    return q;
  };
  if (args.empty()) return key.empty() ? "~" : quote(key);
  return quote(key) + "~" + table_digest(args);
}

bool Caller::has(std::string_view tag) const {
  return std::find(tags.begin(), tags.end(), tag) != tags.end();
}

std::optional<std::string> missing_right(const Caller& c, Right r) {
  if (!c.management()) return "Not management user";
  switch (r) {
    case Right::Management: return std::nullopt;
    case Right::Policymaker:
      if (!c.policymaker()) return "Not policymaker user";
      return std::nullopt;
    case Right::Monitoring:
      if (!c.monitoring()) return "Not monitor user";
      return std::nullopt;
    case Right::Administrator:
      if (!c.administrator()) return "Not administrator user";
      return std::nullopt;
  }
  return "Not administrator user";
}

HttpApi::ChangeRequest HttpApi::one(broker::Change c, int status) {
  ChangeRequest r;
  r.changes.push_back(std::move(c));
  r.done = no_content();
  r.done.status = status;
  return r;
}

HttpApi::ChangeRequest HttpApi::answer(Response resp) {
  ChangeRequest r;
  r.done = std::move(resp);
  return r;
}

// ---- routes --------------------------------------------------------------------------

std::shared_ptr<const core::http::Router> HttpApi::router(bool require_login) const {
  auto r = std::make_shared<core::http::Router>();
  // Every /api handler goes through here: the one place that checks credentials and
  // rights and turns refusals into RabbitMQ's JSON errors.
  auto api = [this, require_login](Method m, Right need = Right::Management) {
    return [this, require_login, m, need](const Request& req) -> Response {
      Caller caller;
      if (auto refused = authorize(req, require_login, need, caller)) return *refused;
      try {
        return (this->*m)(req, caller);
      } catch (const ApiError& e) {
        return error_response(e.status, e.error, e.what());
      }
    };
  };
  // The routes that change definitions: the method checks the request and says which
  // changes it asks for; the answer waits for the catalog.
  auto change = [this, require_login](ChangeMethod m, Right need = Right::Management) {
    return [this, require_login, m, need](const Request& req) { return propose(req, require_login, need, m); };
  };
  using R = Right;
  r->add("GET", "/api/overview", api(&HttpApi::overview));
  r->add("GET", "/api/mqnode/status", api(&HttpApi::status, R::Monitoring));
  r->add("GET", "/api/whoami", api(&HttpApi::whoami));

  r->add("GET", "/api/policies", api(&HttpApi::policies, R::Policymaker));
  r->add_prefix("GET", "/api/policies/", api(&HttpApi::policy_get, R::Policymaker));
  r->add_prefix_async("PUT", "/api/policies/", change(&HttpApi::policy_put, R::Policymaker));
  r->add_prefix_async("DELETE", "/api/policies/", change(&HttpApi::policy_delete, R::Policymaker));

  r->add("GET", "/api/users", api(&HttpApi::users, R::Administrator));
  r->add_prefix_async("POST", "/api/users/bulk-delete", change(&HttpApi::users_bulk_delete, R::Administrator));
  r->add_prefix("GET", "/api/users/", api(&HttpApi::user_get, R::Administrator));
  r->add_prefix_async("PUT", "/api/users/", change(&HttpApi::user_put, R::Administrator));
  r->add_prefix_async("DELETE", "/api/users/", change(&HttpApi::user_delete, R::Administrator));
  r->add("GET", "/api/vhosts", api(&HttpApi::vhosts));
  r->add_prefix("GET", "/api/vhosts/", api(&HttpApi::vhost_get));
  r->add_prefix_async("PUT", "/api/vhosts/", change(&HttpApi::vhost_put, R::Administrator));
  r->add_prefix_async("DELETE", "/api/vhosts/", change(&HttpApi::vhost_delete, R::Administrator));
  r->add("GET", "/api/permissions", api(&HttpApi::permissions, R::Administrator));
  r->add_prefix("GET", "/api/permissions/", api(&HttpApi::permission_get, R::Administrator));
  r->add_prefix_async("PUT", "/api/permissions/", change(&HttpApi::permission_put, R::Administrator));
  r->add_prefix_async("DELETE", "/api/permissions/", change(&HttpApi::permission_delete, R::Administrator));
  r->add_prefix("GET", "/api/user-limits", api(&HttpApi::user_limits, R::Administrator));
  r->add_prefix_async("PUT", "/api/user-limits/", change(&HttpApi::user_limit_put, R::Administrator));
  r->add_prefix_async("DELETE", "/api/user-limits/", change(&HttpApi::user_limit_delete, R::Administrator));

  r->add("GET", "/api/exchanges", api(&HttpApi::exchanges));
  r->add_prefix("GET", "/api/exchanges/", api(&HttpApi::exchange_get));
  r->add_prefix_async("PUT", "/api/exchanges/", change(&HttpApi::exchange_put));
  r->add_prefix_async("DELETE", "/api/exchanges/", change(&HttpApi::exchange_delete));
  r->add_prefix("POST", "/api/exchanges/", api(&HttpApi::exchange_publish));
  r->add("GET", "/api/queues", api(&HttpApi::queues));
  r->add_prefix("GET", "/api/queues/", api(&HttpApi::queue_get));
  r->add_prefix_async("PUT", "/api/queues/", change(&HttpApi::queue_put));
  r->add_prefix_async("DELETE", "/api/queues/", change(&HttpApi::queue_delete));
  r->add_prefix_async("POST", "/api/queues/", change(&HttpApi::queue_post));
  r->add("GET", "/api/bindings", api(&HttpApi::bindings));
  r->add_prefix("GET", "/api/bindings/", api(&HttpApi::binding_get));
  r->add_prefix_async("POST", "/api/bindings/", change(&HttpApi::binding_post));
  r->add_prefix_async("DELETE", "/api/bindings/", change(&HttpApi::binding_delete));

  r->add("GET", "/api/definitions", api(&HttpApi::definitions_get, R::Administrator));
  r->add_prefix("GET", "/api/definitions/", api(&HttpApi::definitions_get, R::Administrator));
  r->add_prefix_async("POST", "/api/definitions", change(&HttpApi::definitions_post, R::Administrator));

  r->add("GET", "/api/connections", api(&HttpApi::connections));
  r->add_prefix("GET", "/api/connections/", api(&HttpApi::connection_get));
  r->add_prefix_async("DELETE", "/api/connections/", change(&HttpApi::connection_delete));
  r->add("GET", "/api/channels", api(&HttpApi::channels));
  r->add("GET", "/api/consumers", api(&HttpApi::consumers));
  r->add_prefix("GET", "/api/consumers/", api(&HttpApi::consumers));
  r->add_prefix("GET", "/api/health/checks/", api(&HttpApi::health_check));
  r->add_prefix_async("GET", "/api/aliveness-test/",
                       [this, require_login](const Request& req) { return aliveness(req, require_login); });
  r->add("GET", "/api/cluster-name", api(&HttpApi::cluster_name));
  r->add("GET", "/api/nodes", api(&HttpApi::nodes));
  r->add_prefix("GET", "/api/nodes/", api(&HttpApi::nodes));

  r->add_prefix_async("POST", "/api/mqnode/node/",
                       [this, require_login](const Request& req) { return node_command(req, require_login); });
  r->add("GET", "/metrics", [this](const Request& req) { return metrics(req); });
  add_ui_routes(*r);
  return r;
}

std::optional<Response> HttpApi::authorize(const Request& req, bool require_login, Right need, Caller& out) const {
  if (!require_login) {
    out.control = true;
    return std::nullopt;
  }
  // The web UI asks with X-Requested-With (as browser apps do) and gets no challenge: a
  // browser would answer one with its own login dialog instead of the UI's form.
  const bool from_ui = req.header("x-requested-with") == "XMLHttpRequest";
  auto refuse = [from_ui](std::string_view error, std::string_view reason) {
    Response r = error_response(401, error, reason);
    if (!from_ui) r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"RabbitMQ Management\"");
    return r;
  };
  auto creds = core::http::basic_credentials(req);
  if (!creds) return refuse("not_authorised", "Login failed: HTTP basic credentials are required");
  broker::Broker* b = src_.broker ? src_.broker->broker() : nullptr;
  if (!b) return refuse("not_authorised", "Login failed: this node runs no broker, so it has no users");
  std::string why;
  const auto* user = b->access().authenticate(creds->first, creds->second, core::is_loopback(req.peer.address()), why);
  if (!user) {
    log_.info("management login refused user={} peer={} reason=\"{}\"", creds->first, req.peer.address().to_string(),
              why);
    return refuse("not_authorized", "Login failed");
  }
  out.user = user->name;
  out.tags = user->tags;
  if (auto missing = missing_right(out, need)) {
    log_.info("management request refused user={} path={} reason=\"{}\"", out.user, req.path, *missing);
    return refuse("not_authorised", *missing);
  }
  return std::nullopt;
}

broker::Broker& HttpApi::broker() const {
  broker::Broker* b = src_.broker ? src_.broker->broker() : nullptr;
  if (!b) throw ApiError(503, "unavailable", "this node runs no broker (start it with --role disc)");
  return *b;
}

broker::Vhost& HttpApi::vhost_for(const Caller& c, const std::string& vhost, bool write) const {
  broker::Vhost* vh = broker().find_vhost(vhost);
  if (!vh) throw ApiError(404, "Object Not Found", "Not Found");
  if (c.control || (!write && c.monitoring())) return *vh;
  if (!broker().access().can_access_vhost(c.user, vhost))
    throw ApiError(401, "not_authorised", "User not authorised to access virtual host");
  return *vh;
}

void HttpApi::check_permission(const Caller& c, const std::string& vhost, broker::Permission what,
                               const std::string& resource) const {
  if (c.control) return;
  if (!broker().access().permitted(c.user, vhost, what, resource))
    throw ApiError(401, "not_authorised", "Access refused.");
}

std::vector<broker::Vhost*> HttpApi::visible_vhosts(const Caller& c) const {
  std::vector<broker::Vhost*> out;
  for (const auto& [name, vh] : broker().vhosts())
    if (c.control || c.monitoring() || broker().access().can_access_vhost(c.user, name)) out.push_back(vh.get());
  return out;
}

Response HttpApi::list(const Request& req, nlohmann::json items) const {
  return json_response(200, apply_list_query(std::move(items), req.params()));
}

void HttpApi::add_rates(nlohmann::json& obj, Rates::Kind kind, const std::string& key, const Values& live,
                        const RateQuery& q) const {
  static const Rates no_samples;  // counts with zero rates
  (src_.rates ? *src_.rates : no_samples).annotate(obj, kind, key, live, q);
}

Response HttpApi::overview(const Request& req, const Caller&) const {
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
  uint64_t exchanges = 0, queues = 0;
  for (const auto& [name, vh] : b->vhosts()) {
    exchanges += vh->exchanges().size();
    queues += vh->all_queues().size();
  }
  j["object_totals"] = {{"connections", st.connections}, {"channels", st.channels}, {"exchanges", exchanges},
                        {"queues", queues},              {"consumers", st.consumers}};
  add_rates(j, Rates::Kind::Node, "", node_values(*b), parse_rate_query(req.params()));
  auto& listeners = j["listeners"] = nlohmann::json::array();
  for (const auto& ep : src_.broker->local_endpoints())
    listeners.push_back({{"node", src_.node.name},
                         {"protocol", "amqp"},
                         {"ip_address", ep.address().to_string()},
                         {"port", ep.port()}});
  return json_response(200, j);
}

Response HttpApi::status(const Request&, const Caller&) const {
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

Response HttpApi::policies(const Request& req, const Caller& c) const {
  auto out = nlohmann::json::array();
  for (const auto* vh : visible_vhosts(c))
    for (const auto* p : broker().list_policies(vh->name())) out.push_back(policy_to_api(*p));
  return list(req, std::move(out));
}

Response HttpApi::policy_get(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/policies/");
  if (seg.size() < 1 || seg.size() > 2) throw ApiError(404, "Object Not Found", "Not Found");
  vhost_for(c, seg[0]);
  auto& b = broker();
  if (seg.size() == 1) {
    auto out = nlohmann::json::array();
    for (const auto* p : b.list_policies(seg[0])) out.push_back(policy_to_api(*p));
    return list(req, std::move(out));
  }
  for (const auto* p : b.list_policies(seg[0]))
    if (p->name == seg[1]) return json_response(200, policy_to_api(*p));
  throw ApiError(404, "Object Not Found", "Not Found");
}

// No co_await inside a try block here: the refusals are decided before the proposal.
asio::awaitable<Response> HttpApi::propose(Request req, bool require_login, Right need, ChangeMethod m) const {
  Caller caller;
  if (auto refused = authorize(req, require_login, need, caller)) co_return *refused;
  std::optional<ChangeRequest> request;
  broker::Catalog* catalog = nullptr;
  Response error;
  try {
    catalog = &broker().catalog();
    request = (this->*m)(req, caller);
  } catch (const ApiError& e) {
    error = error_response(e.status, e.error, e.what());
  }
  if (!request) co_return error;
  for (std::size_t i = 0; i < request->changes.size(); ++i) {
    broker::ChangeResult r = co_await catalog->async_propose(std::move(request->changes[i]), asio::use_awaitable);
    if (r.ok()) continue;
    std::string reason = i < request->where.size() ? request->where[i] + ": " + r.text : r.text;
    // RabbitMQ's API answers an unknown object with 404, a refused access with 401, a bad
    // definition with 400.
    if (r.code == static_cast<uint16_t>(amqp::ChannelReplyCode::NotFound))
      co_return error_response(404, "not_found", reason);
    if (r.code == static_cast<uint16_t>(amqp::ChannelReplyCode::AccessRefused))
      co_return error_response(401, "not_authorised", reason);
    co_return error_response(400, "bad_request", reason);
  }
  co_return request->done;
}

asio::awaitable<Response> HttpApi::node_command(Request req, bool require_login) const {
  Caller caller;
  if (auto refused = authorize(req, require_login, Right::Administrator, caller)) co_return *refused;
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

HttpApi::ChangeRequest HttpApi::policy_put(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/policies/");
  if (seg.size() != 2 || seg[1].empty()) throw ApiError(404, "Object Not Found", "Not Found");
  if (broker().find_vhost(seg[0])) vhost_for(c, seg[0], true);
  PolicyBody body = parse_policy_body(req.body);
  const auto existing = broker().list_policies(seg[0]);
  bool exists = std::any_of(existing.begin(), existing.end(), [&](const broker::Policy* p) { return p->name == seg[1]; });
  return one(broker::SetPolicy{seg[0], seg[1], body.pattern, body.definition, body.priority, body.apply_to},
             exists ? 204 : 201);
}

HttpApi::ChangeRequest HttpApi::policy_delete(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/policies/");
  if (seg.size() != 2) throw ApiError(404, "Object Not Found", "Not Found");
  if (broker().find_vhost(seg[0])) vhost_for(c, seg[0], true);
  return one(broker::ClearPolicy{seg[0], seg[1]}, 204);
}

}  // namespace mqnode::mgmt
