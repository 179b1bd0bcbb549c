#include "mgmt/mgmt_module.hpp"

#include <chrono>
#include <filesystem>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>

#include <fmt/format.h>

namespace mqnode::mgmt {

MgmtConfig parse_mgmt_config(core::ConfigNode node) {
  MgmtConfig c;
  if (node.has("bind")) {
    c.bind = core::parse_endpoint(node.required_string("bind"));
    if (!c.bind) node.fail("bind", "\"address:port\" with a numeric IPv4/IPv6 address");
  }
  if (node.has("tls")) {
    if (!c.bind) node.fail("tls", "no \"tls\" without \"bind\" (HTTPS is for the TCP listener)");
    c.tls = core::tls::parse_tls_options(node.object("tls"));
  }
  c.collect_statistics_interval_ms = node.integer("collect_statistics_interval", 5000, 100, 3'600'000);
  node.finish();
  return c;
}

std::string control_socket_path(const std::string& data_dir) {
  return (std::filesystem::path(data_dir) / "mqnode.sock").string();
}

namespace {
// The API shows this module's own status and health beside the role modules'.
std::vector<const core::Module*> with(std::vector<const core::Module*> modules, const core::Module* self) {
  modules.push_back(self);
  return modules;
}
}  // namespace

MgmtModule::MgmtModule(core::ModuleContext ctx, std::vector<const core::Module*> modules,
                       broker::BrokerModule* broker)
    : ctx_(std::move(ctx)),
      broker_(broker),
      sample_timer_(ctx_.io),
      api_(ApiSources{ctx_.node, with(std::move(modules), this), broker, [this, broker] { return tls_listeners(broker); },
                      &rates_},
           ctx_.log) {}

MgmtModule::~MgmtModule() = default;

void MgmtModule::configure(core::ConfigNode slice) {
  cfg_ = parse_mgmt_config(std::move(slice));
  if (cfg_.tls) {
    tls_ = std::make_shared<core::tls::TlsContext>(*cfg_.tls);  // reads the files now
    core::tls::warn_if_expiring(*cfg_.tls, ctx_.log);
  }
}

bool MgmtModule::reload(core::ConfigNode slice) {
  MgmtConfig next = parse_mgmt_config(std::move(slice));
  if (tls_ && next.tls) {
    *tls_ = core::tls::TlsContext(*next.tls);  // throws before changing anything
    ctx_.log.info("reload: TLS certificates of /management/tls read again");
    core::tls::warn_if_expiring(tls_->options(), ctx_.log);
  }
  auto text = [](const MgmtConfig& c) { return c.bind ? c.bind->to_string() : std::string(); };
  // The sampling loop reads the interval each round.
  cfg_.collect_statistics_interval_ms = next.collect_statistics_interval_ms;
  return text(next) == text(cfg_) && next.tls.has_value() == cfg_.tls.has_value();
}

void MgmtModule::start() {
  auto path = control_socket_path(ctx_.node.data_dir);
  control_ = std::make_unique<core::http::Server>(ctx_.io, ctx_.log.child("ctl"), api_.router(false));
  try {
    control_->listen_unix(path, 0600);
  } catch (const std::system_error& e) {
    throw std::runtime_error(fmt::format("cannot listen on the control socket {}: {}", path, e.code().message()));
  }
  ctx_.log.info("control socket {}", path);
  asio::co_spawn(ctx_.io, sample_rates(), asio::detached);
  if (cfg_.bind) {
    core::http::ServerOptions opts;
    opts.tls = tls_;
    tcp_ = std::make_unique<core::http::Server>(ctx_.io, ctx_.log.child("http"), api_.router(true), opts);
    try {
      tcp_->listen(cfg_.bind->resolve());
    } catch (const std::system_error& e) {
      throw std::runtime_error(
          fmt::format("cannot listen on {} (/management/bind): {}", cfg_.bind->to_string(), e.code().message()));
    }
    auto ep = tcp_->local_endpoint();
    ctx_.log.info("management API on {}://{}:{}/api/ and /metrics", tls_ ? "https" : "http", ep.address().to_string(),
                  ep.port());
  }
}

asio::awaitable<void> MgmtModule::sample_rates() {
  while (!stopped_) {
    sample_timer_.expires_after(std::chrono::milliseconds(cfg_.collect_statistics_interval_ms));
    asio::error_code ec;
    co_await sample_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    const broker::Broker* b = broker_ ? broker_->broker() : nullptr;
    if (!b) continue;
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
    rates_.sample(*b, now.count());
  }
}

asio::awaitable<void> MgmtModule::stop() {
  stopped_ = true;
  sample_timer_.cancel();
  if (tcp_) tcp_->stop();
  if (control_) control_->stop();
  co_return;
}

core::Health MgmtModule::health() const {
  if (stopped_) return {core::Health::State::Down, "stopped"};
  if (!control_) return {core::Health::State::Down, "not started"};
  return {core::Health::State::Ok, ""};
}

void MgmtModule::dump(nlohmann::json& out) const {
  out["control_socket"] = control_socket_path(ctx_.node.data_dir);
  out["control_connections"] = control_ ? control_->connections() : 0;
  if (auto ep = tcp_endpoint()) {
    out["bind"] = fmt::format("{}:{}", ep->address().to_string(), ep->port());
    out["http_connections"] = tcp_->connections();
  }
}

std::vector<core::tls::TlsListener> MgmtModule::tls_listeners(const broker::BrokerModule* broker) const {
  auto out = broker ? broker->tls_listeners() : std::vector<core::tls::TlsListener>{};
  if (tls_ && tcp_) out.push_back({"https", tcp_->local_endpoint(), tls_->options()});
  return out;
}

std::optional<asio::ip::tcp::endpoint> MgmtModule::tcp_endpoint() const {
  if (!tcp_) return std::nullopt;
  return tcp_->local_endpoint();
}

}  // namespace mqnode::mgmt
