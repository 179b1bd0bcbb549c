// Users, vhosts, permissions and whoami: RabbitMQ 3.10's /api/users, /api/vhosts,
// /api/permissions and /api/whoami. Writes are catalog changes (PutUser, DeleteUser,
// PutVhost, DeleteVhost, SetPermissions, ClearPermissions).
#include <algorithm>

#include <fmt/format.h>

#include "mgmt/http_api.hpp"

namespace mqnode::mgmt {

using core::http::Request;
using core::http::Response;

namespace {

[[noreturn]] void not_found() { throw ApiError(404, "Object Not Found", "Not Found"); }

nlohmann::json permission_to_api(const std::string& user, const std::string& vhost,
                                 const broker::AccessControl::Permissions& p) {
  return {{"user", user}, {"vhost", vhost}, {"configure", p.configure}, {"write", p.write}, {"read", p.read}};
}

// The segments of <req> after <prefix>, which must number <n> and not be empty.
std::vector<std::string> exact_segments(const Request& req, std::string_view prefix, std::size_t n) {
  auto seg = path_segments(req.path, prefix);
  if (seg.size() != n || std::any_of(seg.begin(), seg.end(), [](const std::string& s) { return s.empty(); }))
    not_found();
  return seg;
}

}  // namespace

Response HttpApi::whoami(const Request&, const Caller& c) const {
  if (c.control) return json_response(200, {{"name", ""}, {"tags", {"administrator"}}});
  return json_response(200, {{"name", c.user}, {"tags", c.tags}});
}

// ---- users -----------------------------------------------------------------------------

Response HttpApi::users(const Request& req, const Caller&) const {
  auto out = nlohmann::json::array();
  for (const auto& [name, u] : broker().access().users()) out.push_back(user_to_api(u));
  return list(req, std::move(out));
}

Response HttpApi::user_get(const Request& req, const Caller&) const {
  auto seg = path_segments(req.path, "/api/users/");
  const auto& access = broker().access();
  const auto perms = access.permissions();
  if (seg.size() == 1 && seg[0] == "without-permissions") {
    auto out = nlohmann::json::array();
    for (const auto& [name, u] : access.users())
      if (std::none_of(perms.begin(), perms.end(), [&](const auto& p) { return p.first.first == name; }))
        out.push_back(user_to_api(u));
    return list(req, std::move(out));
  }
  if (seg.empty() || seg.size() > 2 || seg[0].empty()) not_found();
  const auto* user = access.find_user(seg[0]);
  if (!user) not_found();
  if (seg.size() == 1) return json_response(200, user_to_api(*user));
  if (seg[1] == "topic-permissions") return list(req, nlohmann::json::array());
  if (seg[1] != "permissions") not_found();
  auto out = nlohmann::json::array();
  for (const auto& [key, p] : perms)
    if (key.first == seg[0]) out.push_back(permission_to_api(key.first, key.second, p));
  return list(req, std::move(out));
}

HttpApi::ChangeRequest HttpApi::user_put(const Request& req, const Caller&) const {
  auto seg = exact_segments(req, "/api/users/", 1);
  auto body = parse_object_body(req.body);
  const auto* existing = broker().access().find_user(seg[0]);
  broker::PutUser change{seg[0], existing ? existing->password_hash : std::string(), {}};
  if (body.contains("password_hash") && body.contains("password"))
    throw ApiError(400, "bad_request", "give password or password_hash, not both");
  if (body.contains("hashing_algorithm")) {
    const auto& alg = body["hashing_algorithm"];
    if (!alg.is_string() || alg.get<std::string>() != "rabbit_password_hashing_sha256")
      throw ApiError(400, "bad_request",
                     fmt::format("hashing_algorithm: only rabbit_password_hashing_sha256 is supported, got {}",
                                 alg.dump()));
  }
  if (body.contains("password")) {
    if (!body["password"].is_string()) throw ApiError(400, "bad_request", "password: expected a string");
    change.password_hash = broker::hash_password(body["password"].get<std::string>());
  } else if (body.contains("password_hash")) {
    const auto& h = body["password_hash"];
    if (!h.is_string()) throw ApiError(400, "bad_request", "password_hash: expected a string");
    change.password_hash = h.get<std::string>();
    if (!change.password_hash.empty() && !broker::valid_password_hash(change.password_hash))
      throw ApiError(400, "bad_request",
                     fmt::format("password_hash: expected base64 of a 4-byte salt and a SHA-256 digest "
                                 "(rabbitmqctl hash_password), got \"{}\"",
                                 change.password_hash));
  }
  if (body.contains("tags")) change.tags = parse_tags(body["tags"]);
  else if (existing) change.tags = existing->tags;
  return one(std::move(change), existing ? 204 : 201);
}

HttpApi::ChangeRequest HttpApi::user_delete(const Request& req, const Caller&) const {
  auto seg = exact_segments(req, "/api/users/", 1);
  if (!broker().access().find_user(seg[0])) not_found();
  return one(broker::DeleteUser{seg[0]}, 204);
}

HttpApi::ChangeRequest HttpApi::users_bulk_delete(const Request& req, const Caller&) const {
  if (req.path != "/api/users/bulk-delete") not_found();
  auto body = parse_object_body(req.body);
  if (!body.contains("users") || !body["users"].is_array())
    throw ApiError(400, "bad_request", "users: expected a list of user names");
  ChangeRequest r;
  std::vector<std::string> missing;
  for (const auto& u : body["users"]) {
    if (!u.is_string()) throw ApiError(400, "bad_request", fmt::format("users: expected names, got {}", u.dump()));
    auto name = u.get<std::string>();
    if (broker().access().find_user(name)) r.changes.push_back(broker::DeleteUser{name});
    else missing.push_back(name);
  }
  // As RabbitMQ: the users that exist are deleted, and the answer names one that did not.
  r.done = missing.empty() ? no_content()
                           : error_response(400, "bad_request", fmt::format("no_such_user: {}", missing.front()));
  return r;
}

// ---- vhosts ----------------------------------------------------------------------------

nlohmann::json HttpApi::vhost_to_api(const broker::Vhost& vh) const {
  uint64_t ready = 0, unacked = 0;
  for (const auto& [name, q] : vh.queues()) {
    ready += q->message_count();
    for (const auto* consumer : q->consumers()) unacked += consumer->unacked;
  }
  return {{"name", vh.name()},
          {"description", ""},
          {"tags", nlohmann::json::array()},
          {"default_queue_type", "undefined"},
          {"metadata", {{"description", ""}, {"tags", nlohmann::json::array()}}},
          {"tracing", false},
          {"cluster_state", {{src_.node.name, "running"}}},
          {"messages", ready + unacked},
          {"messages_ready", ready},
          {"messages_unacknowledged", unacked}};
}

Response HttpApi::vhosts(const Request& req, const Caller& c) const {
  auto out = nlohmann::json::array();
  for (const auto* vh : visible_vhosts(c)) out.push_back(vhost_to_api(*vh));
  return list(req, std::move(out));
}

Response HttpApi::vhost_get(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/vhosts/");
  if (seg.empty() || seg.size() > 2) not_found();
  auto& vh = vhost_for(c, seg[0]);
  if (seg.size() == 1) return json_response(200, vhost_to_api(vh));
  if (auto missing = missing_right(c, Right::Administrator)) throw ApiError(401, "not_authorised", *missing);
  if (seg[1] == "topic-permissions") return list(req, nlohmann::json::array());
  if (seg[1] != "permissions") not_found();
  auto out = nlohmann::json::array();
  for (const auto& [key, p] : broker().access().permissions())
    if (key.second == seg[0]) out.push_back(permission_to_api(key.first, key.second, p));
  return list(req, std::move(out));
}

HttpApi::ChangeRequest HttpApi::vhost_put(const Request& req, const Caller& c) const {
  auto seg = exact_segments(req, "/api/vhosts/", 1);
  auto body = parse_object_body(req.body);
  std::string description;
  if (body.contains("description")) {
    if (!body["description"].is_string()) throw ApiError(400, "bad_request", "description: expected a string");
    description = body["description"].get<std::string>();
  }
  if (body.contains("tags")) parse_tags(body["tags"]);  // checked; vhost tags are not kept
  const bool exists = broker().find_vhost(seg[0]) != nullptr;
  ChangeRequest r = one(broker::PutVhost{seg[0], description}, exists ? 204 : 201);
  // As RabbitMQ's API: the user who creates a vhost gets full permissions on it.
  if (!exists && !c.control && broker().access().find_user(c.user))
    r.changes.push_back(broker::SetPermissions{c.user, seg[0], ".*", ".*", ".*"});
  return r;
}

HttpApi::ChangeRequest HttpApi::vhost_delete(const Request& req, const Caller&) const {
  auto seg = exact_segments(req, "/api/vhosts/", 1);
  if (!broker().find_vhost(seg[0])) not_found();
  return one(broker::DeleteVhost{seg[0]}, 204);
}

// ---- user limits (RabbitMQ 3.10's /api/user-limits) ------------------------------------

Response HttpApi::user_limits(const Request& req, const Caller&) const {
  auto seg = path_segments(req.path, "/api/user-limits");  // {""} or {"", user}
  if (seg.empty() || !seg[0].empty()) not_found();
  seg.erase(seg.begin());
  const auto& all = broker().catalog().user_limits();
  auto out = nlohmann::json::array();
  if (seg.empty() || (seg.size() == 1 && seg[0].empty())) {
    for (const auto& [user, limits] : all) out.push_back({{"user", user}, {"value", limits}});
    return list(req, std::move(out));
  }
  if (seg.size() != 1 || !broker().access().find_user(seg[0])) not_found();
  if (auto it = all.find(seg[0]); it != all.end()) out.push_back({{"user", it->first}, {"value", it->second}});
  return list(req, std::move(out));
}

// RabbitMQ's PUT /api/user-limits/{user}/{name} {"value": N}; and, for `mqnode ctl
// set_user_limits`, PUT /api/user-limits/{user} with the whole definition as the body.
HttpApi::ChangeRequest HttpApi::user_limit_put(const Request& req, const Caller&) const {
  auto body = parse_object_body(req.body);
  if (path_segments(req.path, "/api/user-limits/").size() == 1) {
    auto seg = exact_segments(req, "/api/user-limits/", 1);
    return one(broker::SetUserLimits{seg[0], "", std::move(body)}, 204);
  }
  auto seg = exact_segments(req, "/api/user-limits/", 2);
  if (!body.contains("value")) throw ApiError(400, "bad_request", "[{key_missing,value}]");
  return one(broker::SetUserLimits{seg[0], "", {{seg[1], body["value"]}}}, 204);
}

HttpApi::ChangeRequest HttpApi::user_limit_delete(const Request& req, const Caller&) const {
  auto seg = exact_segments(req, "/api/user-limits/", 2);
  return one(broker::SetUserLimits{seg[0], seg[1], nlohmann::json::object()}, 204);
}

// ---- permissions -----------------------------------------------------------------------

Response HttpApi::permissions(const Request& req, const Caller&) const {
  auto out = nlohmann::json::array();
  for (const auto& [key, p] : broker().access().permissions())
    out.push_back(permission_to_api(key.first, key.second, p));
  return list(req, std::move(out));
}

Response HttpApi::permission_get(const Request& req, const Caller&) const {
  auto seg = exact_segments(req, "/api/permissions/", 2);
  for (const auto& [key, p] : broker().access().permissions())
    if (key.second == seg[0] && key.first == seg[1]) return json_response(200, permission_to_api(key.first, key.second, p));
  not_found();
}

HttpApi::ChangeRequest HttpApi::permission_put(const Request& req, const Caller&) const {
  auto seg = exact_segments(req, "/api/permissions/", 2);
  auto body = parse_object_body(req.body);
  std::vector<std::string> missing;
  std::string patterns[3];
  const char* keys[3] = {"configure", "write", "read"};
  for (int i = 0; i < 3; ++i) {
    if (!body.contains(keys[i])) {
      missing.push_back(fmt::format("{{key_missing,{}}}", keys[i]));
      continue;
    }
    if (!body[keys[i]].is_string()) throw ApiError(400, "bad_request", fmt::format("{}: expected a string (a regular expression)", keys[i]));
    patterns[i] = body[keys[i]].get<std::string>();
  }
  if (!missing.empty()) throw ApiError(400, "bad_request", fmt::format("[{}]", fmt::join(missing, ",")));
  const auto& access = broker().access();
  if (!broker().find_vhost(seg[0]) || !access.find_user(seg[1]))
    throw ApiError(400, "bad_request", "vhost_or_user_not_found");
  const auto perms = access.permissions();
  bool exists = std::any_of(perms.begin(), perms.end(),
                            [&](const auto& p) { return p.first.first == seg[1] && p.first.second == seg[0]; });
  return one(broker::SetPermissions{seg[1], seg[0], patterns[0], patterns[1], patterns[2]}, exists ? 204 : 201);
}

HttpApi::ChangeRequest HttpApi::permission_delete(const Request& req, const Caller&) const {
  auto seg = exact_segments(req, "/api/permissions/", 2);
  const auto perms = broker().access().permissions();
  if (std::none_of(perms.begin(), perms.end(),
                   [&](const auto& p) { return p.first.first == seg[1] && p.first.second == seg[0]; }))
    not_found();
  return one(broker::ClearPermissions{seg[1], seg[0]}, 204);
}

}  // namespace mqnode::mgmt
