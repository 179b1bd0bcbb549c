#include "mgmt/mgmt_module.hpp"

#include <filesystem>

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
      api_(ApiSources{ctx_.node, with(std::move(modules), this), broker, [this, broker] { return tls_listeners(broker); }},
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

asio::awaitable<void> MgmtModule::stop() {
  stopped_ = true;
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
