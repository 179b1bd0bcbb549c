// Our raft_uv_transport (raft/uv.h): raft never listens on a port or dials one itself. Its
// connections are cluster links that the asio side opened and authenticated (purpose raft,
// link.hpp) and handed across as file descriptors; this side wraps each in a libuv TCP
// handle for raft. listen() only records raft's accept callback, fed by accepted();
// connect() asks the asio side to dial, and connected() brings the answer back.
// Raft thread only, all of it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include <uv.h>

#include "cluster/raft_core.hpp"  // raft.h with C linkage

extern "C" {
#include <raft/uv.h>
}

namespace mqnode::cluster {

class RaftTransport {
 public:
  // Asks the asio side for an authenticated raft link to node <id> at <address>; its
  // answer must come back, on this thread, as connected(<token>, ...).
  using Dial = std::function<void(uint64_t token, uint64_t id, std::string address)>;

  RaftTransport(uv_loop_t* loop, Dial dial);
  RaftTransport(const RaftTransport&) = delete;
  RaftTransport& operator=(const RaftTransport&) = delete;

  // For raft_uv_init().
  raft_uv_transport* get() { return &t_; }

  // A link from node <id> (whose cluster address is <address>), authenticated by the asio
  // side: <fd> goes to raft, or is closed if raft is not listening (yet, or any more).
  void accepted(int fd, uint64_t id, const std::string& address);
  // The answer to dial <token>: a connected, authenticated <fd>, or -1. An answer that
  // comes after close() has its fd closed.
  void connected(uint64_t token, int fd);

 private:
  struct Pending {
    raft_uv_connect* req;
    raft_uv_connect_cb cb;
  };
  static int init(raft_uv_transport* t, raft_id id, const char* address);
  static int listen(raft_uv_transport* t, raft_uv_accept_cb cb);
  static int connect(raft_uv_transport* t, raft_uv_connect* req, raft_id id, const char* address,
                     raft_uv_connect_cb cb);
  static void close(raft_uv_transport* t, raft_uv_transport_close_cb cb);
  // A libuv TCP handle on <fd>, allocated with raft_malloc since raft frees it with
  // raft_free; nullptr (and <fd> closed) if libuv will not take it.
  uv_stream_t* open(int fd);

  raft_uv_transport t_{};  // raft owns t_.data; we use t_.impl
  uv_loop_t* loop_;
  Dial dial_;
  raft_uv_accept_cb accept_cb_ = nullptr;
  bool closing_ = false;
  uint64_t next_token_ = 1;
  std::map<uint64_t, Pending> dialing_;
};

}  // namespace mqnode::cluster
