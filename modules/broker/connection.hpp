// One client's AMQP connection: the handshake state machine (spec §4.2.2–4.2.4 and
// RabbitMQ's connection.start properties), frame reading, the single place where channel
// and connection exceptions become channel.close / connection.close, heartbeats, the
// output buffer that only the writer coroutine writes to the socket, and the end of a
// connection with a FIN, never a reset (see finish_close()).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "amqp/frame.hpp"
#include "amqp/methods.hpp"
#include "amqp/reply_code.hpp"
#include "broker/channel_host.hpp"
#include "broker/heartbeat.hpp"
#include "core/log.hpp"
#include "core/tls.hpp"

namespace mqnode::broker {

class Broker;
class Channel;
class Vhost;

class Connection final : public ChannelHost, public std::enable_shared_from_this<Connection> {
 public:
  // <tls>: the listener's TLS context (AMQPS), or nullptr for plain AMQP.
  Connection(Broker& broker, asio::ip::tcp::socket socket, uint64_t id, const core::tls::TlsContext* tls = nullptr);
  ~Connection() override;

  void start();
  // Closes the socket at once and releases everything (idempotent).
  void stop();
  // Server-initiated close (e.g. 320 CONNECTION_FORCED at shutdown): sends connection.close,
  // waits briefly for close-ok, then ends as finish_close() does.
  void close(amqp::ConnectionReplyCode code, const std::string& text);

  uint64_t id() const override { return id_; }
  bool open() const { return state_ == State::Open; }
  bool closed() const { return state_ == State::Closed; }
  Broker& broker() override { return broker_; }
  Vhost& vhost() override { return *vhost_; }
  const std::string& vhost_name() const { return vhost_name_; }
  // The vhost was deleted: channels are released and the vhost forgotten before it goes;
  // the caller closes the connection.
  void vhost_deleted();
  const std::string& user() const override { return user_; }
  const ClientCapabilities& capabilities() const override { return caps_; }
  uint32_t frame_max() const override { return frame_max_; }
  const core::Logger& log() const { return log_; }
  bool tls() const { return stream_.is_tls(); }

  // ChannelHost: the output buffer only the writer coroutine writes to the socket.
  std::vector<uint8_t>& out() override { return out_; }
  void flush() override;
  bool output_congested() override;

  // Runs <f> for <channel> and turns the channel and connection exceptions it throws into
  // channel.close / connection.close: the one place that does, for frames and for work
  // that completes later (a proposal's outcome, a store failure).
  template <class F>
  void guarded(uint16_t channel, F&& f) {
    try {
      f();
    } catch (const amqp::ChannelError& e) {
      close_channel_after_error(channel, e);
    } catch (const amqp::ConnectionError& e) {
      fail(e);
    }
  }
  void run_guarded(uint16_t channel, const std::function<void()>& f) override { guarded(channel, f); }
  // The frames that arrived for <channel> while it waited are handled now, in order, until
  // it waits again.
  void resume_channel(uint16_t channel) override;

  // A message was published on this connection: it is a publisher from now on, and is
  // blocked at once if a resource alarm is up.
  void note_publish() override;
  // The broker's resource alarm changed: block or unblock this connection if it publishes.
  void alarm_changed();
  // The store caught up: a publisher paused by back-pressure reads again.
  void resume_reading();

  // Deliveries awaiting acknowledgement on all of its channels (management, metrics).
  uint64_t messages_unacked() const;

  void own_exclusive_queue(const std::string& name) override { exclusive_queues_.push_back(name); }

  // Read-only views for the management API: the peer as "address:port", this end's
  // address (unspecified once closed), the client's connection_name (else its product),
  // what was negotiated, and the open channels.
  const std::string& peer() const { return peer_; }
  asio::ip::tcp::endpoint local_endpoint() const {
    asio::error_code ec;
    auto ep = socket_.local_endpoint(ec);
    return ec ? asio::ip::tcp::endpoint{} : ep;
  }
  const std::string& client_name() const { return client_name_; }
  uint16_t heartbeat_s() const { return heartbeat_s_; }
  uint16_t channel_max() const { return channel_max_; }
  const std::map<uint16_t, std::unique_ptr<Channel>>& channels() const { return channels_; }
  // Bytes read from and written to the socket (RabbitMQ's recv_oct / send_oct).
  uint64_t recv_oct() const { return recv_oct_; }
  uint64_t send_oct() const { return send_oct_; }

