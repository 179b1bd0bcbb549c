#include "vrrp/vrrp_module.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "core/events.hpp"
#include "vrrp/instance_runner.hpp"
#include "vrrp/netlink.hpp"
#include "vrrp/raw_link.hpp"
#include "vrrp/script_runner.hpp"

namespace mqnode::vrrp {

using namespace std::chrono;

namespace {

// CapEff from /proc/self/status: bit 12 CAP_NET_ADMIN, bit 13 CAP_NET_RAW.
bool has_capabilities(std::string& missing) {
  std::ifstream in("/proc/self/status");
  std::string line;
  uint64_t eff = 0;
  while (std::getline(in, line))
    if (line.rfind("CapEff:", 0) == 0) eff = std::stoull(line.substr(7), nullptr, 16);
  if (!(eff & (1ull << 13))) missing += "CAP_NET_RAW ";
  if (!(eff & (1ull << 12))) missing += "CAP_NET_ADMIN ";
  return missing.empty();
}

// At shutdown, notify_stop and the last hooks get this long to finish.
constexpr milliseconds kStopGrace{2'000};

// A command given with a path must exist and be executable at start; a bare name is looked
// up in PATH when it runs.
void check_command(const std::vector<std::string>& argv, std::string_view path) {
  if (argv.empty() || argv[0].find('/') == std::string::npos) return;
  if (::access(argv[0].c_str(), X_OK) < 0)
    throw std::runtime_error(fmt::format("{}: cannot execute {}: {}", path, argv[0], std::strerror(errno)));
}

}  // namespace

VrrpModule::VrrpModule(core::ModuleContext ctx) : ctx_(std::move(ctx)), clock_(ctx_.io) {}
VrrpModule::~VrrpModule() = default;

void VrrpModule::configure(core::ConfigNode slice) {
  cfg_ = parse_vrrp_config(std::move(slice));
}

void VrrpModule::start() {
  if (cfg_.instances.empty()) {
    ctx_.log.warn("no /vrrp/instances configured: the vip role holds no address");
  } else {
    std::string missing;
    if (!has_capabilities(missing))
      throw std::runtime_error(fmt::format(
          "the vip role needs {}(run as root, or grant them, e.g. systemd AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN)",
          missing));
    nl_ = std::make_unique<Netlink>();
  }
  // Only scripts some instance tracks are run (as keepalived does).
  for (const auto& sc : cfg_.track_scripts) {
    bool used = false;
    for (const auto& inst : cfg_.instances)
      for (const auto& t : inst.track) used |= t.kind == Track::Kind::Script && t.name == sc.name;
    if (!used) {
      ctx_.log.warn("track script {} is not tracked by any instance: not run", sc.name);
      continue;
    }
    check_command(sc.argv, fmt::format("/vrrp/track_scripts/{}/script", sc.name));
    scripts_.push_back(std::make_unique<ScriptRunner>(
        ctx_.io, ctx_.log, sc, [this](std::string_view script, bool up, std::string_view detail) {
          if (stopping_) return;
          for (auto& r : runners_) r->on_script(script, up, detail);
        }));
  }
  for (std::size_t i = 0; i < cfg_.instances.size(); ++i) {
    const auto& inst = cfg_.instances[i];
    for (auto [key, argv] : {std::pair{"notify_master", &inst.notify_master}, std::pair{"notify_backup", &inst.notify_backup},
                             std::pair{"notify_fault", &inst.notify_fault}, std::pair{"notify_stop", &inst.notify_stop},
                             std::pair{"notify", &inst.notify}})
      check_command(*argv, fmt::format("/vrrp/instances/{}/{}", i, key));
  }
  for (std::size_t i = 0; i < cfg_.instances.size(); ++i) {
    const auto& inst = cfg_.instances[i];
    const auto path = fmt::format("/vrrp/instances/{}", i);
    auto r = std::make_unique<InstanceRunner>(ctx_.io, inst, path, ctx_.log.child(inst.name),
                                              std::make_unique<RawLink>(ctx_.io, *nl_, inst, path), clock_,
                                              [this] { asio::post(ctx_.io, [this] { publish_health(); }); });
    r->open();
    runners_.push_back(std::move(r));
  }
  // Tracking is in-process: health changes arrive here in the same turn of the loop as the
  // module's own state change, no polling interval.
  subscription_ = ctx_.events.subscribe_health([this](std::string_view module, const core::Health& h) {
    if (module == name()) return;
    for (auto& r : runners_) r->on_health(module, h);
  });
  // The cluster's membership: logged for now; replicated queues follow the VIP on it.
  membership_sub_ = ctx_.events.subscribe_membership([this](const core::MembershipEvent& e) {
    ctx_.log.info("cluster membership {} node={}", core::kind_name(e.kind), e.node);
  });
  for (auto& s : scripts_) s->start();
  for (std::size_t i = 0; i < runners_.size(); ++i) {
    for (const auto& t : cfg_.instances[i].track) {
      if (t.kind == Track::Kind::Script) {
        const auto& tracker = script_runner(t.name)->tracker();
        runners_[i]->on_script(t.name, tracker.up(), tracker.known() ? "init_fail" : "");
        continue;
      }
      // A tracked module that never announced itself is not running here: fail safe.
      const auto* h = ctx_.events.last_health(t.name);
      runners_[i]->on_health(t.name, h ? *h : core::Health{core::Health::State::Down, "not running in this process"});
    }
    runners_[i]->start();
  }
  started_ = true;
  publish_health();
}

asio::awaitable<void> VrrpModule::stop() {
  stopping_ = true;
  if (subscription_) ctx_.events.unsubscribe(subscription_);
  if (membership_sub_) ctx_.events.unsubscribe(membership_sub_);
  subscription_ = membership_sub_ = 0;
  for (auto& s : scripts_) s->stop();
  for (auto& r : runners_) r->shutdown();
  // notify_stop (and hooks still queued) get a bounded time to finish and be logged.
  asio::steady_timer t(ctx_.io);
  asio::error_code ec;
  auto until = steady_clock::now() + kStopGrace;
  auto busy = [&] {
    for (auto& r : runners_)
      if (r->notifying()) return true;
    return false;
  };
  while (busy() && steady_clock::now() < until) {
    t.expires_after(10ms);
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  for (auto& r : runners_) r->cancel_notify();
}

const ScriptRunner* VrrpModule::script_runner(std::string_view name) const {
  for (const auto& s : scripts_)
    if (s->config().name == name) return s.get();
  return nullptr;
}

void VrrpModule::publish_health() {
  ctx_.events.publish_health(name(), health());
}

core::Health VrrpModule::health() const {
  if (!started_) return {core::Health::State::Down, "not started"};
  if (stopping_) return {core::Health::State::Down, "stopping"};
  std::string faults;
  for (const auto& r : runners_)
    if (r->instance().state() == State::Fault) faults += (faults.empty() ? "" : ", ") + r->instance().config().name;
  if (!faults.empty()) return {core::Health::State::Degraded, "fault: " + faults};
  return {core::Health::State::Ok, ""};
}

void VrrpModule::metrics(core::MetricsWriter& out) const {
  std::vector<const Instance*> instances;
  for (const auto& r : runners_) instances.push_back(&r->instance());
  write_metrics(out, instances);
  if (scripts_.empty()) return;
  using Type = core::MetricsWriter::Type;
  out.family("mqnode_vrrp_track_script_up", Type::Gauge, "1 while the track script counts as succeeding (after fall/rise).");
  for (const auto& sc : scripts_) out.sample({{"script", sc->config().name}}, sc->tracker().up() ? 1 : 0);
  out.family("mqnode_vrrp_track_script_runs_total", Type::Counter, "Track script runs.");
  for (const auto& sc : scripts_) out.sample({{"script", sc->config().name}}, static_cast<double>(sc->tracker().runs()));
  out.family("mqnode_vrrp_track_script_failed_runs_total", Type::Counter, "Track script runs that failed or timed out.");
  for (const auto& sc : scripts_)
    out.sample({{"script", sc->config().name}}, static_cast<double>(sc->tracker().failed_runs()));
}

void VrrpModule::dump(nlohmann::json& out) const {
  auto& arr = out["instances"];
  arr = nlohmann::json::array();
  for (const auto& r : runners_) {
    nlohmann::json j;
    r->instance().dump(j);
    arr.push_back(std::move(j));
  }
  auto& ts = out["track_scripts"];
  ts = nlohmann::json::object();
  for (const auto& s : scripts_) s->dump(ts[s->config().name]);
}

}  // namespace mqnode::vrrp
