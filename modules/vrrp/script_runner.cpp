#include "vrrp/script_runner.hpp"

#include <fmt/format.h>

namespace mqnode::vrrp {

using std::chrono::steady_clock;

ScriptRunner::ScriptRunner(asio::io_context& io, const core::Logger& parent, const ScriptConfig& cfg, OnChange on_change)
    : io_(io), cfg_(cfg), log_(parent.child("track_script").child(cfg.name)), on_change_(std::move(on_change)),
      tracker_(cfg), timer_(io) {}

ScriptRunner::~ScriptRunner() {
  stop();
}

void ScriptRunner::start() {
  tracker_.start(steady_clock::now());
  log_.info("running every {} ms timeout_ms={} fall={} rise={} weight={}{} command=\"{}\"", cfg_.interval.count(),
            cfg_.timeout.count(), cfg_.fall, cfg_.rise, cfg_.weight, cfg_.reverse ? " reverse" : "",
            fmt::join(cfg_.argv, " "));
  arm();
}

void ScriptRunner::stop() {
  stopped_ = true;
  timer_.cancel();
  if (proc_) proc_->cancel();
  proc_.reset();
}

void ScriptRunner::dump(nlohmann::json& j) const {
  j = {{"up", tracker_.up()},          {"known", tracker_.known()},     {"running", tracker_.running()},
       {"runs", tracker_.runs()},      {"failed_runs", tracker_.failed_runs()}, {"timeouts", tracker_.timeouts()},
       {"last_result", last_}};
}

void ScriptRunner::arm() {
  if (stopped_) return;
  timer_.expires_at(tracker_.deadline());
  timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || stopped_) return;
    if (tracker_.due(steady_clock::now())) run();
    else arm();
  });
}

void ScriptRunner::run() {
  tracker_.started(steady_clock::now());
  proc_ = Process::start(io_, cfg_.argv, cfg_.timeout, [this](const ProcessResult& r) { on_result(r); });
}

void ScriptRunner::on_result(const ProcessResult& r) {
  proc_.reset();
  auto o = r.timed_out ? ScriptTracker::Outcome::Timeout
                       : r.success() ? ScriptTracker::Outcome::Success : ScriptTracker::Outcome::Failure;
  last_ = r.describe();
  bool changed = tracker_.finished(steady_clock::now(), o);
  if (!r.success()) log_.debug("run failed: {} duration_ms={} output=\"{}\"", last_, r.duration.count(), r.output_line());
  if (changed) {
    if (tracker_.up())
      log_.info("status up: {} (rise {})", last_, cfg_.rise);
    else
      log_.warn("status down: {} (fall {}) output=\"{}\"", last_, cfg_.fall, r.output_line());
    on_change_(cfg_.name, tracker_.up(), last_);
  }
  arm();
}

}  // namespace mqnode::vrrp