 private:
  // Closing: we sent connection.close and wait for close-ok. Draining: the close is
  // settled (close-ok sent or received, or a bad protocol header answered); see
  // finish_close().
  enum class State { Header, StartOk, TuneOk, OpenWait, Open, Closing, Draining, Closed };

  asio::awaitable<void> reader();
  // The TLS handshake (AMQPS); false when it failed and the connection stopped.
  asio::awaitable<bool> tls_handshake();
  asio::awaitable<void> writer();
  asio::awaitable<void> heartbeat();
  asio::awaitable<void> handshake_deadline();
  // ConnectionError 530 when the user's max-channels limit is reached.
  void check_user_channel_limit() const;

  // Returns bytes consumed from <in>; throws ConnectionError/ChannelError.
  void handle_frame(const amqp::FrameView& f);
  void handle_handshake(amqp::Method& m);
  void handle_channel0(amqp::Method& m);
  void on_start_ok(const amqp::ConnectionStartOk& m);
  void on_tune_ok(const amqp::ConnectionTuneOk& m);
  void on_open(const amqp::ConnectionOpen& m);
  // The one place a connection exception ends the connection (close frame or silent).
  void fail(const amqp::ConnectionError& e);
  void send_close(uint16_t code, const std::string& text, uint16_t cls, uint16_t meth);
  // Ends the connection with a FIN: releases its channels and queues, sends what is queued
  // and shuts the socket down for sending, then reads and discards until the peer closes
  // (or kDrainTimeout), and only then closes. A socket closed with unread input makes the
  // kernel send a reset, and a client still flushing publishes behind its own
  // connection.close (amqplib writes the close ahead of them) would see EPIPE instead of
  // its close-ok; RabbitMQ's reader keeps reading in its closing state too.
  void finish_close();
  // After finish_close(): stops once the output is shut down and the peer has closed.
  void stop_when_drained();
  // Calls stop() after <delay> unless stop() comes first or a later stop_after() replaces
  // this one (the closing phases each bound their wait: handshake refusal, close-ok, drain).
  void stop_after(std::chrono::steady_clock::duration delay);
  std::string frame_error_text(amqp::DecodeStatus st) const;
  void close_channel_after_error(uint16_t channel, const amqp::ChannelError& e);
  void release();
  void resume_deliveries();

  Broker& broker_;
  core::tls::Stream<asio::ip::tcp::socket> stream_;
  asio::ip::tcp::socket& socket_;  // stream_'s TCP socket
  // EXTERNAL is offered (rabbitmq_auth_mechanism_ssl): a TLS listener with verify_peer and
  // a client certificate that verified; <cert_user_> is its CN.
  bool verify_peer_ = false;
  std::optional<std::string> cert_user_;
  uint64_t recv_oct_ = 0;
  uint64_t send_oct_ = 0;
  uint64_t id_;
  core::Logger log_;
  std::string peer_;
  bool peer_loopback_ = false;
  State state_ = State::Header;

  std::vector<uint8_t> in_;
  std::size_t in_start_ = 0, in_end_ = 0;
  std::vector<uint8_t> out_, writing_;
  asio::steady_timer wake_;
  bool writer_waiting_ = false;
  bool output_shut_ = false;  // Draining: everything sent and the socket shut down for sending
  bool input_ended_ = false;  // Draining: the peer closed its side
  bool delivery_waiting_ = false;
  asio::steady_timer heartbeat_timer_;
  asio::steady_timer handshake_timer_;
  asio::steady_timer close_timer_;
  HeartbeatMonitor heartbeats_;

  // Resource alarms (RabbitMQ's connection.blocked): a blocked publisher is not read from.
  bool publisher_ = false;
  bool blocked_ = false;      // by a resource alarm (connection.blocked sent)
  bool flow_paused_ = false;  // by store back-pressure (silent, RabbitMQ's "flow" state)
  asio::steady_timer unblock_timer_;

  ClientCapabilities caps_;
  std::string user_;
  std::string client_name_;  // client-properties "connection_name" / product, for logs
  Vhost* vhost_ = nullptr;
  std::string vhost_name_;
  uint16_t channel_max_ = 0;
  uint32_t frame_max_ = 0;
  uint16_t heartbeat_s_ = 0;
  std::map<uint16_t, std::unique_ptr<Channel>> channels_;
  std::vector<std::string> exclusive_queues_;
};

using ConnectionPtr = std::shared_ptr<Connection>;

}  // namespace mqnode::broker
