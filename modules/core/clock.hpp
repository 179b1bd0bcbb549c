// Milliseconds of a monotonic clock, injectable: the broker's timers (message TTL, queue
// expiry) read it through this, so tests move time on instead of sleeping.
#pragma once

#include <chrono>
#include <cstdint>

namespace mqnode::core {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t now_ms() const = 0;
  // The process's steady clock.
  static const Clock& steady();
};

class SteadyClock final : public Clock {
 public:
  int64_t now_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

inline const Clock& Clock::steady() {
  static const SteadyClock clock;
  return clock;
}

// A clock that moves only when told (tests).
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'000'000) : now_(start_ms) {}
  int64_t now_ms() const override { return now_; }
  void advance(int64_t ms) { now_ += ms; }

 private:
  int64_t now_;
};

}  // namespace mqnode::core
