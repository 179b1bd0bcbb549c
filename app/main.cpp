// mqnode: CLI11 → JSON config → the modules for the requested roles → one io_context.
// Every module is configured (validated) before any of them binds; SIGTERM/SIGINT stop
// them in reverse order, gracefully.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include <CLI/CLI.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "broker/auth.hpp"
#include "broker/broker_module.hpp"
#include "cluster/config.hpp"
#include "core/config.hpp"
#include "core/events.hpp"
#include "core/log.hpp"
#include "ctl.hpp"
#include "log_file.hpp"
#include "mgmt/mgmt_module.hpp"
#include "roles.hpp"
#include "store/data_dir_lock.hpp"
#include "systemd_notify.hpp"

using namespace mqnode;
using app::Role;

namespace {

nlohmann::json load_config(const std::string& path) {
  if (path.empty()) return nlohmann::json::object();
  std::ifstream in(path);
  if (!in) throw core::ConfigError(fmt::format("{}: cannot open config file", path));
  try {
    return nlohmann::json::parse(in, nullptr, true, /*ignore_comments=*/true);
  } catch (const nlohmann::json::parse_error& e) {
    throw core::ConfigError(fmt::format("{}: not valid JSON: {}", path, e.what()));
  }
}

std::string default_node_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) return "mqnode@localhost";
  std::string h(host);
  return "mqnode@" + h.substr(0, h.find('.'));
}

constexpr const char* kDefaultDataDir = "/var/lib/mqnode";
// Exit codes of a node (docs/config.md, "Exit codes"); 0 is a clean stop.
constexpr int kExitCannotStart = 1;
constexpr int kExitConfig = 2;
constexpr int kExitDataDirBusy = 3;

// Reads /node, and /cluster when it is there (<cluster>: its settings, else nullopt;
// <log_file>: /node/log_file, empty for stderr).
core::NodeInfo parse_node(core::ConfigNode& root, std::optional<cluster::ClusterConfig>& cluster, std::string& log_file) {
  auto node = root.object("node");
  core::NodeInfo info;
  info.name = node.string("name", default_node_name());
  info.data_dir = node.string("data_dir", kDefaultDataDir);
  log_file = node.string("log_file", "");
  const std::string cookie_file = node.string("cookie_file", "");
  node.finish();
  cluster.reset();
  if (root.has("cluster")) {
    cluster = cluster::parse_cluster_config(root.object("cluster"));
    cluster->cookie_file = cookie_file;
  }
  return info;
}

// The management module every node runs (not a role), after the role modules, which it
// shows through the API.
std::unique_ptr<core::Module> make_mgmt(const core::ModuleContext& ctx,
                                        const std::vector<std::unique_ptr<core::Module>>& roles) {
  std::vector<const core::Module*> views;
  broker::BrokerModule* broker = nullptr;
  for (const auto& m : roles) {
    views.push_back(m.get());
    if (auto* b = dynamic_cast<broker::BrokerModule*>(m.get())) broker = b;
  }
  core::ModuleContext child{ctx.io, ctx.log.child("mgmt"), ctx.node, ctx.events};
  return std::make_unique<mgmt::MgmtModule>(child, std::move(views), broker);
}

// One config file serves every host: the slice of each role not in <configured> (those
// already read by a running module) is validated with a throwaway module, so a typo shows
// up wherever the file is used; then unknown top-level keys are rejected.
void validate_sections(core::ConfigNode& root, const core::ModuleContext& ctx,
                       const std::vector<std::unique_ptr<core::Module>>& configured) {
  for (Role role : app::kAllRoles) {
    auto key = app::config_key(role);
    bool done = std::any_of(configured.begin(), configured.end(), [&](auto& m) { return m->name() == key; });
    if (done || !root.has(key)) continue;
    std::unique_ptr<core::Module> check;
    try {
      check = app::make_module(role, ctx);
    } catch (const core::ConfigError&) {
      throw core::ConfigError(fmt::format("/{}: this build has no module for this section yet; remove the key", key));
    }
    check->configure(root.object(key));
  }
  bool mgmt_done = std::any_of(configured.begin(), configured.end(), [](auto& m) { return m->name() == "management"; });
  if (!mgmt_done) make_mgmt(ctx, {})->configure(root.object("management"));
  root.finish();
}

