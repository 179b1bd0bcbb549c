#include "core/accept.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <asio/error.hpp>

namespace mqnode::core {

FdReserve::FdReserve() : fd_(::open("/dev/null", O_RDONLY | O_CLOEXEC)) {}

FdReserve::~FdReserve() {
  if (fd_ >= 0) ::close(fd_);
}

bool FdReserve::exhausted(const std::error_code& error) {
  // By value, not through the category's virtual equivalent(): UBSan's vptr check itself
  // needs a descriptor (a pipe) to vet an object it has not seen yet, and has none left here.
  // Asio reports errno values in its own system category.
  const auto& cat = error.category();
  return (&cat == &asio::error::get_system_category() || &cat == &std::system_category()) &&
         (error.value() == EMFILE || error.value() == ENFILE);
}

bool FdReserve::refuse(int listen_fd) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (c >= 0) ::close(c);
  fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return c >= 0 && fd_ >= 0;
}

}  // namespace mqnode::core
