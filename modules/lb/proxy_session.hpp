// One proxied TCP connection: pick a server (retries, redispatch), connect with a
// deadline, then two byte pumps (client→server, server→client) until both directions
// have ended. Half-close is forwarded (EOF on one side → shutdown(send) on the other).
// Each pump holds at most one buffer, taken from a pool only while data is moving and
// written out before the next read, so an idle session costs no buffer and a slow reader
// stops the other side through TCP back-pressure instead of growing memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

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
  ProxySession(LbModule& lb, Frontend& fe, asio::ip::tcp::socket client, uint64_t id);

  void start();
  // Ends the session now (both sockets closed). <code> is HAProxy's two-letter
  // termination state for the log ("KD" killed by an operator/stop, "DD" server marked
  // down with shutdown-sessions). Idempotent.
  void kill(const char* code);

  uint64_t id() const { return id_; }
  Server* server() const { return server_; }
  void dump(nlohmann::json& out) const;

 private:
  asio::awaitable<void> run();
  asio::awaitable<bool> connect();
  asio::awaitable<void> pump(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to, bool from_client);
  asio::awaitable<void> watchdog();
  Clock::time_point deadline() const;
  void close_sockets();
  void finish();

  LbModule& lb_;
  Frontend& fe_;
  asio::ip::tcp::socket client_, upstream_;
  asio::steady_timer timer_;
  uint64_t id_;
  Server* server_ = nullptr;
  std::string peer_;
  asio::ip::address peer_addr_;
  Clock::time_point started_, last_activity_, connect_deadline_;
  Millis idle_{0};
  enum class Phase { Connect, Data, Done } phase_ = Phase::Connect;
  bool connect_timed_out_ = false;
  bool closed_ = false;
  bool ended_ = false;
  const char* term_ = "--";  // HAProxy termination state
  uint64_t bytes_in_ = 0, bytes_out_ = 0;  // from the client / to the client
  int retries_ = 0;
};

using ProxySessionPtr = std::shared_ptr<ProxySession>;

}  // namespace mqnode::lb
