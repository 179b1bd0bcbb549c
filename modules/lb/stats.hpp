// The stats listener's routes: `<uri>` as HTML, `<uri>;csv` and `<uri>;json` (rendered from
// stats_rows by stats_render), HAProxy's runtime API verbs over HTTP POST, and `/metrics`.
#pragma once

#include <string>

#include "core/http.hpp"

namespace mqnode::lb {

class LbModule;

// Registers the stats routes under <uri> (and /metrics) on <router>.
void add_stats_routes(core::http::Router& router, LbModule& lb, const std::string& uri);

}  // namespace mqnode::lb
