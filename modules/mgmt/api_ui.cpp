// The web UI's routes: its embedded files (ui_assets.hpp) served as they are.
#include <string>

#include "mgmt/ui_assets.hpp"

namespace mqnode::mgmt {

namespace {

std::string_view content_type(std::string_view name) {
  if (name.ends_with(".html")) return "text/html; charset=utf-8";
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  return "application/octet-stream";
}

core::http::Response asset(const UiAsset& a) {
  core::http::Response r;
  r.content_type = content_type(a.name);
  r.body = a.body;
  // A new binary may bring a new UI: the browser asks again rather than mix versions.
  r.headers.emplace_back("Cache-Control", "no-cache");
  return r;
}

}  // namespace

void add_ui_routes(core::http::Router& r) {
  for (const UiAsset& a : ui_assets()) {
    r.add("GET", "/ui/" + std::string(a.name), [&a](const core::http::Request&) { return asset(a); });
    if (a.name == "index.html") r.add("GET", "/", [&a](const core::http::Request&) { return asset(a); });
  }
}

}  // namespace mqnode::mgmt
