#include "lb/health_check.hpp"

#include <array>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

namespace mqnode::lb {

namespace {
constexpr std::array<uint8_t, 8> kAmqpHeader = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
// connection.start carries server properties; RabbitMQ's is ~500 bytes. Anything this
// large is not a broker answering a handshake.
constexpr uint32_t kMaxStartFrame = 64 * 1024;
}  // namespace

AmqpReply classify_amqp_reply(std::span<const uint8_t> in) {
  // Frame header: type(1) channel(2) size(4); method payload: class(2) method(2).
  if (in.empty()) return AmqpReply::NeedMore;
  if (in[0] != 1) return AmqpReply::Bad;  // also catches "AMQP..." (protocol mismatch answer)
  if (in.size() >= 3 && (in[1] != 0 || in[2] != 0)) return AmqpReply::Bad;
  if (in.size() < 7) return AmqpReply::NeedMore;
  uint32_t size = static_cast<uint32_t>(in[3]) << 24 | static_cast<uint32_t>(in[4]) << 16 |
                  static_cast<uint32_t>(in[5]) << 8 | in[6];
  if (size < 4 || size > kMaxStartFrame) return AmqpReply::Bad;
  if (in.size() >= 9 && (in[7] != 0 || in[8] != 10)) return AmqpReply::Bad;
  if (in.size() >= 11 && (in[9] != 0 || in[10] != 10)) return AmqpReply::Bad;
  if (in.size() < 7 + size + 1) return AmqpReply::NeedMore;
  return in[7 + size] == 0xCE ? AmqpReply::Ok : AmqpReply::Bad;
}

HealthCheck::HealthCheck(asio::io_context& io, std::shared_ptr<Server> server, CheckConfig cfg, OnResult on_result)
    : io_(io), server_(std::move(server)), cfg_(cfg), on_result_(std::move(on_result)), timer_(io) {}

void HealthCheck::start() {
  auto self = shared_from_this();
  asio::co_spawn(io_, [self] { return self->run(); }, asio::detached);
}

void HealthCheck::stop() {
  stopped_ = true;
  timer_.cancel();
  if (sock_) {
    asio::error_code ec;
    sock_->close(ec);
  }
}

asio::awaitable<void> HealthCheck::run() {
  auto self = shared_from_this();
  asio::error_code ec;
  // Spread the first checks over one interval so N servers are not probed in lockstep.
  auto first = cfg_.inter * (server_->sid() % 8) / 8;
  timer_.expires_after(first);
  co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  while (!stopped_) {
    bool ok = co_await check_once();
    if (stopped_) break;
    on_result_(*server_, ok);
    Millis wait = cfg_.inter;
    if (server_->transitioning()) wait = cfg_.fastinter;
    else if (!server_->up()) wait = cfg_.downinter;
    timer_.expires_after(wait);
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<bool> HealthCheck::check_once() {
  auto started = Clock::now();
  auto sock = std::make_shared<asio::ip::tcp::socket>(io_);
  sock_ = sock;
  // The deadline closes the socket, which ends whichever operation is pending.
  bool timed_out = false;
  asio::steady_timer deadline(io_);
  deadline.expires_after(cfg_.timeout);
  deadline.async_wait([sock, &timed_out](const asio::error_code& e) {
    if (e) return;
    timed_out = true;
    asio::error_code ig;
    sock->close(ig);
  });
  auto& res = server_->last_check();
  auto finish = [&](bool ok, const char* status, std::string desc) {
    deadline.cancel();
    asio::error_code ig;
    sock->close(ig);
    res.ran = true;
    res.status = status;
    res.desc = std::move(desc);
    res.at = Clock::now();
    res.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(res.at - started).count();
    return ok;
  };

  asio::error_code ec;
  co_await sock->async_connect(server_->endpoint(), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    if (timed_out) co_return finish(false, "L4TOUT", "Layer4 timeout");
    co_return finish(false, "L4CON", fmt::format("Layer4 connection problem: {}", ec.message()));
  }
  if (cfg_.type != CheckType::Amqp) co_return finish(true, "L4OK", "Layer4 check passed");

  co_await asio::async_write(*sock, asio::buffer(kAmqpHeader), asio::redirect_error(asio::use_awaitable, ec));
  std::vector<uint8_t> in;
  uint8_t chunk[2048];
  while (!ec) {
    std::size_t n = co_await sock->async_read_some(asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
    in.insert(in.end(), chunk, chunk + n);
    switch (classify_amqp_reply(in)) {
      case AmqpReply::Ok:
        co_return finish(true, "L7OK", "Layer7 check passed: connection.start received");
      case AmqpReply::Bad:
        co_return finish(false, "L7RSP", "Layer7 invalid response: not an AMQP 0-9-1 connection.start");
      case AmqpReply::NeedMore:
        break;
    }
  }
  if (timed_out) co_return finish(false, "L7TOUT", "Layer7 timeout: no connection.start");
  co_return finish(false, "L7RSP", fmt::format("Layer7 invalid response: {}", ec == asio::error::eof ? "connection closed" : ec.message()));
}

}  // namespace mqnode::lb
