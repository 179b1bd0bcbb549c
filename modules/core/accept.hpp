// What accept loops share: a reserve file descriptor that lets a listener refuse
// connections cleanly once the process is out of descriptors, instead of spinning on
// EMFILE or leaving clients hanging in the backlog.
#pragma once

#include <system_error>

namespace mqnode::core {

// Out of file descriptors (EMFILE/ENFILE), an accept fails while the connection waits in
// the backlog, and the next accept fails at once again: a loop that only retries spins or,
// backing off, leaves clients hanging. One descriptor is held in reserve for that moment:
// refuse() releases it, accepts the waiting connection, closes it (the client sees the
// connection closed, not a hang) and takes the reserve again (nginx's and libev's remedy).
// Loop thread only.
class FdReserve {
 public:
  FdReserve();
  ~FdReserve();
  FdReserve(const FdReserve&) = delete;
  FdReserve& operator=(const FdReserve&) = delete;
  // True when <error> is EMFILE or ENFILE.
  static bool exhausted(const std::error_code& error);
  // Accepts and closes one pending connection on <listen_fd>; false when there was none to
  // take or the reserve could not make room (the caller backs off then).
  bool refuse(int listen_fd);

 private:
  int fd_ = -1;
};

}  // namespace mqnode::core