// /node and /cluster are read once, at start: each key a reload finds changed from
// <started> is named in a warning.
void warn_restart_keys(const nlohmann::json& started, const nlohmann::json& now, const core::Logger& log) {
  for (const char* section : {"node", "cluster"}) {
    const auto before = started.value(section, nlohmann::json::object());
    const auto after = now.value(section, nlohmann::json::object());
    for (const auto& op : nlohmann::json::diff(before, after))
      log.warn("reload: /{}{} changed; it applies at the next restart", section, op["path"].get<std::string>());
  }
}

// SIGHUP: the file is validated as a whole (every section, as at startup) before any
// running module sees its new slice; an error leaves everything as it was. <started>: the
// file as the node started with it.
void reload_config(const std::string& path, const nlohmann::json& started, const core::ModuleContext& ctx,
                   const std::vector<std::unique_ptr<core::Module>>& modules) {
  nlohmann::json doc = load_config(path);
  if (!doc.is_object()) throw core::ConfigError(fmt::format("/: expected an object, got {}", core::describe(doc)));
  core::ConfigNode root(doc, "");
  std::optional<cluster::ClusterConfig> cluster;
  std::string log_file;
  parse_node(root, cluster, log_file);
  validate_sections(root, ctx, {});
  warn_restart_keys(started, doc, ctx.log);
  for (auto& m : modules) {
    core::ConfigNode slice = core::ConfigNode(doc, "").object(m->name());
    if (!m->reload(std::move(slice)))
      ctx.log.warn("reload: the {} module cannot reload; changes to /{} apply at the next restart", m->name(), m->name());
  }
}

void reopen_log(app::LogFile& file, const core::Logger& log) {
  if (auto err = file.reopen(); !err.empty())
    log.error("/node/log_file: cannot open {} again, logging on to the file open before: {}", file.path(), err);
  else
    log.info("log file {} opened again", file.path());
}

