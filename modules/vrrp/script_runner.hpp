// One /vrrp/track_scripts entry on the loop: runs its command every interval (never two at
// once) as a Process, counts the results with ScriptTracker and reports status changes.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "core/log.hpp"
#include "vrrp/process.hpp"
#include "vrrp/track_script.hpp"

namespace mqnode::vrrp {

class ScriptRunner {
 public:
  // Called when the counted status flips (after fall/rise): (script, up, last result).
  using OnChange = std::function<void(std::string_view script, bool up, std::string_view detail)>;

  // <cfg> must outlive the runner. Logs as <parent>.track_script.<name>. Loop thread only.
  ScriptRunner(asio::io_context& io, const core::Logger& parent, const ScriptConfig& cfg, OnChange on_change);
  ~ScriptRunner();
  ScriptRunner(const ScriptRunner&) = delete;
  ScriptRunner& operator=(const ScriptRunner&) = delete;

  const ScriptConfig& config() const { return cfg_; }
  const ScriptTracker& tracker() const { return tracker_; }

  void start();
  // Idempotent: cancels the timer and kills a run in progress; no callback after it.
  void stop();
  void dump(nlohmann::json& j) const;

 private:
  void arm();
  void run();
  void on_result(const ProcessResult& r);

  asio::io_context& io_;
  const ScriptConfig& cfg_;
  core::Logger log_;
  OnChange on_change_;
  ScriptTracker tracker_;
  asio::steady_timer timer_;
  std::shared_ptr<Process> proc_;
  std::string last_;
  bool stopped_ = false;
};

}  // namespace mqnode::vrrp
