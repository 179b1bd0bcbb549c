#include "vrrp/clock.hpp"

#include <asio/steady_timer.hpp>

namespace mqnode::vrrp {

namespace {

// A steady_timer whose cancel() also drops a callback already queued: asio's cancel() cannot
// recall a completion that is due, so every callback carries the generation it was armed in.
class SteadyTimer final : public Timer {
 public:
  explicit SteadyTimer(asio::io_context& io) : timer_(io) {}

  void arm(Time at, std::function<void()> fn) override {
    ++gen_;
    timer_.expires_at(at);
    timer_.async_wait([this, gen = gen_, fn = std::move(fn)](const asio::error_code& ec) {
      if (!ec && gen == gen_) fn();
    });
  }

  void cancel() override {
    ++gen_;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  uint64_t gen_ = 0;
};

}  // namespace

Time SteadyClock::now() const {
  return std::chrono::steady_clock::now();
}

std::unique_ptr<Timer> SteadyClock::timer() {
  return std::make_unique<SteadyTimer>(io_);
}

}  // namespace mqnode::vrrp
