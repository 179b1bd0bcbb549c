// Pipes for splice(2): a byte pump moves data socket → pipe → socket inside the kernel,
// without copying it through user space (HAProxy's splicing). A pump takes a pipe only
// while data moves and gives it back empty, so an idle session holds none; the pool keeps
// a few empty ones so a burst costs no pipe2()/close() (HAProxy's pipe pool).
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include <asio/error.hpp>

namespace mqnode::lb {

struct Pipe {
  int rd = -1, wr = -1;
  Pipe() = default;
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  ~Pipe();
};

class PipePool {
 public:
  explicit PipePool(std::size_t keep = 64) : keep_(keep) {}
  // An empty pipe, or nullptr when none can be made (out of fds, no pipe memory): the
  // caller falls back to its user-space buffer for this transfer.
  std::unique_ptr<Pipe> get();
  // Gives <p> back; only an <empty> pipe (everything spliced out) is kept for reuse, one
  // that may hold data is closed.
  void put(std::unique_ptr<Pipe> p, bool empty = true);
  // Bytes a pipe holds (F_GETPIPE_SZ of the first one made; the kernel's default, 64 KiB).
  std::size_t capacity() const { return capacity_; }
  std::size_t in_use() const { return in_use_; }

 private:
  std::size_t keep_;
  std::size_t capacity_ = 65536;
  std::size_t in_use_ = 0;
  std::vector<std::unique_ptr<Pipe>> free_;
};

// splice(2) from socket <fd> into <p>, at most <max> bytes, without blocking. Returns the
// bytes moved; 0 with no error is EOF; asio::error::would_block when nothing is readable.
std::size_t splice_in(int fd, Pipe& p, std::size_t max, asio::error_code& ec);
// splice(2) up to <n> bytes from <p> into socket <fd>, without blocking; would_block when
// the socket's send buffer is full.
std::size_t splice_out(Pipe& p, int fd, std::size_t n, asio::error_code& ec);

}  // namespace mqnode::lb
