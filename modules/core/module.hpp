// The surface every module offers to app/, to mgmt/ (status, metrics) and to vrrp tracking:
// configure from its JSON slice, start on the shared io_context, stop gracefully, report
// health and a status document.
#pragma once

#include <string>
#include <string_view>

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"

namespace mqnode::core {

struct Health {
  enum class State { Ok, Degraded, Down };
  State state = State::Ok;
  std::string detail;
};

struct NodeInfo {
  std::string name;      // node name, e.g. "mqnode@host"
  std::string data_dir;  // where durable state lives; exists by start() (app/ creates it)
};

class EventBus;

struct ModuleContext {
  asio::io_context& io;
  Logger log;
  NodeInfo node;
  EventBus& events;
};

class Module {
 public:
  virtual ~Module() = default;
  virtual std::string_view name() const = 0;  // its JSON key: "broker", "lb", "vrrp"
  // Parses and validates the slice; binds nothing. Throws ConfigError naming the path.
  virtual void configure(ConfigNode slice) = 0;
  // Binds listeners and spawns the module's coroutines. Throws on bind failure.
  virtual void start() = 0;
  // Stops accepting, closes sessions politely, flushes state.
  virtual asio::awaitable<void> stop() = 0;
  // SIGHUP: applies a new slice to the running module. Validates all of it before changing
  // anything (throws ConfigError naming the path; the running config stays). Returns false
  // when the module cannot reload (the default; app/ logs that a restart is needed).
  virtual bool reload(ConfigNode /*slice*/) { return false; }
  virtual Health health() const = 0;
  virtual void dump(nlohmann::json& out) const = 0;
  // Appends the module's counters and gauges to a Prometheus scrape (names mqnode_<module>_*).
  virtual void metrics(MetricsWriter& /*out*/) const {}
};

}  // namespace mqnode::core
