#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <doctest/doctest.h>

#include "lb/pipe.hpp"

using namespace mqnode::lb;

namespace {
// A connected, non-blocking pair of stream sockets (closed at scope exit).
struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd) == 0); }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
};

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}
}  // namespace

TEST_CASE("splice_in / splice_out move bytes socket → pipe → socket, say EOF and would_block") {
  SocketPair in, out;
  PipePool pool(1);
  auto p = pool.get();
  REQUIRE(p);
  CHECK(pool.capacity() >= 4096);
  asio::error_code ec;
  CHECK(splice_in(in.fd[1], *p, pool.capacity(), ec) == 0);
  CHECK(ec == asio::error::would_block);  // nothing sent yet: not EOF

  const std::string msg = "basic.publish through a pipe";
  REQUIRE(::write(in.fd[0], msg.data(), msg.size()) == static_cast<ssize_t>(msg.size()));
  std::size_t n = splice_in(in.fd[1], *p, pool.capacity(), ec);
  CHECK_FALSE(ec);
  CHECK(n == msg.size());
  CHECK(splice_out(*p, out.fd[0], n, ec) == n);
  CHECK_FALSE(ec);
  CHECK(read_all(out.fd[1]) == msg);

  ::shutdown(in.fd[0], SHUT_WR);
  CHECK(splice_in(in.fd[1], *p, pool.capacity(), ec) == 0);
  CHECK_FALSE(ec);  // 0 without an error: EOF
  CHECK(pool.in_use() == 1);
  pool.put(std::move(p));
  CHECK(pool.in_use() == 0);
}

TEST_CASE("pipe pool: empty pipes are reused, one that may hold data is not") {
  PipePool pool(1);
  auto a = pool.get();
  Pipe* first = a.get();
  pool.put(std::move(a));
  auto b = pool.get();
  CHECK(b.get() == first);  // reused, no new pipe2()
  SocketPair s;
  REQUIRE(::write(s.fd[0], "x", 1) == 1);
  asio::error_code ec;
  REQUIRE(splice_in(s.fd[1], *b, pool.capacity(), ec) == 1);
  pool.put(std::move(b), /*empty=*/false);
  auto c = pool.get();
  CHECK(c.get() != nullptr);
  SocketPair t;
  CHECK(splice_out(*c, t.fd[0], 1, ec) == 0);  // a fresh pipe: nothing of the old byte in it
  CHECK(ec == asio::error::would_block);
  pool.put(std::move(c));
}
