// /node/log_file: the log goes to a file instead of stderr (journald), as RabbitMQ's
// log.file. The file is put in place of descriptor 2, so every writer of stderr (the
// loggers of every thread, a sanitizer report) lands in it; reopen() swaps in a freshly
// opened file with one dup2, atomically for those writers (logrotate's rename, then
// SIGUSR1 or SIGHUP).
#pragma once

#include <string>

namespace mqnode::app {

class LogFile {
 public:
  // Opens <path> for appending (created 0640) and puts it on stderr; throws
  // std::runtime_error naming /node/log_file when it cannot be opened.
  explicit LogFile(std::string path);

  // Opens the path again (a new file after a rotation). On failure the current file stays
  // and the reason is returned; empty on success.
  std::string reopen();

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace mqnode::app
