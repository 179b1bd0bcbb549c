#include "lb/proxy_session.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include "lb/lb_module.hpp"

namespace mqnode::lb {

using namespace std::chrono_literals;

std::unique_ptr<char[]> BufferPool::get() {
  ++in_use_;
  if (free_.empty()) return std::make_unique<char[]>(size_);
  auto b = std::move(free_.back());
  free_.pop_back();
  return b;
}

void BufferPool::put(std::unique_ptr<char[]> b) {
  --in_use_;
  if (free_.size() < keep_) free_.push_back(std::move(b));
}

ProxySession::ProxySession(LbModule& lb, std::shared_ptr<Frontend> fe, asio::ip::tcp::socket client, uint64_t id)
    : lb_(lb),
      cfg_(lb.config_ptr()),
      fe_(std::move(fe)),
      be_(fe_->backend_ptr()),
      bc_(&cfg_->backends.at(fe_->config().backend_index)),
      client_(std::move(client)),
      upstream_(client_.get_executor()),
      id_(id),
      started_(Clock::now()),
      last_activity_(started_) {
  asio::error_code ec;
  auto ep = client_.remote_endpoint(ec);
  if (!ec) {
    peer_addr_ = ep.address();
    peer_ = fmt::format("{}:{}", peer_addr_.to_string(), ep.port());
  }
  // The frontend's and backend's settings as of this session's start (the frontend's
  // FrontendConfig is copied by value into its object, so read it now).
  const auto& bc = *bc_;
  idle_ = bc.timeout_tunnel.count() ? bc.timeout_tunnel : std::min(fe_->config().timeout_client, bc.timeout_server);
  connect_deadline_ = started_ + bc.timeout_connect;
}

void ProxySession::start() {
  auto self = shared_from_this();
  schedule(connect_deadline_);
  asio::co_spawn(client_.get_executor(), [self] { return self->run(); }, asio::detached);
}

void ProxySession::close_sockets() {
  closed_ = true;
  asio::error_code ec;
  client_.close(ec);
  upstream_.close(ec);
}

void ProxySession::kill(const char* code) {
  if (closed_) return;
  term_ = code;
  leave_queue();
  close_sockets();
}

void ProxySession::leave_queue() {
  if (!queued_) return;
  queued_ = false;
  be_->dequeue(queue_pos_);
  queue_timer_->cancel();  // wait_in_queue() resumes without a server
}

Clock::time_point ProxySession::deadline() const {
  return phase_ == Phase::Connect ? connect_deadline_ : last_activity_ + idle_;
}

void ProxySession::schedule(Clock::time_point at) {
  next_check_ = at;
  lb_.schedule(at, id_);
}

void ProxySession::check_deadline(Clock::time_point now) {
  // A queued session has its own queue timer; connect() schedules again once granted.
  if (closed_ || phase_ == Phase::Done || phase_ == Phase::Queue) return;
  auto d = deadline();
  if (now < d) {
    schedule(d);  // activity moved the deadline
    return;
  }
  if (phase_ == Phase::Connect) {
    // Ends the pending connect; connect() retries or gives up.
    connect_timed_out_ = true;
    asio::error_code ig;
    upstream_.close(ig);
    connect_deadline_ = now + bc_->timeout_connect;
    schedule(connect_deadline_);
  } else {
    term_ = "cD";
    close_sockets();
  }
}

asio::awaitable<bool> ProxySession::connect() {
  Backend& be = *be_;
  const auto& bc = *bc_;
  PickContext ctx;
  ctx.client = &peer_addr_;
  Server* failed = nullptr;
  for (int attempt = 0; attempt <= bc.retries && !closed_; ++attempt) {
    Server* s = nullptr;
    if (failed && !bc.redispatch && failed->usable()) {
      s = failed;  // HAProxy retries the same server unless redispatching
    } else {
      ctx.avoid = failed;
      s = be.pick(ctx);
    }
    bool counted = false;  // a slot granted from the queue is counted already
    if (!s && be.up()) {
      // Servers in rotation, all at their maxconn: queue for a slot (HAProxy).
      ctx.avoid = nullptr;
      s = co_await wait_in_queue(ctx);
      if (!s) co_return false;
      counted = true;
    }
    if (!s) {
      ++be.stats.nosrv;
      term_ = "SC";
      co_return false;
    }
    if (failed) {
      ++be.stats.wretr;
      ++failed->stats.wretr;
      if (s != failed) {
        ++be.stats.wredis;
        ++failed->stats.wredis;
      }
    }
    server_ = s->shared_from_this();
    if (!counted) s->session_started(Clock::now());  // counts toward leastconn and maxconn while connecting
    ++be.stats.lbtot;
    connect_deadline_ = Clock::now() + bc.timeout_connect;
    connect_timed_out_ = false;
    schedule(connect_deadline_);
    asio::error_code ec;
    upstream_ = asio::ip::tcp::socket(client_.get_executor());
    co_await upstream_.async_connect(s->endpoint(), asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !closed_) {
      ++be.stats.stot;
      if (++be.stats.scur > be.stats.smax) be.stats.smax = be.stats.scur;
      co_return true;
    }
    be.release(*s, Clock::now());
    --s->stats.stot;  // only established sessions count as stot, as in HAProxy
    server_ = nullptr;
    if (closed_) co_return false;
    ++s->stats.econ;
    ++be.stats.econ;
    term_ = connect_timed_out_ ? "sC" : "SC";
    lb_.log().debug("connect failed session={} server={}/{} error=\"{}\"", id_, be.name(), s->name(),
                    connect_timed_out_ ? "timeout" : ec.message());
    failed = s;
    ++retries_;
    if (!bc.redispatch && attempt < bc.retries) {
      // HAProxy waits a turn-around second before hitting the same server again.
      asio::steady_timer pause(client_.get_executor());
      pause.expires_after(std::min<Millis>(1000ms, bc.timeout_connect));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  co_return false;
}

asio::awaitable<Server*> ProxySession::wait_in_queue(const PickContext& ctx) {
  phase_ = Phase::Queue;
  Server* granted = nullptr;
  queue_timer_ = std::make_unique<asio::steady_timer>(client_.get_executor(), bc_->timeout_queue);
  queue_pos_ = be_->enqueue({ctx, [this, &granted](Server& s) {
                               granted = &s;
                               queued_ = false;
                               queue_timer_->cancel();
                             }});
  queued_ = true;
  asio::error_code ec;
  co_await queue_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  queue_timer_.reset();
  phase_ = Phase::Connect;
  if (granted && closed_) {
    be_->release(*granted, Clock::now());  // killed after the grant: the slot goes on
    co_return nullptr;
  }
  if (granted) co_return granted;
  if (queued_) {
    // timeout queue: HAProxy closes the connection (termination "sQ") and counts a
    // failed connection for the backend.
    queued_ = false;
    be_->dequeue(queue_pos_);
    ++be_->stats.econ;
    term_ = "sQ";
    lb_.log().debug("queue timeout session={} backend={} timeout_queue_ms={}", id_, be_->name(),
                    bc_->timeout_queue.count());
  }
  co_return nullptr;
}

void ProxySession::pump_wait(bool from_client) {
  auto& from = from_client ? client_ : upstream_;
  // Idle: wait for readability without holding a buffer.
  from.async_wait(asio::socket_base::wait_read, [self = shared_from_this(), from_client](const asio::error_code& ec) {
    self->pump_read(from_client, ec);
  });
}

bool ProxySession::use_splice(bool from_client) const {
  switch (cfg_->splice) {
    case SpliceMode::Always: return true;
    case SpliceMode::Auto: return streaming_[from_client ? 0 : 1];
    case SpliceMode::Never: return false;
  }
  return false;
}

void ProxySession::pump_read(bool from_client, asio::error_code ec) {
  if (ec) return pump_end(from_client, ec);
  const int d = from_client ? 0 : 1;
  auto& from = from_client ? client_ : upstream_;
  auto& to = from_client ? upstream_ : client_;
  if (use_splice(from_client)) {
    auto& pipes = lb_.pipes();
    auto& pipe = pipes_[d];
    if (!pipe) pipe = pipes.get();
    if (pipe) {  // else out of fds or pipe memory: this read goes through the buffer
      std::size_t n = splice_in(from.native_handle(), *pipe, pipes.capacity(), ec);
      if (ec == asio::error::would_block) {
        pipes.put(std::move(pipe));
        streaming_[d] = false;
        return pump_wait(from_client);
      }
      if (!ec && n == 0) {
        pipes.put(std::move(pipe));
        return pump_eof(from_client);
      }
      if (ec) return pump_end(from_client, ec);
      last_activity_ = Clock::now();
      in_pipe_[d] = static_cast<uint32_t>(n);
      pipe_full_[d] = n == pipes.capacity();
      // A pipe holds 16 socket buffers, whatever their size: small segments make splice
      // move less per call than one read(); auto goes back to the buffer then.
      if (n < std::min(lb_.buffers().size(), pipes.capacity())) {
        streaming_[d] = false;
        full_reads_[d] = 0;
      }
      return pump_flush(from_client);
    }
  }
  auto& buf = bufs_[d];
  auto& pool = lb_.buffers();
  if (!buf) buf = pool.get();
  std::size_t n = from.read_some(asio::buffer(buf.get(), pool.size()), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    pool.put(std::move(buf));
    streaming_[d] = false;
    return pump_wait(from_client);
  }
  if (ec == asio::error::eof) return pump_eof(from_client);
  if (ec) return pump_end(from_client, ec);
  last_activity_ = Clock::now();
  asio::async_write(to, asio::buffer(buf.get(), n),
                    [self = shared_from_this(), from_client, n](const asio::error_code& ec, std::size_t) {
                      self->pump_written(from_client, n, ec);
                    });
}

void ProxySession::pump_eof(bool from_client) {
  // Half-close: the other side learns that this one has finished sending (everything read
  // before the EOF has been written already).
  asio::error_code ig;
  (from_client ? upstream_ : client_).shutdown(asio::socket_base::shutdown_send, ig);
  pump_end(from_client, {});
}

void ProxySession::pump_flush(bool from_client) {
  const int d = from_client ? 0 : 1;
  auto& to = from_client ? upstream_ : client_;
  while (in_pipe_[d] > 0) {
    asio::error_code ec;
    std::size_t n = splice_out(*pipes_[d], to.native_handle(), in_pipe_[d], ec);
    if (ec == asio::error::would_block) {
      // The receiver is slower: wait for room in its socket buffer (the pipe stays full,
      // so nothing more is read from the sender meanwhile).
      to.async_wait(asio::socket_base::wait_write,
                    [self = shared_from_this(), from_client](const asio::error_code& ec) {
                      if (ec) return self->pump_end(from_client, ec);
                      self->pump_flush(from_client);
                    });
      return;
    }
    if (ec) return pump_end(from_client, ec);
    in_pipe_[d] -= static_cast<uint32_t>(n);
    count(from_client, n);
    lb_.add_spliced(n);
  }
  lb_.pipes().put(std::move(pipes_[d]));
  // A full pipe means more is probably waiting: read again now.
  if (pipe_full_[d]) return pump_read(from_client, {});
  pump_wait(from_client);
}

void ProxySession::count(bool from_client, std::size_t n) {
  if (from_client) {
    bytes_in_ += n;
    fe_->stats.bin += n;
    be_->stats.bin += n;
    server_->stats.bin += n;
  } else {
    bytes_out_ += n;
    fe_->stats.bout += n;
    be_->stats.bout += n;
    server_->stats.bout += n;
  }
}

void ProxySession::pump_written(bool from_client, std::size_t n, const asio::error_code& ec) {
  if (ec) return pump_end(from_client, ec);
  count(from_client, n);
  const int d = from_client ? 0 : 1;
  auto& pool = lb_.buffers();
  // A full read means more is probably waiting: keep the buffer and read again (spliced
  // from now on in SpliceMode::Auto, the buffer going back to the pool).
  if (n == pool.size()) {
    // One full read is common in a burst of small messages, whose splices would each move
    // less than a buffer and fall back again (measured: 16 B throughput 0.86x HAProxy's with
    // a switch on the first full read); a run of full reads is a real stream.
    constexpr uint8_t kFullReadsToSplice = 4;
    if (full_reads_[d] < kFullReadsToSplice) ++full_reads_[d];
    streaming_[d] = full_reads_[d] == kFullReadsToSplice;
    if (use_splice(from_client)) pool.put(std::move(bufs_[d]));
    return pump_read(from_client, {});
  }
  full_reads_[d] = 0;
  pool.put(std::move(bufs_[d]));
  pump_wait(from_client);
}

void ProxySession::pump_end(bool from_client, const asio::error_code& ec) {
  const int d = from_client ? 0 : 1;
  if (bufs_[d]) lb_.buffers().put(std::move(bufs_[d]));
  if (pipes_[d]) lb_.pipes().put(std::move(pipes_[d]), in_pipe_[d] == 0);
  if (ec && !closed_) {
    // A reset or write failure on either side ends both directions.
    if (from_client) {
      term_ = "CD";
      ++server_->stats.cli_abrt;
      ++be_->stats.cli_abrt;
    } else {
      term_ = "SD";
      ++server_->stats.srv_abrt;
      ++be_->stats.srv_abrt;
    }
    close_sockets();
  }
  if (--pumps_ > 0) return;
  phase_ = Phase::Done;
  close_sockets();
  finish();
}

asio::awaitable<void> ProxySession::run() {
  auto self = shared_from_this();
  asio::error_code ec;
  client_.set_option(asio::ip::tcp::no_delay(true), ec);
  bool ok = co_await connect();
  if (ok) {
    upstream_.set_option(asio::ip::tcp::no_delay(true), ec);
    // read_some after wait_read must never block the loop.
    client_.non_blocking(true, ec);
    upstream_.non_blocking(true, ec);
    phase_ = Phase::Data;
    last_activity_ = Clock::now();
    schedule(last_activity_ + idle_);
    // The pumps hold the session from here; this coroutine (and its frame) ends.
    pumps_ = 2;
    pump_wait(true);
    pump_wait(false);
    co_return;
  }
  phase_ = Phase::Done;
  close_sockets();
  finish();
}

void ProxySession::finish() {
  if (ended_) return;
  ended_ = true;
  auto now = Clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - started_).count();
  --fe_->stats.scur;
  if (server_) {
    --be_->stats.scur;  // server_ is set only once connected
    be_->release(*server_, now);
  }
  if (cfg_->log_sessions)
    lb_.log().info("session id={} client={} frontend={} backend={} server={} bytes_in={} bytes_out={} duration_ms={} retries={} term={}",
                   id_, peer_, fe_->name(), be_->name(), server_ ? server_->name() : "<NOSRV>", bytes_in_,
                   bytes_out_, ms, retries_, term_);
  fe_->release();
  lb_.remove_session(id_);  // may drop the last reference but one (run() holds self)
}

void ProxySession::dump(nlohmann::json& out) const {
  out["id"] = id_;
  out["client"] = peer_;
  out["server"] = server_ ? server_->name() : "";
  out["bytes_in"] = bytes_in_;
  out["bytes_out"] = bytes_out_;
}

}  // namespace mqnode::lb
