#include "broker/connection.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include "amqp/codec.hpp"
#include "amqp/properties.hpp"
#include "broker/broker.hpp"
#include "broker/channel.hpp"
#include "broker/vhost.hpp"
#include "core/endpoint.hpp"

namespace mqnode::broker {

using amqp::ChannelError;
using amqp::ConnectionError;
using amqp::ConnectionReplyCode;
using namespace std::chrono_literals;

namespace {
// Read buffers start small (idle connections are the common case) and double while reads
// keep filling them, up to kReadBufferBusy.
constexpr std::size_t kReadBufferIdle = 2048;
constexpr std::size_t kReadBufferBusy = 256 * 1024;
// Deliveries pause while this much output is waiting for the socket.
constexpr std::size_t kOutputHighWater = 1 << 20;
constexpr auto kCloseOkTimeout = 3s;
constexpr auto kSilentCloseDelay = 3s;
// How long a settled close waits for the peer to close its side (finish_close()): long
// enough for a client to flush the publishes it had buffered, short enough for shutdown.
constexpr auto kDrainTimeout = 3s;

// Product and version are what clients key behaviour on: kombu/Celery choose RabbitMQ's
// basic.qos meaning (global=false per consumer) only for product "RabbitMQ" ≥ 3.3, and
// that is the meaning mqnode implements. Platform and information say what this really is.
amqp::FieldTable server_properties(const std::string& node) {
  amqp::FieldTable caps;
  for (const char* c : {"publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
                        "connection.blocked", "authentication_failure_close", "per_consumer_qos", "direct_reply_to",
                        "consumer_priorities"})
    caps.set(c, true);
  amqp::FieldTable p;
  p.set("capabilities", std::move(caps));
  p.set("cluster_name", node);
  p.set("copyright", "Copyright (c) the mqnode authors");
  p.set("information", "mqnode " MQNODE_VERSION ", an AMQP 0-9-1 broker compatible with RabbitMQ 3.10");
  p.set("platform", "mqnode " MQNODE_VERSION " (C++)");
  p.set("product", "RabbitMQ");
  p.set("version", "3.10.0");
  return p;
}

bool table_flag(const amqp::FieldTable& t, std::string_view key) {
  const auto* v = t.find(key);
  auto b = v ? v->as_bool() : std::nullopt;
  return b && *b;
}

std::string table_string(const amqp::FieldTable& t, std::string_view key) {
  const auto* v = t.find(key);
  const auto* s = v ? v->as_string() : nullptr;
  return s ? *s : std::string();
}

template <class M>
const M* as(const amqp::Method& m) {
  return std::get_if<M>(&m);
}

std::string frame_text(const amqp::FrameView& f) {
  return amqp::describe_frame(static_cast<uint8_t>(f.type), f.payload);
}

// As RabbitMQ's framing decoder: a frame too short for its ids is an unknown frame,
// arguments that do not decode are a 501 FRAME_ERROR naming the method, an unknown
// class/method is 540 NOT_IMPLEMENTED.
amqp::Method decode_method_frame(const amqp::FrameView& f) {
  if (f.payload.size() < 4)
    throw ConnectionError(ConnectionReplyCode::FrameError, frame_text(f) + ": unknown_frame");
  try {
    return amqp::decode_method(f.payload);
  } catch (const amqp::UnknownMethod& e) {
    throw ConnectionError(ConnectionReplyCode::NotImplemented,
                          fmt::format("unknown method class={} method={}", e.class_id, e.method_id), e.class_id,
                          e.method_id);
  } catch (const amqp::DecodeError&) {
    auto cls = static_cast<uint16_t>(f.payload[0] << 8 | f.payload[1]);
    auto meth = static_cast<uint16_t>(f.payload[2] << 8 | f.payload[3]);
    throw ConnectionError(ConnectionReplyCode::FrameError,
                          "cannot decode " + amqp::erlang_binary(f.payload.subspan(4)), cls, meth);
  }
}

std::pair<uint16_t, uint16_t> method_ids(const amqp::Method& m) {
  return std::visit([](const auto& x) { using M = std::decay_t<decltype(x)>; return std::pair{M::kClassId, M::kMethodId}; }, m);
}

std::string_view method_name(const amqp::Method& m) {
  return std::visit([](const auto& x) { return std::decay_t<decltype(x)>::kName; }, m);
}
}  // namespace

Connection::Connection(Broker& broker, asio::ip::tcp::socket socket, uint64_t id, const core::tls::TlsContext* tls)
    : broker_(broker),
      stream_(tls ? core::tls::Stream<asio::ip::tcp::socket>(std::move(socket), tls->context())
                  : core::tls::Stream<asio::ip::tcp::socket>(std::move(socket))),
      socket_(stream_.socket()),
      verify_peer_(tls && tls->options().verify_peer),
      id_(id),
      log_(broker.log().child("connection")),
      wake_(socket_.get_executor()),
      heartbeat_timer_(socket_.get_executor()),
      handshake_timer_(socket_.get_executor()),
      close_timer_(socket_.get_executor()),
      unblock_timer_(socket_.get_executor()),
      frame_max_(broker.config().frame_max) {
  asio::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (!ec) {
    auto addr = ep.address();
    peer_loopback_ = core::is_loopback(addr);
    peer_ = fmt::format("{}:{}", addr.to_string(), ep.port());
  }
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

Connection::~Connection() = default;

uint64_t Connection::messages_unacked() const {
  uint64_t n = 0;
  for (const auto& [id, ch] : channels_) n += ch->unacked_count();
  return n;
}

void Connection::start() {
  auto self = shared_from_this();
  log_.debug("accepted conn={} peer={}", id_, peer_);
  asio::co_spawn(socket_.get_executor(), [self] { return self->reader(); }, asio::detached);
  asio::co_spawn(socket_.get_executor(), [self] { return self->writer(); }, asio::detached);
  asio::co_spawn(socket_.get_executor(), [self] { return self->handshake_deadline(); }, asio::detached);
}

void Connection::flush() {
  heartbeats_.sent();
  if (writer_waiting_) {
    writer_waiting_ = false;
    wake_.cancel();
  }
}

bool Connection::output_congested() {
  if (out_.size() + writing_.size() < kOutputHighWater) return false;
  delivery_waiting_ = true;
  return true;
}

// ---- reading -------------------------------------------------------------------------

asio::awaitable<bool> Connection::tls_handshake() {
  asio::error_code ec;
  co_await stream_.handshake(ec);
  if (state_ == State::Closed) co_return false;  // the handshake timeout stopped it
  if (ec) {
    ++broker_.stats().connections_refused;
    log_.info("TLS handshake failed conn={} peer={} error=\"{}\"", id_, peer_, ec.message());
    stop();
    co_return false;
  }
  if (verify_peer_) cert_user_ = core::tls::peer_common_name(stream_.native());
  log_.debug("TLS established conn={} peer={} session=\"{}\" cert_cn=\"{}\"", id_, peer_,
             core::tls::describe_session(stream_.native()), cert_user_.value_or(""));
  co_return true;
}

asio::awaitable<void> Connection::reader() {
  auto self = shared_from_this();
  asio::error_code ec;
  if (stream_.is_tls() && !co_await tls_handshake()) co_return;
  in_.resize(kReadBufferIdle);
  try {
    for (;;) {
      if (in_start_ > 0 && in_.size() - in_end_ < in_.size() / 4) {
        std::copy(in_.begin() + static_cast<std::ptrdiff_t>(in_start_), in_.begin() + static_cast<std::ptrdiff_t>(in_end_),
                  in_.begin());
        in_end_ -= in_start_;
        in_start_ = 0;
      }
      // A publisher blocked by a resource alarm is not read from until the alarm clears;
      // one that publishes faster than the store writes waits until the disk catches up.
      while (state_ == State::Open && (blocked_ || (flow_paused_ = publisher_ && broker_.store_flow()))) {
        unblock_timer_.expires_at(asio::steady_timer::time_point::max());
        co_await unblock_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      flow_paused_ = false;
      // Room for at least a quarter buffer, and for a whole frame once its header is in.
      if (in_.size() - in_end_ < in_.size() / 4) in_.resize(in_.size() * 2);
      std::size_t n = co_await stream_.read_some(asio::buffer(in_.data() + in_end_, in_.size() - in_end_), ec);
      if (ec || state_ == State::Closed) break;
      recv_oct_ += n;
      heartbeats_.received();
      if (state_ == State::Draining) continue;  // the close is settled: input is only discarded
      if (in_end_ + n == in_.size() && in_.size() < kReadBufferBusy) in_.resize(in_.size() * 2);
      in_end_ += n;

      if (state_ == State::Header) {
        if (in_end_ - in_start_ < amqp::kProtocolHeader.size()) continue;
        auto st = amqp::check_protocol_header({in_.data() + in_start_, in_end_ - in_start_});
        if (st != amqp::HeaderStatus::Ok) {
          // Spec §4.2.2: answer with the header we do speak, then close.
          log_.info("bad protocol header conn={} peer={}", id_, peer_);
          out_.insert(out_.end(), amqp::kProtocolHeader.begin(), amqp::kProtocolHeader.end());
          finish_close();
          in_start_ = in_end_ = 0;
          continue;
        }
        in_start_ += amqp::kProtocolHeader.size();
        amqp::ConnectionStart start;
        start.server_properties = server_properties(broker_.config().node_name);
        // EXTERNAL only where a verified client certificate names the user (as
        // rabbitmq_auth_mechanism_ssl offers it).
        start.mechanisms = cert_user_ ? "PLAIN AMQPLAIN EXTERNAL" : "PLAIN AMQPLAIN";
        start.locales = "en_US";
        amqp::append_method_frame(out_, 0, start);
        flush();
        state_ = State::StartOk;
      }

      while (state_ != State::Closed && state_ != State::Draining && in_end_ > in_start_) {
        amqp::FrameView f;
        std::size_t consumed = 0;
        // RabbitMQ accepts a payload of frame_max octets (8 more than the spec's frame_max total).
        auto st = amqp::decode_frame({in_.data() + in_start_, in_end_ - in_start_},
                                     frame_max_ + amqp::kFrameOverhead, consumed, f);
        if (st == amqp::DecodeStatus::NeedMore) break;
        if (st != amqp::DecodeStatus::Ok) {
          ++broker_.stats().frames_malformed;
          fail(ConnectionError(ConnectionReplyCode::FrameError, frame_error_text(st)));
          in_start_ = in_end_;  // the stream cannot be re-synchronised
          break;
        }
        in_start_ += consumed;
        guarded(f.channel, [&] { handle_frame(f); });
      }
      for (auto& [n, ch] : channels_) ch->flush_confirms();
      if (in_start_ == in_end_ || state_ == State::Draining) in_start_ = in_end_ = 0;
    }
  } catch (const std::exception& e) {
    // Only programming errors land here; keep the node up and drop this client.
    log_.error("internal error conn={} peer={} what=\"{}\"", id_, peer_, e.what());
  }
  input_ended_ = true;
  if (state_ == State::Draining) stop_when_drained();
  else stop();
}

std::string Connection::frame_error_text(amqp::DecodeStatus st) const {
  // What is there of the frame, in RabbitMQ's words.
  std::span<const uint8_t> in(in_.data() + in_start_, in_end_ - in_start_);
  uint8_t type = in.empty() ? 0 : in[0];
  uint32_t size = in.size() >= 7 ? static_cast<uint32_t>(in[3] << 24 | in[4] << 16 | in[5] << 8 | in[6]) : 0;
  auto payload = in.size() >= 7 ? in.subspan(7, std::min<std::size_t>(size, in.size() - 7)) : in.first(0);
  auto head = amqp::describe_frame(type, st == amqp::DecodeStatus::TooLarge ? payload.first(0) : payload);
  switch (st) {
    case amqp::DecodeStatus::BadEnd:
      return fmt::format("{}: {{invalid_frame_end_marker,{}}}", head, in.size() > 7 + size ? in[7 + size] : 0);
    case amqp::DecodeStatus::TooLarge:
      return fmt::format("{}: {{frame_too_large,{},{}}}", head, size, frame_max_ - amqp::kFrameOverhead);
    default:
      return head + ": unknown_frame";
  }
}

void Connection::close_channel_after_error(uint16_t channel, const ChannelError& e) {
  ++broker_.stats().channel_errors;
  log_.info("channel error conn={} ch={} code={} reason=\"{}\"", id_, channel, static_cast<int>(e.code), e.what());
  auto it = channels_.find(channel);
  if (it != channels_.end()) {
    it->second->release();
    it->second->set_closing();
  }
  amqp::ChannelClose close;
  close.reply_code = static_cast<uint16_t>(e.code);
  close.reply_text = fmt::format("{} - {}", amqp::reply_text(e.code), e.what());
  if (close.reply_text.size() > 255) close.reply_text.resize(255);
  close.class_id = e.class_id;
  close.method_id = e.method_id;
  amqp::append_method_frame(out_, channel, close);
  flush();
}

void Connection::handle_frame(const amqp::FrameView& f) {
  if (state_ == State::Closing) {
    // After connection.close only close-ok (or a crossing close) matters (spec §4.2.4).
    if (f.type == amqp::FrameType::Method && f.channel == 0) {
      amqp::Method m;
      try {
        m = amqp::decode_method(f.payload);
      } catch (const amqp::DecodeError&) {
        return;
      }
      if (as<amqp::ConnectionCloseOk>(m)) {
        finish_close();
      } else if (as<amqp::ConnectionClose>(m)) {
        amqp::append_method_frame(out_, 0, amqp::ConnectionCloseOk{});
        finish_close();
      }
    }
    return;
  }
  if (f.type == amqp::FrameType::Heartbeat) {
    if (f.channel != 0) throw ConnectionError(ConnectionReplyCode::UnexpectedFrame, frame_text(f));
    return;
  }
  if (state_ != State::Open) {
    if (f.type != amqp::FrameType::Method || f.channel != 0)
      throw ConnectionError(ConnectionReplyCode::UnexpectedFrame, frame_text(f));
    amqp::Method m = decode_method_frame(f);
    handle_handshake(m);
    return;
  }
  if (f.channel == 0) {
    if (f.type != amqp::FrameType::Method) throw ConnectionError(ConnectionReplyCode::UnexpectedFrame, frame_text(f));
    amqp::Method m = decode_method_frame(f);
    handle_channel0(m);
    return;
  }

  auto it = channels_.find(f.channel);
  Channel* ch = it == channels_.end() ? nullptr : it->second.get();
  if (ch && ch->waiting()) {
    // Per-channel order: nothing overtakes a method whose proposal is outstanding.
    ch->stash(f);
    return;
  }
  if (f.type == amqp::FrameType::Method) {
    amqp::Method m = decode_method_frame(f);
    if (ch && ch->closing()) {
      // We sent channel.close: drop everything but close-ok / close (spec §4.2.4).
      if (as<amqp::ChannelCloseOk>(m)) {
        channels_.erase(it);
      } else if (as<amqp::ChannelClose>(m)) {
        amqp::append_method_frame(out_, f.channel, amqp::ChannelCloseOk{});
        flush();
        channels_.erase(it);
      }
      return;
    }
    if (const auto* open = as<amqp::ChannelOpen>(m)) {
      (void)open;
      if (ch) throw ConnectionError(ConnectionReplyCode::ChannelError, "second 'channel.open' seen", 20, 10);
      // RabbitMQ limits how many channels are open, not their numbers.
      if (channels_.size() >= channel_max_)
        throw ConnectionError(ConnectionReplyCode::NotAllowed,
                              fmt::format("number of channels opened ({}) has reached the negotiated channel_max ({})",
                                          channels_.size(), channel_max_));
      check_user_channel_limit();
      channels_.emplace(f.channel, std::make_unique<Channel>(*this, f.channel));
      amqp::append_method_frame(out_, f.channel, amqp::ChannelOpenOk{});
      flush();
      return;
    }
    if (!ch) {
      auto [cls, meth] = method_ids(m);
      throw ConnectionError(ConnectionReplyCode::ChannelError, "expected 'channel.open'", cls, meth);
    }
    // channel.close in the middle of a content is no exception to the publish state
    // machine: Channel::handle_method answers it with 505 UNEXPECTED_FRAME, as RabbitMQ does.
    if (as<amqp::ChannelClose>(m) && !ch->expecting_content()) {
      ch->release();
      channels_.erase(it);
      amqp::append_method_frame(out_, f.channel, amqp::ChannelCloseOk{});
      flush();
      return;
    }
    if (as<amqp::ChannelCloseOk>(m)) return;  // not expecting one: ignore
    if (auto [cls, meth] = method_ids(m); cls == amqp::ConnectionStart::kClassId)
      throw ConnectionError(ConnectionReplyCode::CommandInvalid, "unimplemented method", cls, meth);
    ch->handle_method(m);
    return;
  }
  // Content frames.
  if (!ch) throw ConnectionError(ConnectionReplyCode::ChannelError, "expected 'channel.open'");
  if (ch->closing()) return;
  if (f.type == amqp::FrameType::Header) {
    amqp::ContentHeader h;
    try {
      h = amqp::decode_content_header(f.payload);
    } catch (const amqp::DecodeError&) {
      throw ConnectionError(ConnectionReplyCode::FrameError, frame_text(f) + ": unknown_frame");
    }
    ch->handle_header(h);
  } else {
    ch->handle_body(f.payload);
  }
}

// ---- handshake (spec §4.2.4, RabbitMQ's rabbit_reader) -------------------------------

void Connection::handle_handshake(amqp::Method& m) {
  if (state_ == State::StartOk) {
    if (const auto* ok = as<amqp::ConnectionStartOk>(m)) return on_start_ok(*ok);
  } else if (state_ == State::TuneOk) {
    if (const auto* ok = as<amqp::ConnectionTuneOk>(m)) return on_tune_ok(*ok);
  } else if (state_ == State::OpenWait) {
    if (const auto* open = as<amqp::ConnectionOpen>(m)) return on_open(*open);
  }
  if (as<amqp::ConnectionClose>(m)) {
    amqp::append_method_frame(out_, 0, amqp::ConnectionCloseOk{});
    finish_close();
    return;
  }
  throw ConnectionError(ConnectionReplyCode::CommandInvalid,
                        fmt::format("unexpected method '{}' during the connection handshake", method_name(m)));
}

void Connection::on_start_ok(const amqp::ConnectionStartOk& m) {
  if (const auto* caps_v = m.client_properties.find("capabilities")) {
    if (const auto* caps = caps_v->as_table()) {
      caps_.consumer_cancel_notify = table_flag(*caps, "consumer_cancel_notify");
      caps_.connection_blocked = table_flag(*caps, "connection.blocked");
      caps_.authentication_failure_close = table_flag(*caps, "authentication_failure_close");
      caps_.basic_nack = table_flag(*caps, "basic.nack");
      caps_.publisher_confirms = table_flag(*caps, "publisher_confirms");
    }
  }
  client_name_ = table_string(m.client_properties, "connection_name");
  if (client_name_.empty()) client_name_ = table_string(m.client_properties, "product");

  std::string login, password;
  if (m.mechanism == "PLAIN") {
    // "authzid\0authcid\0password" (RFC 4616); RabbitMQ ignores authzid.
    auto first = m.response.find('\0');
    auto second = first == std::string::npos ? std::string::npos : m.response.find('\0', first + 1);
    if (second == std::string::npos)
      throw ConnectionError(ConnectionReplyCode::AccessRefused, "ACCESS_REFUSED - malformed PLAIN response");
    login = m.response.substr(first + 1, second - first - 1);
    password = m.response.substr(second + 1);
  } else if (m.mechanism == "AMQPLAIN") {
    // A field table without its length prefix, holding LOGIN and PASSWORD.
    std::vector<uint8_t> framed;
    amqp::Writer w(framed);
    w.u32(static_cast<uint32_t>(m.response.size()));
    w.bytes(m.response);
    amqp::FieldTable t;
    try {
      amqp::Reader r(framed);
      t = r.table();
    } catch (const amqp::DecodeError& e) {
      throw ConnectionError(ConnectionReplyCode::AccessRefused, fmt::format("malformed AMQPLAIN response: {}", e.what()));
    }
    login = table_string(t, "LOGIN");
    password = table_string(t, "PASSWORD");
  } else if (m.mechanism == "EXTERNAL" && cert_user_) {
    // The certificate is the credential: the user must exist, its password is not asked
    // (rabbitmq_auth_mechanism_ssl with ssl_cert_login_from = common_name).
    login = *cert_user_;
  } else {
    throw ConnectionError(ConnectionReplyCode::CommandInvalid,
                          fmt::format("unknown authentication mechanism '{}'", m.mechanism));
  }
  std::string why;
  bool accepted = false;
  if (m.mechanism == "EXTERNAL") {
    const auto* u = broker_.access().find_user(login);
    if (!u) why = fmt::format("user '{}' (the client certificate's CN) does not exist", login);
    else if (u->loopback_only && !peer_loopback_) why = "user can only log in via localhost";
    accepted = why.empty();
  } else {
    accepted = broker_.access().authenticate(login, password, peer_loopback_, why) != nullptr;
  }
  if (!accepted) {
    log_.warn("login refused conn={} peer={} user=\"{}\" mechanism={} reason=\"{}\"", id_, peer_, login, m.mechanism, why);
    ++broker_.stats().connections_refused;
    if (caps_.authentication_failure_close)
      throw ConnectionError(ConnectionReplyCode::AccessRefused,
                            fmt::format("Login was refused using authentication mechanism {}. For details see the "
                                        "broker logfile.",
                                        m.mechanism));
    // Older clients only see the socket close (RabbitMQ does the same).
    stop();
    return;
  }
  user_ = login;
  amqp::ConnectionTune tune;
  tune.channel_max = broker_.config().channel_max;
  tune.frame_max = broker_.config().frame_max;
  tune.heartbeat = broker_.config().heartbeat_s;
  amqp::append_method_frame(out_, 0, tune);
  flush();
  state_ = State::TuneOk;
}

void Connection::on_tune_ok(const amqp::ConnectionTuneOk& m) {
  const auto& cfg = broker_.config();
  if (m.frame_max != 0 && m.frame_max < amqp::kFrameMinSize)
    throw ConnectionError(ConnectionReplyCode::NotAllowed,
                          fmt::format("frame_max={} < {} min size", m.frame_max, amqp::kFrameMinSize), 10, 31);
  if (m.frame_max > cfg.frame_max)
    throw ConnectionError(ConnectionReplyCode::NotAllowed,
                          fmt::format("frame_max={} > {} max size", m.frame_max, cfg.frame_max), 10, 31);
  if (m.channel_max > cfg.channel_max)
    throw ConnectionError(ConnectionReplyCode::NotAllowed,
                          fmt::format("channel_max={} > {} max size", m.channel_max, cfg.channel_max), 10, 31);
  frame_max_ = m.frame_max ? m.frame_max : cfg.frame_max;
  channel_max_ = m.channel_max ? m.channel_max : cfg.channel_max;
  heartbeat_s_ = m.heartbeat;
  state_ = State::OpenWait;
  if (heartbeat_s_) {
    auto self = shared_from_this();
    asio::co_spawn(socket_.get_executor(), [self] { return self->heartbeat(); }, asio::detached);
  }
}

void Connection::on_open(const amqp::ConnectionOpen& m) {
  Vhost* vh = broker_.find_vhost(m.virtual_host);
  if (!vh)
    throw ConnectionError(ConnectionReplyCode::NotAllowed, fmt::format("vhost {} not found", m.virtual_host), 10, 40);
  if (!broker_.access().can_access_vhost(user_, m.virtual_host))
    throw ConnectionError(ConnectionReplyCode::NotAllowed,
                          fmt::format("access to vhost '{}' refused for user '{}'", m.virtual_host, user_), 10, 40);
  const auto& limits = broker_.config().vhost_limits;
  if (auto lim = limits.find(m.virtual_host); lim != limits.end() && lim->second.max_connections >= 0) {
    int64_t n = 0;
    for (const auto& [id, c] : broker_.connections()) n += c->open() && c->vhost_name() == m.virtual_host;
    if (n >= lim->second.max_connections)
      throw ConnectionError(ConnectionReplyCode::NotAllowed,
                            fmt::format("access to vhost '{}' refused for user '{}': connection limit ({}) is reached",
                                        m.virtual_host, user_, lim->second.max_connections),
                            10, 40);
  }
  if (int64_t lim = broker_.catalog().user_limit(user_, "max-connections"); lim >= 0) {
    int64_t n = 0;
    for (const auto& [id, c] : broker_.connections()) n += c->open() && c->user() == user_;
    if (n >= lim)
      throw ConnectionError(ConnectionReplyCode::NotAllowed,
                            fmt::format("connection refused for user '{}': user connection limit ({}) is reached",
                                        user_, lim),
                            10, 40);
  }
  vhost_ = vh;
  vhost_name_ = m.virtual_host;
  state_ = State::Open;
  handshake_timer_.cancel();
  amqp::append_method_frame(out_, 0, amqp::ConnectionOpenOk{});
  flush();
  log_.info("connection opened conn={} peer={} user={} vhost={} client=\"{}\"", id_, peer_, user_, m.virtual_host,
            client_name_);
}

// RabbitMQ's max-channels user limit: the user's channels on this node, all connections.
void Connection::check_user_channel_limit() const {
  int64_t lim = broker_.catalog().user_limit(user_, "max-channels");
  if (lim < 0) return;
  int64_t n = 0;
  for (const auto& [id, c] : broker_.connections())
    if (c->user() == user_) n += static_cast<int64_t>(c->channels().size());
  if (n >= lim)
    throw ConnectionError(
        ConnectionReplyCode::NotAllowed,
        fmt::format("number of channels opened for user '{}' has reached the maximum allowed user limit of ({})", user_, lim));
}

void Connection::handle_channel0(amqp::Method& m) {
  if (as<amqp::ConnectionClose>(m)) {
    log_.info("connection closed by client conn={} peer={} user={}", id_, peer_, user_);
    amqp::append_method_frame(out_, 0, amqp::ConnectionCloseOk{});
    finish_close();
    return;
  }
  if (as<amqp::ConnectionCloseOk>(m) || as<amqp::ConnectionBlocked>(m) || as<amqp::ConnectionUnblocked>(m)) return;
  if (as<amqp::ConnectionUpdateSecret>(m)) {
    // Internal users have no expiring secrets; acknowledge as RabbitMQ does for them.
    amqp::append_method_frame(out_, 0, amqp::ConnectionUpdateSecretOk{});
    flush();
    return;
  }
  auto [cls, meth] = method_ids(m);
  throw ConnectionError(ConnectionReplyCode::ChannelError, "unexpected method in connection state running", cls, meth);
}

// ---- closing -------------------------------------------------------------------------

void Connection::fail(const ConnectionError& e) {
  if (state_ == State::Closing) {
    finish_close();  // a second error while closing: nothing more to say or to wait for
    return;
  }
  if (state_ == State::Draining || state_ == State::Closed) return;
  ++broker_.stats().connection_errors;
  log_.warn("connection error conn={} peer={} user={} code={} reason=\"{}\"", id_, peer_, user_,
            static_cast<int>(e.code), e.what());
  bool handshaking = state_ == State::StartOk || state_ == State::TuneOk;
  bool refused_login = e.code == ConnectionReplyCode::AccessRefused && caps_.authentication_failure_close;
  if (handshaking && !refused_login) {
    // As RabbitMQ: a client that has not finished the handshake is not trusted with an
    // explanation, and waits a little before the socket closes (slows login floods).
    state_ = State::Closing;
    stop_after(kSilentCloseDelay);
    return;
  }
  send_close(static_cast<uint16_t>(e.code), fmt::format("{} - {}", amqp::reply_text(e.code), e.what()), e.class_id,
             e.method_id);
}

void Connection::send_close(uint16_t code, const std::string& text, uint16_t cls, uint16_t meth) {
  if (state_ == State::Closing || state_ == State::Draining || state_ == State::Closed) return;
  release();
  amqp::ConnectionClose close;
  close.reply_code = code;
  close.reply_text = text.size() > 255 ? text.substr(0, 255) : text;
  close.class_id = cls;
  close.method_id = meth;
  amqp::append_method_frame(out_, 0, close);
  flush();
  state_ = State::Closing;
  unblock_timer_.cancel();  // a paused reader must read the close-ok
  stop_after(kCloseOkTimeout);
}

void Connection::close(ConnectionReplyCode code, const std::string& text) {
  if (state_ == State::Closing || state_ == State::Draining || state_ == State::Closed) return;  // ending already
  if (state_ != State::Open) {  // nothing negotiated to close politely
    stop();
    return;
  }
  send_close(static_cast<uint16_t>(code), fmt::format("{} - {}", amqp::reply_text(code), text), 0, 0);
}

void Connection::finish_close() {
  if (state_ == State::Draining || state_ == State::Closed) return;
  state_ = State::Draining;
  release();
  handshake_timer_.cancel();
  heartbeat_timer_.cancel();
  unblock_timer_.cancel();
  flush();
  stop_after(kDrainTimeout);
}

void Connection::stop_when_drained() {
  if (output_shut_ && input_ended_) stop();
}

void Connection::stop_after(std::chrono::steady_clock::duration delay) {
  auto self = shared_from_this();
  asio::co_spawn(socket_.get_executor(),
                 [self, delay]() -> asio::awaitable<void> {
                   asio::error_code ec;
                   self->close_timer_.expires_after(delay);  // cancels the wait of an earlier stop_after()
                   co_await self->close_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                   if (!ec) self->stop();
                 },
                 asio::detached);
}

void Connection::release() {
  // Channels first (they requeue to queues that may be exclusive to us), then our
  // exclusive queues.
  auto channels = std::move(channels_);
  channels_.clear();
  channels.clear();
  if (vhost_) {
    const ExclusiveOwner me{broker_.catalog().node(), id_};
    for (const auto& q : exclusive_queues_)
      broker_.catalog().propose(DeleteQueue{vhost_name_, q, DeleteReason::OwnerGone, me}, [](const ChangeResult&) {});
  }
  exclusive_queues_.clear();
}

void Connection::resume_channel(uint16_t channel) {
  for (;;) {
    auto it = channels_.find(channel);
    if (it == channels_.end() || state_ != State::Open) return;
    Channel& ch = *it->second;
    if (ch.waiting()) return;
    auto frame = ch.unstash();
    if (!frame) break;
    guarded(channel, [&] { handle_frame({frame->type, channel, frame->payload}); });
  }
  if (auto it = channels_.find(channel); it != channels_.end()) it->second->flush_confirms();
}

void Connection::vhost_deleted() {
  release();
  vhost_ = nullptr;
}

void Connection::stop() {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  release();
  asio::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  wake_.cancel();
  heartbeat_timer_.cancel();
  handshake_timer_.cancel();
  unblock_timer_.cancel();
  close_timer_.cancel();
  log_.debug("closed conn={} peer={}", id_, peer_);
  broker_.remove_connection(id_);  // may drop the last reference held outside coroutines
}

// ---- writing and timers --------------------------------------------------------------

asio::awaitable<void> Connection::writer() {
  auto self = shared_from_this();
  asio::error_code ec;
  while (state_ != State::Closed) {
    if (out_.empty()) {
      if (state_ == State::Draining) {
        socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        output_shut_ = true;
        stop_when_drained();
        co_return;
      }
      writer_waiting_ = true;
      wake_.expires_at(asio::steady_timer::time_point::max());
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      writer_waiting_ = false;
      continue;
    }
    writing_.swap(out_);
    co_await stream_.write(asio::buffer(writing_), ec);
    if (ec) break;
    send_oct_ += writing_.size();
    writing_.clear();
    if (writing_.capacity() > 4 * kOutputHighWater) std::vector<uint8_t>().swap(writing_);
    if (delivery_waiting_ && out_.size() < kOutputHighWater / 2) {
      delivery_waiting_ = false;
      resume_deliveries();
    }
  }
  stop();
}

void Connection::note_publish() {
  publisher_ = true;
  if (!blocked_ && broker_.alarm().any()) alarm_changed();
}

void Connection::alarm_changed() {
  if (state_ != State::Open || !publisher_) return;
  bool block = broker_.alarm().any();
  if (block == blocked_) return;
  blocked_ = block;
  if (caps_.connection_blocked) {
    if (block) {
      amqp::ConnectionBlocked b;
      b.reason = broker_.alarm().reason();
      amqp::append_method_frame(out_, 0, b);
    } else {
      amqp::append_method_frame(out_, 0, amqp::ConnectionUnblocked{});
    }
    flush();
  }
  if (!block) unblock_timer_.cancel();
}

void Connection::resume_reading() {
  if (flow_paused_) unblock_timer_.cancel();
}

void Connection::resume_deliveries() {
  for (auto& [n, ch] : channels_) ch->resume_deliveries();
}

asio::awaitable<void> Connection::heartbeat() {
  auto self = shared_from_this();
  asio::error_code ec;
  const auto interval = std::chrono::seconds(heartbeat_s_);
  while (state_ != State::Closed) {
    heartbeat_timer_.expires_after(interval);
    co_await heartbeat_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec || state_ == State::Closed) break;
    const HeartbeatMonitor::Tick tick = heartbeats_.tick(blocked_ || flow_paused_);
    if (tick.send_heartbeat) {
      amqp::append_heartbeat(out_);
      flush();
      heartbeats_.heartbeat_sent();
    }
    if (tick.peer_dead) {
      log_.warn("missed heartbeats from client conn={} peer={} timeout={}s", id_, peer_, heartbeat_s_);
      stop();
      break;
    }
  }
}

asio::awaitable<void> Connection::handshake_deadline() {
  auto self = shared_from_this();
  asio::error_code ec;
  handshake_timer_.expires_after(std::chrono::milliseconds(broker_.config().handshake_timeout_ms));
  co_await handshake_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (!ec && state_ != State::Closed && state_ != State::Open && state_ != State::Closing) {
    log_.warn("handshake timeout conn={} peer={}", id_, peer_);
    stop();
  }
}

}  // namespace mqnode::broker
