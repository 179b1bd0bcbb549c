// Time as an InstanceRunner sees it: now() and one-shot timers. SteadyClock runs them on
// the loop's steady_timer; unit tests drive a fake clock by hand (STYLE §15: no sleeps).
#pragma once

#include <functional>
#include <memory>

#include <asio/io_context.hpp>

#include "vrrp/instance.hpp"

namespace mqnode::vrrp {

class Timer {
 public:
  virtual ~Timer() = default;
  // Calls <fn> once at <at>, replacing any pending call. Loop thread only.
  virtual void arm(Time at, std::function<void()> fn) = 0;
  // Drops the pending call: once cancel() returns, it will not run (not even if it was
  // already due and queued on the loop).
  virtual void cancel() = 0;
};

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Time now() const = 0;
  virtual std::unique_ptr<Timer> timer() = 0;
};

// std::chrono::steady_clock, with timers on <io>.
class SteadyClock final : public Clock {
 public:
  explicit SteadyClock(asio::io_context& io) : io_(io) {}
  Time now() const override;
  std::unique_ptr<Timer> timer() override;

 private:
  asio::io_context& io_;
};

}  // namespace mqnode::vrrp