// <check_only>: validate the config for these roles as a start would, bind and touch
// nothing, and return 0 (`mqnode --check-config FILE`).
int run(const std::string& roles_arg, const std::string& config_path, const std::string& data_dir_arg,
        const std::string& level_arg, bool check_only = false) {
  auto sink = std::make_shared<core::LogSink>();
  core::Logger log(sink, "mqnode");
  auto level = core::parse_log_level(level_arg);
  if (!level) {
    std::cerr << "mqnode: --log-level: expected debug, info, warning or error; got \"" << level_arg << "\"\n";
    return kExitConfig;
  }
  sink->level = *level;
  const app::SystemdNotifier systemd(log.child("systemd"));

  asio::io_context io(1);
  core::EventBus events;
  // Declared before the modules: released only after they (and the store) are gone.
  std::optional<store::DataDirLock> data_dir_lock;
  std::vector<std::unique_ptr<core::Module>> modules;
  core::NodeInfo info;
  nlohmann::json started_doc;
  std::optional<app::LogFile> log_file;
  // SIGHUP: re-read --config and hand each running module its new slice; a bad file is
  // logged and changes nothing (HAProxy's reload, without a new process). SIGHUP and
  // SIGUSR1 are caught from here on, before the config is read: one that comes while the
  // node starts is handled once it runs (not lost, and never the default action, exit).
  bool stopping = false;
  asio::signal_set hup(io, SIGHUP);
  std::function<void(const asio::error_code&, int)> on_hup = [&](const asio::error_code& ec, int) {
    if (ec || stopping) return;
    hup.async_wait(on_hup);
    if (log_file) reopen_log(*log_file, log);
    log.info("SIGHUP: reloading {}", config_path.empty() ? "the embedded defaults" : config_path);
    systemd.notify("RELOADING=1");
    try {
      reload_config(config_path, started_doc, core::ModuleContext{io, log, info, events}, modules);
    } catch (const std::exception& e) {
      log.error("reload failed, keeping the running config: {}", e.what());
    }
    systemd.notify("READY=1");
  };
  hup.async_wait(on_hup);
  // SIGUSR1: the log file is opened again (logrotate's postrotate), nothing else.
  asio::signal_set usr1(io, SIGUSR1);
  std::function<void(const asio::error_code&, int)> on_usr1 = [&](const asio::error_code& ec, int) {
    if (ec) return;
    usr1.async_wait(on_usr1);
    if (log_file) reopen_log(*log_file, log);
    else log.info("SIGUSR1: no /node/log_file, the log goes to stderr");
  };
  usr1.async_wait(on_usr1);
  try {
    auto roles = app::parse_roles(roles_arg);
    nlohmann::json doc = load_config(config_path);
    if (!doc.is_object()) throw core::ConfigError(fmt::format("/: expected an object, got {}", core::describe(doc)));
    started_doc = doc;
    core::ConfigNode root(doc, "");
    std::optional<cluster::ClusterConfig> cluster;
    std::string log_path;
    info = parse_node(root, cluster, log_path);
    if (!data_dir_arg.empty()) info.data_dir = data_dir_arg;
    if (!cluster && std::find(roles.begin(), roles.end(), Role::Ram) != roles.end())
      throw core::ConfigError("--role ram: a RAM node is a member of a cluster; add the /cluster section");

    core::ModuleContext ctx{io, log, info, events};
    for (Role role : roles) modules.push_back(app::make_module(role, ctx));
    if (cluster)
      for (auto& m : modules)
        if (auto* b = dynamic_cast<broker::BrokerModule*>(m.get())) b->set_cluster(*cluster);
    modules.push_back(make_mgmt(ctx, modules));
    for (auto& m : modules) m->configure(root.object(m->name()));
    validate_sections(root, ctx, modules);
    if (check_only) {
      std::cout << fmt::format("{}: config valid for roles {}\n", config_path, roles_arg);
      return 0;
    }
    if (!log_path.empty()) log_file.emplace(log_path);
    log.info("starting mqnode {} node={} roles={} data_dir={}", MQNODE_VERSION, info.name, roles_arg, info.data_dir);
    // Every node keeps something there (the control socket at least).
    std::error_code fs_ec;
    std::filesystem::create_directories(info.data_dir, fs_ec);
    if (fs_ec)
      throw std::runtime_error(fmt::format("cannot create the data dir {} (/node/data_dir or --data-dir): {}",
                                           info.data_dir, fs_ec.message()));
    // Before any module opens, creates or cleans up a file there.
    data_dir_lock.emplace(info.data_dir);
    for (auto& m : modules) m->start();
  } catch (const core::ConfigError& e) {
    std::cerr << "mqnode: config error: " << e.what() << "\n";
    return kExitConfig;
  } catch (const store::DataDirBusy& e) {
    std::cerr << "mqnode: cannot start: " << e.what() << "\n";
    return kExitDataDirBusy;
  } catch (const std::exception& e) {
    std::cerr << "mqnode: cannot start: " << e.what() << "\n";
    return kExitCannotStart;
  }

  asio::signal_set signals(io, SIGINT, SIGTERM);
  std::function<void(const asio::error_code&, int)> on_signal = [&](const asio::error_code& ec, int sig) {
    if (ec) return;
    if (stopping) {
      log.warn("second signal {}: exiting now", sig);
      std::_Exit(1);
    }
    stopping = true;
    log.info("signal {}: stopping", sig);
    systemd.notify("STOPPING=1");
    signals.async_wait(on_signal);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          for (auto it = modules.rbegin(); it != modules.rend(); ++it) co_await (*it)->stop();
          log.info("stopped");
          io.stop();
        },
        asio::detached);
  };
  signals.async_wait(on_signal);
  if (systemd.watchdog()) asio::co_spawn(io, app::keep_watchdog_fed(io, systemd), asio::detached);
  std::signal(SIGPIPE, SIG_IGN);
  // Every listener is bound and listening (a client connecting now is accepted), and the
  // signal handlers are in place (a `systemctl reload` now is not lost).
  systemd.notify(fmt::format("READY=1\nSTATUS=serving roles {}", roles_arg));
  io.run();
  return 0;
}

