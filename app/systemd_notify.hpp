// systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram of
// "KEY=VALUE" lines to the AF_UNIX socket named by $NOTIFY_SOCKET. Under Type=notify the
// node says READY=1 once its listeners are open, RELOADING=1/READY=1 around a SIGHUP,
// STOPPING=1 on SIGTERM, and WATCHDOG=1 every half $WATCHDOG_USEC while its loop runs.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>

#include "core/log.hpp"

namespace mqnode::app {

class SystemdNotifier {
 public:
  // Reads and unsets NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID, so that processes the
  // node starts (track scripts) do not inherit them, as sd_notify's unset_environment.
  explicit SystemdNotifier(core::Logger log);

  // Sends <state> ("READY=1", ...); nothing when the node is not run by systemd. A failed
  // send is logged, never fatal: the service manager decides what a missing READY means.
  void notify(std::string_view state) const;

  // The watchdog's interval when the unit sets WatchdogSec= for this process.
  std::optional<std::chrono::microseconds> watchdog() const { return watchdog_; }

 private:
  core::Logger log_;
  std::string socket_;  // the address as given; '@' names the abstract namespace
  std::optional<std::chrono::microseconds> watchdog_;
};

// WATCHDOG=1 every half interval until the io_context stops: it proves the loop turns.
asio::awaitable<void> keep_watchdog_fed(asio::io_context& io, const SystemdNotifier& notifier);

}  // namespace mqnode::app
