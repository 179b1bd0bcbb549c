// One process per data dir: an exclusive flock(2) on <data_dir>/mqnode.lock, held for the
// life of the process, with the holder's pid written in the file. app/ takes it before
// anything opens, creates or cleans up a file in the dir (the store drops the previous
// run's paged-out rows at open, the control socket replaces a stale file): a second node
// started on a live node's dir must be refused before it touches any of them.
#pragma once

#include <sys/types.h>

#include <stdexcept>
#include <string>

namespace mqnode::store {

// Another process holds the lock. <holder> is its pid, 0 when the file did not name one.
struct DataDirBusy : std::runtime_error {
  DataDirBusy(const std::string& what, pid_t holder) : std::runtime_error(what), holder(holder) {}
  pid_t holder;
};

class DataDirLock {
 public:
  static constexpr const char* kFileName = "mqnode.lock";

  // Locks <data_dir> (which must exist) without waiting. Throws DataDirBusy naming the dir
  // and the holder's pid when another process holds it, std::runtime_error when the lock
  // file cannot be opened or written.
  explicit DataDirLock(const std::string& data_dir);
  // Releases the lock (closing the file releases it). The file stays: removing it would
  // let a process that opened it just before lock a file nobody else sees any more.
  ~DataDirLock();
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace mqnode::store
