// The web UI's files (modules/mgmt/ui/), compiled into the binary by a build step
// (embed_ui.cmake), so the node serves its UI offline with nothing installed beside it.
#pragma once

#include <string_view>
#include <vector>

#include "core/http.hpp"

namespace mqnode::mgmt {

struct UiAsset {
  std::string_view name;  // "index.html", "app.js", ...
  std::string_view body;
};

const std::vector<UiAsset>& ui_assets();

// GET / (the UI's index) and GET /ui/<file>, with no login: the page logs in to the API
// with HTTP basic auth, as RabbitMQ's UI does.
void add_ui_routes(core::http::Router& r);

}  // namespace mqnode::mgmt
