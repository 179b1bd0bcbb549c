// keepalived's vrrp_script, the pure half: the command line, the schedule (run every
// <interval>, killed after <timeout>) and the fall/rise counting of results. Time comes in
// as arguments so unit tests drive it on a fake clock; vrrp_module runs the processes.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mqnode::vrrp {

using Time = std::chrono::steady_clock::time_point;

// /vrrp/track_scripts/<name>: keepalived's `vrrp_script <name> { ... }`.
struct ScriptConfig {
  std::string name;
  std::vector<std::string> argv;               // script: the command, split as keepalived does
  std::chrono::milliseconds interval{1000};    // between the starts of two runs
  std::chrono::milliseconds timeout{1000};     // a run still going after this is killed: a failure
  int fall = 1;                                // consecutive failures for up → down
  int rise = 1;                                // consecutive successes for down → up
  int weight = 0;                              // default weight of instances tracking it
  bool reverse = false;                        // default direction of that weight
  bool init_fail = false;                      // down until <rise> successes
};

// Splits a keepalived `script` string: whitespace separates words, '…' and "…" group them
// (quotes removed), a backslash escapes the next character. nullopt (and <err>) on an
// unterminated quote or an empty command.
std::optional<std::vector<std::string>> split_command(std::string_view s, std::string& err);

// One script's schedule and status. The status is `up` until the first result unless
// init_fail; the first result decides at once (keepalived starts scripts at rise-1), then
// <fall> consecutive failures take an up script down and <rise> consecutive successes bring
// a down one up.
class ScriptTracker {
 public:
  enum class Outcome { Success, Failure, Timeout };

  explicit ScriptTracker(const ScriptConfig& cfg);

  void start(Time now) { next_run_ = now; }
  // When the driver must act: start a run (not running) or kill it (running).
  Time deadline() const { return running_ ? kill_at_ : next_run_; }
  bool running() const { return running_; }
  bool due(Time now) const { return !running_ && now >= next_run_; }
  bool overdue(Time now) const { return running_ && now >= kill_at_; }
  // A run was started at <now>.
  void started(Time now);
  // The run ended (or was killed on timeout). Returns true when the status changed.
  bool finished(Time now, Outcome o);

  bool up() const { return up_; }
  bool known() const { return known_; }      // a result was seen (or init_fail)
  int successes() const { return successes_; }  // consecutive, while down
  int failures() const { return failures_; }    // consecutive, while up
  uint64_t runs() const { return runs_; }
  uint64_t failed_runs() const { return failed_runs_; }
  uint64_t timeouts() const { return timeouts_; }

 private:
  const ScriptConfig& cfg_;
  bool up_;
  bool known_;
  bool running_ = false;
  Time started_{};
  Time kill_at_ = Time::max();
  Time next_run_ = Time::max();
  int successes_ = 0;
  int failures_ = 0;
  uint64_t runs_ = 0, failed_runs_ = 0, timeouts_ = 0;
};

}  // namespace mqnode::vrrp
