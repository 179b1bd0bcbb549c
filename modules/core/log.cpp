#include "core/log.hpp"

#include <chrono>
#include <cstdio>

namespace mqnode::core {

std::optional<LogLevel> parse_log_level(std::string_view s) {
  if (s == "debug") return LogLevel::Debug;
  if (s == "info") return LogLevel::Info;
  if (s == "warn" || s == "warning") return LogLevel::Warn;
  if (s == "error") return LogLevel::Error;
  return std::nullopt;
}

void LogSink::write(LogLevel lvl, std::string_view logger, std::string_view msg) {
  static constexpr const char* kNames[] = {"debug", "info", "warning", "error"};
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  auto line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z [{}] {}: {}\n", tm.tm_year + 1900,
                          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000,
                          kNames[static_cast<int>(lvl)], logger, msg);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace mqnode::core
