#include "lb/pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace mqnode::lb {

Pipe::~Pipe() {
  if (rd >= 0) ::close(rd);
  if (wr >= 0) ::close(wr);
}

std::unique_ptr<Pipe> PipePool::get() {
  if (!free_.empty()) {
    auto p = std::move(free_.back());
    free_.pop_back();
    ++in_use_;
    return p;
  }
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return nullptr;
  auto p = std::make_unique<Pipe>();
  p->rd = fds[0];
  p->wr = fds[1];
  if (int sz = ::fcntl(p->rd, F_GETPIPE_SZ); sz > 0) capacity_ = static_cast<std::size_t>(sz);
  ++in_use_;
  return p;
}

void PipePool::put(std::unique_ptr<Pipe> p, bool empty) {
  if (!p) return;
  --in_use_;
  if (empty && free_.size() < keep_) free_.push_back(std::move(p));
}

namespace {
std::size_t result(ssize_t n, asio::error_code& ec) {
  if (n >= 0) {
    ec = {};
    return static_cast<std::size_t>(n);
  }
  ec = (errno == EAGAIN || errno == EWOULDBLOCK) ? asio::error_code(asio::error::would_block)
                                                 : asio::error_code(errno, asio::error::get_system_category());
  return 0;
}
}  // namespace

std::size_t splice_in(int fd, Pipe& p, std::size_t max, asio::error_code& ec) {
  // SPLICE_F_MOVE: move pages instead of copying where the kernel can; NONBLOCK: the
  // socket is non-blocking already, this makes the pipe side so too.
  return result(::splice(fd, nullptr, p.wr, nullptr, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK), ec);
}

std::size_t splice_out(Pipe& p, int fd, std::size_t n, asio::error_code& ec) {
  return result(::splice(p.rd, nullptr, fd, nullptr, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK), ec);
}

}  // namespace mqnode::lb
