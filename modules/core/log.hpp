// Leveled key=value logging to stderr through fmt. Loggers are cheap named handles
// ("broker.connection") sharing one sink; the level is checked before formatting.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace mqnode::core {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

std::optional<LogLevel> parse_log_level(std::string_view s);

struct LogSink {
  LogLevel level = LogLevel::Info;
  void write(LogLevel lvl, std::string_view logger, std::string_view msg);
};

class Logger {
 public:
  Logger(std::shared_ptr<LogSink> sink, std::string name) : sink_(std::move(sink)), name_(std::move(name)) {}

  Logger child(std::string_view suffix) const { return Logger(sink_, name_ + "." + std::string(suffix)); }
  bool enabled(LogLevel l) const { return l >= sink_->level; }

  template <typename... A>
  void log(LogLevel l, fmt::format_string<A...> f, A&&... a) const {
    if (enabled(l)) sink_->write(l, name_, fmt::format(f, std::forward<A>(a)...));
  }
  template <typename... A>
  void debug(fmt::format_string<A...> f, A&&... a) const { log(LogLevel::Debug, f, std::forward<A>(a)...); }
  template <typename... A>
  void info(fmt::format_string<A...> f, A&&... a) const { log(LogLevel::Info, f, std::forward<A>(a)...); }
  template <typename... A>
  void warn(fmt::format_string<A...> f, A&&... a) const { log(LogLevel::Warn, f, std::forward<A>(a)...); }
  template <typename... A>
  void error(fmt::format_string<A...> f, A&&... a) const { log(LogLevel::Error, f, std::forward<A>(a)...); }

 private:
  std::shared_ptr<LogSink> sink_;
  std::string name_;
};

}  // namespace mqnode::core
