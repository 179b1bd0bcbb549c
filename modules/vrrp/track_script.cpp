#include "vrrp/track_script.hpp"

#include <algorithm>

namespace mqnode::vrrp {

std::optional<std::vector<std::string>> split_command(std::string_view s, std::string& err) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\\' && quote != '\'') {
      if (i + 1 == s.size()) {
        err = "a trailing backslash";
        return std::nullopt;
      }
      cur += s[++i];
      in_word = true;
    } else if (quote) {
      if (c == quote)
        quote = 0;
      else
        cur += c;
    } else if (c == '"' || c == '\'') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) out.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (quote) {
    err = std::string("an unterminated ") + quote + " quote";
    return std::nullopt;
  }
  if (in_word) out.push_back(std::move(cur));
  if (out.empty() || out[0].empty()) {
    err = "an empty command";
    return std::nullopt;
  }
  return out;
}

ScriptTracker::ScriptTracker(const ScriptConfig& cfg) : cfg_(cfg), up_(!cfg.init_fail), known_(cfg.init_fail) {}

void ScriptTracker::started(Time now) {
  running_ = true;
  started_ = now;
  kill_at_ = now + cfg_.timeout;
  ++runs_;
}

bool ScriptTracker::finished(Time now, Outcome o) {
  if (!running_) return false;
  running_ = false;
  kill_at_ = Time::max();
  // keepalived schedules the next run <interval> after this one started; a run that took
  // longer than that is followed at once.
  next_run_ = std::max(started_ + cfg_.interval, now);
  const bool ok = o == Outcome::Success;
  if (!ok) ++failed_runs_;
  if (o == Outcome::Timeout) ++timeouts_;
  if (!known_) {
    known_ = true;
    successes_ = failures_ = 0;
    if (up_ == ok) return false;
    up_ = ok;
    return true;
  }
  if (up_) {
    successes_ = 0;
    failures_ = ok ? 0 : failures_ + 1;
    if (failures_ >= cfg_.fall) {
      up_ = false;
      failures_ = 0;
      return true;
    }
  } else {
    failures_ = 0;
    successes_ = ok ? successes_ + 1 : 0;
    if (successes_ >= cfg_.rise) {
      up_ = true;
      successes_ = 0;
      return true;
    }
  }
  return false;
}

}  // namespace mqnode::vrrp
