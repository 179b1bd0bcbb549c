#include "log_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace mqnode::app {

namespace {

// Empty on success, else why <path> could not be put on stderr.
std::string open_onto_stderr(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return std::strerror(errno);
  std::string err;
  if (::dup2(fd, STDERR_FILENO) < 0) err = std::strerror(errno);
  ::close(fd);
  return err;
}

}  // namespace

LogFile::LogFile(std::string path) : path_(std::move(path)) {
  if (auto err = open_onto_stderr(path_); !err.empty())
    throw std::runtime_error(fmt::format("/node/log_file: cannot open {}: {}", path_, err));
}

std::string LogFile::reopen() { return open_onto_stderr(path_); }

}  // namespace mqnode::app
