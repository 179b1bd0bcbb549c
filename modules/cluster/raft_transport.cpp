#include "cluster/raft_transport.hpp"

#include <unistd.h>

#include <utility>

namespace mqnode::cluster {

namespace {
RaftTransport* self_of(raft_uv_transport* t) { return static_cast<RaftTransport*>(t->impl); }
}  // namespace

RaftTransport::RaftTransport(uv_loop_t* loop, Dial dial) : loop_(loop), dial_(std::move(dial)) {
  t_.impl = this;
  t_.init = init;
  t_.listen = listen;
  t_.connect = connect;
  t_.close = close;
}

int RaftTransport::init(raft_uv_transport*, raft_id, const char*) { return 0; }

int RaftTransport::listen(raft_uv_transport* t, raft_uv_accept_cb cb) {
  self_of(t)->accept_cb_ = cb;
  return 0;
}

int RaftTransport::connect(raft_uv_transport* t, raft_uv_connect* req, raft_id id, const char* address,
                           raft_uv_connect_cb cb) {
  RaftTransport* self = self_of(t);
  if (self->closing_) return RAFT_NOCONNECTION;
  const uint64_t token = self->next_token_++;
  self->dialing_.emplace(token, Pending{req, cb});
  self->dial_(token, id, address);
  return 0;
}

void RaftTransport::close(raft_uv_transport* t, raft_uv_transport_close_cb cb) {
  RaftTransport* self = self_of(t);
  self->closing_ = true;
  self->accept_cb_ = nullptr;
  // raft waits for every connect to be answered before it lets its client go.
  for (auto& [token, p] : std::exchange(self->dialing_, {})) p.cb(p.req, nullptr, RAFT_CANCELED);
  cb(t);
}

uv_stream_t* RaftTransport::open(int fd) {
  auto* tcp = static_cast<uv_tcp_t*>(raft_malloc(sizeof(uv_tcp_t)));
  if (tcp == nullptr) {
    ::close(fd);
    return nullptr;
  }
  uv_tcp_init(loop_, tcp);
  if (uv_tcp_open(tcp, fd) != 0) {
    ::close(fd);
    uv_close(reinterpret_cast<uv_handle_t*>(tcp), [](uv_handle_t* h) { raft_free(h); });
    return nullptr;
  }
  uv_tcp_nodelay(tcp, 1);  // raft's messages are small and latency-bound
  return reinterpret_cast<uv_stream_t*>(tcp);
}

void RaftTransport::accepted(int fd, uint64_t id, const std::string& address) {
  if (closing_ || accept_cb_ == nullptr) {
    ::close(fd);
    return;
  }
  if (uv_stream_t* stream = open(fd)) accept_cb_(&t_, id, address.c_str(), stream);
}

void RaftTransport::connected(uint64_t token, int fd) {
  auto it = dialing_.find(token);
  if (it == dialing_.end()) {
    if (fd >= 0) ::close(fd);
    return;
  }
  const Pending p = it->second;
  dialing_.erase(it);
  uv_stream_t* stream = fd >= 0 ? open(fd) : nullptr;
  p.cb(p.req, stream, stream != nullptr ? 0 : RAFT_NOCONNECTION);
}

}  // namespace mqnode::cluster
