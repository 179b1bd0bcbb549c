#include "lb/reload_plan.hpp"

#include <algorithm>

namespace mqnode::lb {

namespace {

// Pairs <old> and <next> items by name; <same>(a, b) says whether a kept item is unchanged.
template <typename T, typename Same>
NameDiff diff_by_name(const std::vector<T>& old, const std::vector<T>& next, Same same) {
  NameDiff d;
  auto find = [](const std::vector<T>& in, const std::string& name) {
    return std::find_if(in.begin(), in.end(), [&](const T& x) { return x.name == name; });
  };
  for (const auto& n : next) {
    auto o = find(old, n.name);
    if (o == old.end()) d.added.push_back(n.name);
    else if (!same(*o, n)) d.changed.push_back(n.name);
  }
  for (const auto& o : old)
    if (find(next, o.name) == next.end()) d.removed.push_back(o.name);
  return d;
}

// A backend's own settings: its servers are diffed apart.
bool same_settings(BackendConfig a, BackendConfig b) {
  a.servers.clear();
  b.servers.clear();
  return a == b;
}

// backend_index only follows the backends' order; the backend's name says which it is.
bool same_frontend(FrontendConfig a, FrontendConfig b) {
  a.backend_index = b.backend_index = 0;
  return a == b;
}

}  // namespace

ReloadPlan plan_reload(const LbConfig& old, const LbConfig& next) {
  ReloadPlan p;
  p.frontends = diff_by_name(old.frontends, next.frontends, same_frontend);
  p.backends = diff_by_name(old.backends, next.backends, same_settings);
  for (const auto& nb : next.backends) {
    auto ob = std::find_if(old.backends.begin(), old.backends.end(), [&](const auto& b) { return b.name == nb.name; });
    if (ob == old.backends.end()) continue;
    auto d = diff_by_name(ob->servers, nb.servers, [](const ServerConfig& a, const ServerConfig& b) { return a == b; });
    if (!d.empty()) p.servers.emplace_back(nb.name, std::move(d));
  }
  p.stats_uri_changed = old.stats.uri != next.stats.uri;
  p.buffer_size_changed = old.buffer_size != next.buffer_size;
  return p;
}

}  // namespace mqnode::lb
