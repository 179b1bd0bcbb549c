// GET and POST /api/definitions[/{vhost}]: export and import (definitions.hpp). An import
// is planned in full before its first change is proposed.
#include <fmt/format.h>

#include "broker/broker.hpp"
#include "mgmt/definitions.hpp"
#include "mgmt/http_api.hpp"

namespace mqnode::mgmt {

using core::http::Request;
using core::http::Response;

namespace {
// nullopt for /api/definitions, the vhost for /api/definitions/{vhost}.
std::optional<std::string> definitions_vhost(const Request& req) {
  if (req.path == "/api/definitions" || req.path == "/api/definitions/") return std::nullopt;
  auto seg = path_segments(req.path, "/api/definitions/");
  if (seg.size() != 1 || seg[0].empty()) throw ApiError(404, "Object Not Found", "Not Found");
  return seg[0];
}
}  // namespace

Response HttpApi::definitions_get(const Request& req, const Caller& c) const {
  auto vhost = definitions_vhost(req);
  if (vhost) vhost_for(c, *vhost);
  Response r = json_response(200, export_definitions(broker().catalog(), vhost, MQNODE_VERSION));
  // rabbitmqadmin export and the UI's download save it under this name.
  auto params = req.params();
  if (params.count("download"))
    r.headers.emplace_back("Content-Disposition", fmt::format("attachment; filename=\"{}\"", params["download"]));
  return r;
}

HttpApi::ChangeRequest HttpApi::definitions_post(const Request& req, const Caller& c) const {
  auto vhost = definitions_vhost(req);
  if (vhost) vhost_for(c, *vhost, true);
  auto doc = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) throw ApiError(400, "bad_request", "failed_to_parse_json: the body is not valid JSON");
  ImportPlan plan = plan_import(doc, broker().catalog(), vhost);
  ChangeRequest r;
  r.changes = std::move(plan.changes);
  r.where = std::move(plan.where);
  r.done = no_content();
  log_.info("definitions import user={} vhost={} changes={}", c.control ? "(control socket)" : c.user,
            vhost ? *vhost : "(all)", r.changes.size());
  return r;
}

}  // namespace mqnode::mgmt