// `mqnode import ARGS`: runs the importer (packaging/mqnode-import, Python 3, standard library
// only, so it also runs as it is on the old host) with ARGS, as `git <verb>` runs its
// helpers. It sits beside the binary in a build tree, in ../lib/mqnode once installed
// (/usr/sbin → /usr/lib/mqnode, /usr/local/bin → /usr/local/lib/mqnode).
int run_import(const std::vector<std::string>& args) {
  std::error_code ec;
  const auto exe_dir = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  const std::filesystem::path candidates[] = {exe_dir / "mqnode-import", exe_dir / ".." / "lib" / "mqnode" / "mqnode-import"};
  for (const auto& script : candidates) {
    if (::access(script.c_str(), X_OK) != 0) continue;
    std::vector<char*> argv{const_cast<char*>(script.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(script.c_str(), argv.data());
    std::cerr << "mqnode import: cannot run " << script.string() << ": " << std::strerror(errno) << "\n";
    return kExitCannotStart;
  }
  std::cerr << fmt::format("mqnode import: the importer is not installed (looked for {} and {})\n",
                           candidates[0].string(), candidates[1].lexically_normal().string());
  return kExitCannotStart;
}

// Where `mqnode ctl` finds the node's control socket: ctl's --data-dir, the one before
// "ctl", the /node/data_dir of the config file (ctl's -c, else the one before "ctl"), or
// the default, in that order.
std::string ctl_data_dir(const app::Ctl& ctl, const std::string& data_dir, const std::string& config) {
  if (!ctl.data_dir().empty()) return ctl.data_dir();
  if (!data_dir.empty()) return data_dir;
  nlohmann::json doc = load_config(!ctl.config().empty() ? ctl.config() : config);
  const auto ptr = nlohmann::json::json_pointer("/node/data_dir");
  if (doc.is_object() && doc.contains(ptr) && doc[ptr].is_string()) return doc[ptr].get<std::string>();
  return kDefaultDataDir;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"mqnode — RabbitMQ broker, HAProxy and keepalived in one binary"};
  std::string roles = "disc", config, data_dir, level = "info";
  cli.add_option("--role", roles, "comma list of roles: disc, ram, lb, vip")->capture_default_str();
  cli.add_option("-c,--config", config, "JSON config file (default: embedded defaults)");
  cli.add_option("--data-dir", data_dir, "data directory (overrides /node/data_dir)");
  cli.add_option("--log-level", level, "debug, info, warning or error")->capture_default_str();
  std::string check_config;
  cli.add_option("--check-config", check_config,
                 "validate FILE for --role as a start would (every section), start nothing; exit 0 or 2")
      ->excludes("--config");
  auto* version = cli.add_subcommand("version", "print the version and exit");
  auto* hash = cli.add_subcommand("hash_password", "print a password hash for /broker/users/*/password_hash");
  std::string password;
  hash->add_option("password", password, "the password")->required();
  auto* import_cmd = cli.add_subcommand("import",
                                        "write mqnode's config from a RabbitMQ + HAProxy + keepalived host's files "
                                        "(`mqnode import --help`)");
  // Every argument, --help included, is the importer's.
  import_cmd->prefix_command()->set_help_flag();
  app::Ctl ctl(cli);
  cli.require_subcommand(0, 1);
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = cli.exit(e);
    return rc != 0 && ctl.selected() ? app::kExitUsage : rc;
  }

  if (*version) {
    std::cout << "mqnode " << MQNODE_VERSION << "\n";
    return 0;
  }
  if (*hash) {
    std::cout << broker::hash_password(password) << "\n";
    return 0;
  }
  if (*import_cmd) return run_import(import_cmd->remaining());
  if (ctl.selected()) {
    try {
      return ctl.run(ctl_data_dir(ctl, data_dir, config));
    } catch (const core::ConfigError& e) {
      std::cerr << "mqnode ctl: " << e.what() << "\n";
      return app::kExitUsage;
    }
  }
  if (!check_config.empty()) return run(roles, check_config, data_dir, level, /*check_only=*/true);
  return run(roles, config, data_dir, level);
}
