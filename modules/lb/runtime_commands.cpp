#include "lb/runtime_commands.hpp"

#include <fmt/format.h>

#include "lb/lb_module.hpp"
#include "lb/stats_render.hpp"

namespace mqnode::lb {

namespace {
std::vector<std::string> words(std::string_view line) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    if (j > i) out.emplace_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

struct Target {
  Backend* backend = nullptr;
  Server* server = nullptr;
  std::string error;
};

Target find_target(LbModule& lb, const std::string& spec) {
  auto slash = spec.find('/');
  if (slash == std::string::npos) return {nullptr, nullptr, "Require 'backend/server'.\n"};
  Target t;
  t.backend = lb.find_backend(spec.substr(0, slash));
  if (!t.backend) return {nullptr, nullptr, "No such backend.\n"};
  t.server = t.backend->find(spec.substr(slash + 1));
  if (!t.server) return {nullptr, nullptr, "No such server.\n"};
  return t;
}

std::string set_weight(LbModule& lb, Target& t, const std::string& arg) {
  if (arg.empty()) return "Require <weight> or <weight%>.\n";
  int w = 0;
  bool pct = arg.back() == '%';
  std::string digits = pct ? arg.substr(0, arg.size() - 1) : arg;
  if (!numeric(digits) || digits[0] == '-' || digits.size() > 6) return "Require <weight> or <weight%>.\n";
  w = std::stoi(digits);
  if (pct) w = t.server->config().weight * w / 100;
  if (w > 256) return "Absolute weight can only be between 0 and 256 inclusive.\n";
  bool was_up = t.server->up();
  t.server->set_weight(w);
  lb.log().info("runtime: set weight {}/{} {}", t.backend->name(), t.server->name(), w);
  lb.server_changed(*t.backend, *t.server, was_up);
  return "";
}

std::string set_state(LbModule& lb, Target& t, std::string_view state) {
  bool was_up = t.server->up();
  auto now = Clock::now();
  if (state == "ready") {
    t.server->set_maint(false, now);
    t.server->set_drain(false);
  } else if (state == "drain") {
    t.server->set_maint(false, now);
    t.server->set_drain(true);
  } else if (state == "maint") {
    t.server->set_maint(true, now);
  } else {
    return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n";
  }
  lb.log().info("runtime: set server {}/{} state {}", t.backend->name(), t.server->name(), state);
  lb.server_changed(*t.backend, *t.server, was_up);
  return "";
}
}  // namespace

std::string run_command(LbModule& lb, std::string_view line) {
  auto w = words(line);
  if (w.empty()) return "";
  auto rows = [&] { return stats_rows(lb.frontends(), lb.backends(), Clock::now()); };
  if (w.size() >= 2 && w[0] == "show" && w[1] == "stat") return render_csv(rows());
  if (w.size() == 3 && (w[0] == "disable" || w[0] == "enable") && w[1] == "server") {
    auto t = find_target(lb, w[2]);
    if (!t.server) return t.error;
    return set_state(lb, t, w[0] == "disable" ? "maint" : "ready");
  }
  if (w.size() >= 3 && w[0] == "get" && w[1] == "weight") {
    auto t = find_target(lb, w[2]);
    if (!t.server) return t.error;
    return fmt::format("{} (initial {})\n", t.server->weight(), t.server->config().weight);
  }
  if (w.size() >= 3 && w[0] == "set" && w[1] == "weight") {
    auto t = find_target(lb, w[2]);
    if (!t.server) return t.error;
    return set_weight(lb, t, w.size() > 3 ? w[3] : "");
  }
  if (w.size() >= 4 && w[0] == "set" && w[1] == "server") {
    auto t = find_target(lb, w[2]);
    if (!t.server) return t.error;
    if (w[3] == "weight") return set_weight(lb, t, w.size() > 4 ? w[4] : "");
    if (w[3] == "state") return set_state(lb, t, w.size() > 4 ? w[4] : "");
    return "'set server <srv>' only supports 'state' and 'weight'.\n";
  }
  return "Unknown command. Supported: show stat; disable server <b>/<s>; enable server <b>/<s>; "
         "set server <b>/<s> state ready|drain|maint; set server <b>/<s> weight <w>[%]; "
         "set weight <b>/<s> <w>[%]; get weight <b>/<s>\n";
}

}  // namespace mqnode::lb
