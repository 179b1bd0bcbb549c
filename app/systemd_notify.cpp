#include "systemd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

namespace mqnode::app {

namespace {

std::string take_env(const char* name) {
  const char* v = std::getenv(name);
  std::string out = v ? v : "";
  ::unsetenv(name);
  return out;
}

}  // namespace

SystemdNotifier::SystemdNotifier(core::Logger log) : log_(std::move(log)), socket_(take_env("NOTIFY_SOCKET")) {
  const std::string usec = take_env("WATCHDOG_USEC");
  const std::string pid = take_env("WATCHDOG_PID");
  // WATCHDOG_PID names the process the watchdog is for (absent: the main process).
  if (usec.empty() || (!pid.empty() && pid != std::to_string(::getpid()))) return;
  char* end = nullptr;
  unsigned long long us = std::strtoull(usec.c_str(), &end, 10);
  if (*end == '\0' && us > 0) watchdog_ = std::chrono::microseconds(us);
}

void SystemdNotifier::notify(std::string_view state) const {
  if (socket_.empty()) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_.size() >= sizeof addr.sun_path || (socket_[0] != '/' && socket_[0] != '@')) {
    log_.warn("NOTIFY_SOCKET=\"{}\": expected an absolute path or @abstract name shorter than {} bytes", socket_,
              sizeof addr.sun_path);
    return;
  }
  std::memcpy(addr.sun_path, socket_.data(), socket_.size());
  if (socket_[0] == '@') addr.sun_path[0] = '\0';
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size());
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len) < 0)
    log_.warn("cannot notify systemd ({}) at NOTIFY_SOCKET={}: {}", state, socket_, std::strerror(errno));
  if (fd >= 0) ::close(fd);
}

asio::awaitable<void> keep_watchdog_fed(asio::io_context& io, const SystemdNotifier& notifier) {
  asio::steady_timer timer(io);
  asio::error_code ec;
  for (;;) {
    notifier.notify("WATCHDOG=1");
    timer.expires_after(*notifier.watchdog() / 2);
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

}  // namespace mqnode::app
