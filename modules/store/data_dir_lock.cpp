#include "store/data_dir_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

namespace mqnode::store {

namespace {

// The pid the holder wrote, 0 if none. A holder writes it just after it locks, so an empty
// file is read again a few times before giving up.
pid_t read_holder(int fd) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) {
      long pid = std::strtol(buf, nullptr, 10);
      if (pid > 0) return static_cast<pid_t>(pid);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return 0;
}

}  // namespace

DataDirLock::DataDirLock(const std::string& data_dir)
    : path_((std::filesystem::path(data_dir) / kFileName).string()) {
  // O_CLOEXEC: a child (a track script) must not inherit the lock and keep it after we exit.
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error(fmt::format("cannot open the data dir's lock file {}: {}", path_, std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    pid_t holder = err == EWOULDBLOCK ? read_holder(fd_) : 0;
    ::close(fd_);
    if (err != EWOULDBLOCK)
      throw std::runtime_error(fmt::format("cannot lock {}: {}", path_, std::strerror(err)));
    throw DataDirBusy(fmt::format("the data dir {} is in use by another process ({} holds {}); stop it, or give "
                                  "this node its own data dir (--data-dir or /node/data_dir)",
                                  data_dir, holder ? fmt::format("pid {}", holder) : "a process that wrote no pid",
                                  path_),
                      holder);
  }
  std::string pid = fmt::format("{}\n", ::getpid());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    int err = errno;
    ::close(fd_);
    throw std::runtime_error(fmt::format("cannot write the lock file {}: {}", path_, std::strerror(err)));
  }
}

DataDirLock::~DataDirLock() {
  ::close(fd_);
}

}  // namespace mqnode::store
