// Per-server health checks: `tcp` (the connect succeeds) and `amqp` (send the AMQP 0-9-1
// protocol header, expect a connection.start frame — a broker that accepts TCP but is
// wedged fails it). Intervals follow HAProxy: inter while steady, fastinter while a
// change is pending, downinter while down. Results go to Server::last_check() and the
// owner's callback; the owner applies rise/fall and reacts to transitions.
#pragma once

#include <functional>
#include <memory>
#include <span>

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "lb/config.hpp"
#include "lb/server.hpp"

namespace mqnode::lb {

enum class AmqpReply { NeedMore, Ok, Bad };
// Classifies the first bytes a server sent after our protocol header: a method frame
// (type 1) on channel 0 carrying connection.start (class 10, method 10) and ending in
// 0xCE (AMQP 0-9-1 §4.2.3, §4.2.4). Pure; unit-tested.
AmqpReply classify_amqp_reply(std::span<const uint8_t> in);

class HealthCheck : public std::enable_shared_from_this<HealthCheck> {
 public:
  using OnResult = std::function<void(Server&, bool ok)>;

  // Holds <server> until the check ends (a reload may drop it from its backend meanwhile).
  HealthCheck(asio::io_context& io, std::shared_ptr<Server> server, CheckConfig cfg, OnResult on_result);
  Server& server() { return *server_; }
  void start();
  void stop();  // idempotent; the coroutine ends at its next wake-up

 private:
  asio::awaitable<void> run();
  // One check; fills server_.last_check().
  asio::awaitable<bool> check_once();

  asio::io_context& io_;
  std::shared_ptr<Server> server_;
  CheckConfig cfg_;
  OnResult on_result_;
  asio::steady_timer timer_;
  std::shared_ptr<asio::ip::tcp::socket> sock_;
  bool stopped_ = false;
};

using HealthCheckPtr = std::shared_ptr<HealthCheck>;

}  // namespace mqnode::lb
