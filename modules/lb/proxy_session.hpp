// One proxied TCP connection: pick a server (retries, redispatch; waiting in the
// backend's queue while every server is at its maxconn), connect with a deadline, then two
// byte pumps (client→server, server→client) until both directions have ended. Half-close
// is forwarded (EOF on one side → shutdown(send) on the other). Each pump holds at most
// one buffer or one pipe (splice(2), see lb/pipe.hpp), taken from a pool only while data
// is moving and emptied before the next read, so an idle session costs neither and a slow
// reader stops the other side through TCP back-pressure instead of growing memory.
// Idle sessions are kept small: the connect phase is a coroutine that ends once
// connected; the pumps are plain completion handlers (one pending wait_read per
// direction while idle), and timeouts come from the module's deadline heap
// (LbModule::schedule), not a timer per session.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "lb/backend.hpp"
#include "lb/config.hpp"
#include "lb/pipe.hpp"
#include "lb/server.hpp"

namespace mqnode::lb {

class Frontend;
class LbModule;

// Fixed-size buffers reused across sessions; keeps at most <keep> free ones.
class BufferPool {
 public:
  explicit BufferPool(std::size_t size, std::size_t keep = 256) : size_(size), keep_(keep) {}
  std::size_t size() const { return size_; }
  std::unique_ptr<char[]> get();
  void put(std::unique_ptr<char[]> b);
  std::size_t in_use() const { return in_use_; }

 private:
  std::size_t size_, keep_;
  std::vector<std::unique_ptr<char[]>> free_;
  std::size_t in_use_ = 0;
};

class ProxySession : public std::enable_shared_from_this<ProxySession> {
 public:
  // Keeps the module's current config, <fe> and its current backend for its whole life:
  // a reload changes what new sessions get, never a running one.
  ProxySession(LbModule& lb, std::shared_ptr<Frontend> fe, asio::ip::tcp::socket client, uint64_t id);

  void start();
  // Ends the session now (both sockets closed). <code> is HAProxy's two-letter
  // termination state for the log ("KD" killed by an operator/stop, "DD" server marked
  // down with shutdown-sessions). Idempotent.
  void kill(const char* code);

  // Called by the module's deadline sweep for an entry of this session that came due:
  // acts on a timeout, or schedules the session's current deadline again.
  void check_deadline(Clock::time_point now);
  // The time of this session's one valid heap entry; other entries for it are stale.
  Clock::time_point next_check() const { return next_check_; }

  uint64_t id() const { return id_; }
  Server* server() const { return server_.get(); }
  void dump(nlohmann::json& out) const;

 private:
  asio::awaitable<void> run();
  asio::awaitable<bool> connect();
  // Every server in rotation is full: waits in the backend's queue for a slot, at most
  // timeout_queue. Returns the granted server (its slot counted), or nullptr on timeout
  // (counted, term "sQ") or kill.
  asio::awaitable<Server*> wait_in_queue(const PickContext& ctx);
  void leave_queue();
  // One direction of the data phase: wait readable → read → write → again. The read and
  // write go through a pipe (splice) or a buffer, chosen per read by use_splice().
  void pump_wait(bool from_client);
  void pump_read(bool from_client, asio::error_code ec);
  void pump_written(bool from_client, std::size_t n, const asio::error_code& ec);
  bool use_splice(bool from_client) const;
  // Splices what the pipe holds out to the other side; waits for writability if needed.
  void pump_flush(bool from_client);
  void count(bool from_client, std::size_t n);
  void pump_eof(bool from_client);
  void pump_end(bool from_client, const asio::error_code& ec);
  Clock::time_point deadline() const;
  void schedule(Clock::time_point at);
  void close_sockets();
  void finish();

  LbModule& lb_;
  std::shared_ptr<const LbConfig> cfg_;
  std::shared_ptr<Frontend> fe_;
  std::shared_ptr<Backend> be_;
  const BackendConfig* bc_;
  asio::ip::tcp::socket client_, upstream_;
  // Per direction, [0] client→server, [1] server→client; held only while data moves.
  std::unique_ptr<char[]> bufs_[2];
  std::unique_ptr<Pipe> pipes_[2];
  uint32_t in_pipe_[2] = {0, 0};    // bytes spliced in, not yet out
  bool pipe_full_[2] = {false, false};  // the last splice in filled the pipe: more is waiting
  // SpliceMode::Auto: kFullReadsToSplice reads in a row filled the buffer; splice until idle
  // or until a splice moves less than a buffer.
  bool streaming_[2] = {false, false};
  uint8_t full_reads_[2] = {0, 0};
  // While waiting in the backend's queue (Phase::Queue) only.
  std::unique_ptr<asio::steady_timer> queue_timer_;
  Backend::QueuePos queue_pos_{};
  bool queued_ = false;
  uint64_t id_;
  std::shared_ptr<Server> server_;
  std::string peer_;
  asio::ip::address peer_addr_;
  Clock::time_point started_, last_activity_, connect_deadline_, next_check_{};
  Millis idle_{0};
  enum class Phase { Connect, Queue, Data, Done } phase_ = Phase::Connect;
  bool connect_timed_out_ = false;
  uint8_t pumps_ = 0;  // directions still running
  bool closed_ = false;
  bool ended_ = false;
  const char* term_ = "--";  // HAProxy termination state
  uint64_t bytes_in_ = 0, bytes_out_ = 0;  // from the client / to the client
  int retries_ = 0;
};

using ProxySessionPtr = std::shared_ptr<ProxySession>;

}  // namespace mqnode::lb
