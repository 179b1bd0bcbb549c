#include "lb/stats.hpp"

#include "lb/lb_module.hpp"
#include "lb/runtime_commands.hpp"
#include "lb/stats_render.hpp"

namespace mqnode::lb {

namespace http = core::http;

void add_stats_routes(http::Router& router, LbModule& lb, const std::string& uri) {
  // The uri is fixed per router (a reload that changes it installs a new one); everything
  // else is read per request, so a reload's new credentials, realm, refresh and admin
  // apply at once.
  auto authorized = [&lb](const http::Request& req) {
    const StatsConfig& cfg = lb.config().stats;
    return cfg.user.empty() || http::check_basic_auth(req, cfg.user, cfg.password);
  };
  router.add_prefix("GET", uri, [&lb, uri, authorized](const http::Request& req) {
    const StatsConfig& cfg = lb.config().stats;
    if (!authorized(req)) return http::Response::unauthorized(cfg.realm);
    // <uri>[;csv|;json][;norefresh] as HAProxy, also "<uri>/" and "<uri>?stats".
    std::string_view rest(req.path);
    rest.remove_prefix(uri.size());
    if (rest == "/") rest = "";
    bool csv = false, json = false, refresh = true;
    while (!rest.empty()) {
      if (rest.front() != ';') return http::Response::not_found();
      rest.remove_prefix(1);
      auto opt = rest.substr(0, rest.find(';'));
      rest.remove_prefix(opt.size());
      if (opt == "csv") csv = true;
      else if (opt == "json") json = true;
      else if (opt == "norefresh") refresh = false;
      else if (opt != "up" && !opt.empty()) return http::Response::not_found();
    }
    auto rows = stats_rows(lb.frontends(), lb.backends(), Clock::now());
    if (csv) {
      auto r = http::Response::text(200, render_csv(rows));
      r.content_type = "text/plain";
      return r;
    }
    if (json) return http::Response::json(render_json(rows));
    StatsConfig shown = cfg;
    shown.uri = uri;
    return http::Response::html(render_html(rows, shown, lb.node_name(), refresh));
  });
  auto runtime = [&lb, authorized](const http::Request& req) {
    const StatsConfig& cfg = lb.config().stats;
    if (!authorized(req)) return http::Response::unauthorized(cfg.realm);
    // Changing state needs credentials, as HAProxy's `stats admin` should always have.
    if (!cfg.admin || cfg.user.empty())
      return http::Response::text(403, "403 Forbidden: runtime control needs /lb/stats user, password and admin\n");
    std::string body = req.body;
    auto params = req.params();
    if (params.count("cmd")) body = params["cmd"];
    std::string out;
    std::size_t start = 0;
    while (start <= body.size()) {
      auto nl = body.find_first_of("\n;", start);
      auto line = std::string_view(body).substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      out += run_command(lb, line);
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    return http::Response::text(200, out);
  };
  router.add("POST", uri + "/runtime", runtime);
  router.add("GET", "/metrics", [&lb, authorized](const http::Request& req) {
    const StatsConfig& cfg = lb.config().stats;
    if (!authorized(req)) return http::Response::unauthorized(cfg.realm);
    core::MetricsWriter w;
    lb.metrics(w);
    auto r = http::Response::text(200, w.text());
    r.content_type = core::kMetricsContentType;
    return r;
  });
}

}  // namespace mqnode::lb
