// mqnode-bench: AMQP 0-9-1 load generator (rabbitmq-c) used to compare mqnode
// with RabbitMQ. Scenarios: throughput, fanout, idle, backlog, latency. See
// bench/README.md.
//
// Every run prints human-readable lines followed by exactly one machine-readable
// line "RESULT {json}" (bench/run.py parses it). Exit status: 0 ok, 1 the run
// completed but the result is wrong (lost/extra messages, dead connections),
// 2 setup/connection/protocol error or stall (the reason is on stderr).
//
// Hot paths deliberately bypass parts of rabbitmq-c:
//   * the producer ("--publisher batch", default) pre-encodes one complete
//     basic.publish (method + header + body frames) and writes up to --batch
//     copies with a single send(); rabbitmq-c's amqp_basic_publish costs three
//     send() calls per message, which made the generator, not the broker, the
//     bottleneck. "--publisher lib" uses amqp_basic_publish for cross-checking.
//   * consumers read with amqp_consume_message, but basic.ack frames are
//     encoded by hand into a buffer that is flushed when the receive buffer is
//     drained (i.e. right before the consumer would block) or when it holds 256
//     acks. Each message is still acked individually (multiple=false) unless
//     --ack-every K > 1 is given.
// Writing raw frames to rabbitmq-c's socket is safe because rabbitmq-c does
// not buffer outgoing data and each connection is used by one thread only.

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "fake_broker.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double secs_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string strf(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------
// Options

enum class Scenario { Throughput, Fanout, Idle, FakeBroker, Backlog, Latency };

struct Options {
  Scenario scenario = Scenario::Throughput;
  std::string host = "127.0.0.1";
  int port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  size_t size = 16;
  bool ack_manual = false;
  uint32_t ack_every = 1;
  uint16_t prefetch = 100;
  uint64_t count = 0;    // total messages (per queue for fanout); 0 = use seconds
  double seconds = 0;    // publish duration; used when count == 0 (default 10)
  int producers = 1;
  int consumers = 1;
  uint64_t max_lag = 50000;
  int queues = 0;            // fanout: 0 = 10; throughput: 0 = 1, Q > 1 = producer i and consumer i on queue i % Q
  int consumer_conns = 0;    // fanout: 0 = one connection per queue
  bool lib_publisher = false;
  int batch = 64;
  int connections = 1000;    // idle
  double hold = 5;           // idle
  bool hold_stdin = false;   // idle
  int threads = 4;           // idle: threads opening/closing connections
  double timeout = 15;       // stall timeout / network timeouts (seconds)
  std::string tag;           // free text copied into RESULT
  std::string queue;         // throughput/backlog/latency: this queue (declared before, e.g. on another node)
  bool persistent = false;   // delivery-mode 2 and a durable queue
  uint32_t confirm_window = 0;  // 0 = no confirms; else confirm.select, at most N unconfirmed
  double rate = 0;           // latency: messages per second
  double warmup = 2;         // latency: seconds not measured at the start
};

[[noreturn]] void usage(int code) {
  fprintf(code ? stderr : stdout,
          "usage: mqnode-bench {throughput|fanout|backlog|latency|idle|fake-broker} [options]\n"
          "connection:  --host H (127.0.0.1) --port N (5672) --user U --password P --vhost V\n"
          "throughput:  --producers P (1) --consumers C (1) --size BYTES (16) --ack none|manual (none)\n"
          "             --ack-every K (1 = ack each message; K>1 = multiple-ack every K)\n"
          "             --prefetch N (100) --count N | --seconds S (default 10 s) --max-lag N (50000)\n"
          "             --publisher batch|lib (batch) --batch N (64 messages per send)\n"
          "             --persistent (delivery-mode 2, durable queue) --confirm-window N (0 = no confirms;\n"
          "             N = confirm.select, at most N unconfirmed publishes in flight)\n"
          "             --queues Q (1): Q independent queues, producer and consumer i on queue i %% Q\n"
          "fanout:      same as throughput plus --queues Q (10) --consumer-conns K (0 = one per queue);\n"
          "             --count is per queue, --max-lag is per queue (slowest queue)\n"
          "backlog:     same as throughput, --count N required: publish N with no consumer running, print\n"
          "             BACKLOG_READY, wait --hold S (5) or until a line/EOF on stdin (--hold-stdin), then\n"
          "             drain with --consumers C; --max-lag is ignored\n"
          "latency:     --rate R (msg/s, required) --warmup S (2) --seconds S (10, measured after warm-up)\n"
          "             --size B (>= 8) plus throughput's --ack/--prefetch/--persistent/--confirm-window;\n"
          "             1 producer, 1 consumer; body starts with the CLOCK_MONOTONIC send time\n"
          "idle:        --connections N (1000) --hold S (5) --hold-stdin (hold until a line/EOF on stdin)\n"
          "             --threads T (4)\n"
          "fake-broker: --port N [--seconds S]: in-memory AMQP sink for measuring this generator's own\n"
          "             ceiling (throughput scenario only); see README\n"
          "common:      --timeout S (15: connect/RPC timeout and no-progress limit) --tag TEXT\n"
          "             --queue NAME (single-queue scenarios: use NAME, redeclared, instead of a fresh one;\n"
          "             in a cluster a queue declared on another node first is homed there)\n");
  exit(code);
}

Options parse_args(int argc, char** argv) {
  Options o;
  if (argc < 2) usage(2);
  std::string sc = argv[1];
  if (sc == "-h" || sc == "--help") usage(0);
  if (sc == "throughput") o.scenario = Scenario::Throughput;
  else if (sc == "fanout") o.scenario = Scenario::Fanout;
  else if (sc == "idle") o.scenario = Scenario::Idle;
  else if (sc == "fake-broker") o.scenario = Scenario::FakeBroker;
  else if (sc == "backlog") o.scenario = Scenario::Backlog;
  else if (sc == "latency") o.scenario = Scenario::Latency;
  else {
    fprintf(stderr, "mqnode-bench: unknown scenario '%s'\n", sc.c_str());
    usage(2);
  }
  bool ack_every_set = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        fprintf(stderr, "mqnode-bench: %s needs a value\n", a.c_str());
        usage(2);
      }
      return argv[++i];
    };
    auto num = [&](double lo, double hi) -> double {
      std::string v = val();
      char* end = nullptr;
      double d = strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || d < lo || d > hi) {
        fprintf(stderr, "mqnode-bench: bad value '%s' for %s (range %g..%g)\n", v.c_str(), a.c_str(), lo, hi);
        exit(2);
      }
      return d;
    };
    if (a == "--host") o.host = val();
    else if (a == "--port") o.port = static_cast<int>(num(1, 65535));
    else if (a == "--user") o.user = val();
    else if (a == "--password") o.password = val();
    else if (a == "--vhost") o.vhost = val();
    else if (a == "--queue") o.queue = val();
    else if (a == "--size") o.size = static_cast<size_t>(num(0, 64 << 20));
    else if (a == "--ack") {
      std::string v = val();
      if (v == "none") o.ack_manual = false;
      else if (v == "manual") o.ack_manual = true;
      else { fprintf(stderr, "mqnode-bench: --ack none|manual\n"); exit(2); }
    } else if (a == "--ack-every") { o.ack_every = static_cast<uint32_t>(num(1, 65535)); ack_every_set = true; }
    else if (a == "--prefetch") o.prefetch = static_cast<uint16_t>(num(0, 65535));
    else if (a == "--count") o.count = static_cast<uint64_t>(num(1, 1e12));
    else if (a == "--seconds") o.seconds = num(0.1, 86400);
    else if (a == "--producers") o.producers = static_cast<int>(num(1, 256));
    else if (a == "--consumers") o.consumers = static_cast<int>(num(1, 256));
    else if (a == "--max-lag") o.max_lag = static_cast<uint64_t>(num(1, 1e12));
    else if (a == "--queues") o.queues = static_cast<int>(num(1, 1000));
    else if (a == "--consumer-conns") o.consumer_conns = static_cast<int>(num(0, 1000));
    else if (a == "--publisher") {
      std::string v = val();
      if (v == "batch") o.lib_publisher = false;
      else if (v == "lib") o.lib_publisher = true;
      else { fprintf(stderr, "mqnode-bench: --publisher batch|lib\n"); exit(2); }
    } else if (a == "--batch") o.batch = static_cast<int>(num(1, 100000));
    else if (a == "--connections") o.connections = static_cast<int>(num(1, 1000000));
    else if (a == "--hold") o.hold = num(0, 86400);
    else if (a == "--hold-stdin") o.hold_stdin = true;
    else if (a == "--threads") o.threads = static_cast<int>(num(1, 256));
    else if (a == "--timeout") o.timeout = num(0.5, 3600);
    else if (a == "--tag") o.tag = val();
    else if (a == "--persistent") o.persistent = true;
    else if (a == "--confirm-window") o.confirm_window = static_cast<uint32_t>(num(0, 1e9));
    else if (a == "--rate") o.rate = num(1, 1e7);
    else if (a == "--warmup") o.warmup = num(0, 3600);
    else if (a == "-h" || a == "--help") usage(0);
    else {
      fprintf(stderr, "mqnode-bench: unknown option '%s'\n", a.c_str());
      usage(2);
    }
  }
  if (o.scenario == Scenario::FakeBroker) return o;
  if (o.queues == 0) o.queues = o.scenario == Scenario::Fanout ? 10 : 1;
  if (o.queues > 1 && o.scenario != Scenario::Fanout && o.scenario != Scenario::Throughput) {
    fprintf(stderr, "mqnode-bench: --queues applies to throughput and fanout only\n");
    exit(2);
  }
  if (o.scenario == Scenario::Backlog && o.count == 0) {
    fprintf(stderr, "mqnode-bench: backlog needs --count N\n");
    exit(2);
  }
  if (o.scenario == Scenario::Latency) {
    if (o.rate <= 0) { fprintf(stderr, "mqnode-bench: latency needs --rate R\n"); exit(2); }
    if (o.count != 0) { fprintf(stderr, "mqnode-bench: latency takes --seconds, not --count\n"); exit(2); }
    if (o.size < 8) { fprintf(stderr, "mqnode-bench: latency needs --size >= 8 (send timestamp)\n"); exit(2); }
    o.producers = 1;
    o.consumers = 1;
  }
  if (o.count == 0 && o.seconds == 0) o.seconds = 10;
  if (o.count != 0 && o.seconds != 0) {
    fprintf(stderr, "mqnode-bench: give --count or --seconds, not both\n");
    exit(2);
  }
  if (ack_every_set && !o.ack_manual) {
    fprintf(stderr, "mqnode-bench: --ack-every needs --ack manual\n");
    exit(2);
  }
  if (o.ack_manual && o.prefetch != 0 && o.ack_every > o.prefetch) {
    fprintf(stderr, "mqnode-bench: --ack-every (%u) must not exceed --prefetch (%u)\n", o.ack_every, o.prefetch);
    exit(2);
  }
  if (o.scenario == Scenario::Fanout) {
    if (o.consumer_conns == 0 || o.consumer_conns > o.queues) o.consumer_conns = o.queues;
  }
  return o;
}

// ---------------------------------------------------------------------------
// Global abort machinery: any thread that fails records the first error and
// sets g_abort; the watchdog (main thread) shuts down every registered socket
// so that threads blocked inside rabbitmq-c return.

std::atomic<bool> g_abort{false};
std::mutex g_err_mu;
std::string g_first_error;
std::mutex g_fd_mu;
std::set<int> g_fds;

void record_error(const std::string& msg) {
  {
    std::lock_guard lk(g_err_mu);
    if (g_first_error.empty()) g_first_error = msg;
  }
  g_abort.store(true);
}

std::string first_error() {
  std::lock_guard lk(g_err_mu);
  return g_first_error;
}

void register_fd(int fd) {
  std::lock_guard lk(g_fd_mu);
  g_fds.insert(fd);
}
void unregister_fd(int fd) {
  std::lock_guard lk(g_fd_mu);
  g_fds.erase(fd);
}
void shutdown_all_fds() {
  std::lock_guard lk(g_fd_mu);
  for (int fd : g_fds) shutdown(fd, SHUT_RDWR);
}

// ---------------------------------------------------------------------------
// rabbitmq-c helpers

std::string bytes_str(amqp_bytes_t b) {
  return std::string(static_cast<const char*>(b.bytes), b.len);
}

std::string describe_reply(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no RPC reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      if (r.library_error == AMQP_STATUS_SOCKET_ERROR || r.library_error == AMQP_STATUS_CONNECTION_CLOSED)
        return strf("%s (errno: %s)", amqp_error_string2(r.library_error), strerror(errno));
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      switch (r.reply.id) {
        case AMQP_CONNECTION_CLOSE_METHOD: {
          auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
          return strf("server closed the connection: %u %s", m->reply_code, bytes_str(m->reply_text).c_str());
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
          auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
          return strf("server closed the channel: %u %s", m->reply_code, bytes_str(m->reply_text).c_str());
        }
        default:
          return strf("unexpected server method 0x%08x", r.reply.id);
      }
  }
  return "unknown reply type";
}

// Hand-encoded frames (AMQP 0-9-1 section 4.2.3): type, channel, size, payload, 0xCE.
struct Enc {
  std::vector<uint8_t>& b;
  void u8(uint8_t v) { b.push_back(v); }
  void u16(uint16_t v) { u8(static_cast<uint8_t>(v >> 8)); u8(static_cast<uint8_t>(v)); }
  void u32(uint32_t v) { u16(static_cast<uint16_t>(v >> 16)); u16(static_cast<uint16_t>(v)); }
  void u64(uint64_t v) { u32(static_cast<uint32_t>(v >> 32)); u32(static_cast<uint32_t>(v)); }
  void sstr(const std::string& s) {
    u8(static_cast<uint8_t>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
  }
};

void put_frame(std::vector<uint8_t>& out, uint8_t type, uint16_t channel, const uint8_t* payload, size_t n) {
  Enc e{out};
  e.u8(type);
  e.u16(channel);
  e.u32(static_cast<uint32_t>(n));
  out.insert(out.end(), payload, payload + n);
  e.u8(AMQP_FRAME_END);
}

// One complete basic.publish: method frame, content header (delivery-mode 1 =
// transient, 2 = persistent), body frames split at frame_max.
std::vector<uint8_t> encode_publish(uint16_t channel, const std::string& exchange, const std::string& rkey,
                                    const std::vector<uint8_t>& body, uint32_t frame_max, bool persistent) {
  std::vector<uint8_t> out, p;
  Enc e{p};
  e.u16(60);  // basic
  e.u16(40);  // publish
  e.u16(0);   // reserved-1 (ticket)
  e.sstr(exchange);
  e.sstr(rkey);
  e.u8(0);    // mandatory=0, immediate=0
  put_frame(out, AMQP_FRAME_METHOD, channel, p.data(), p.size());
  p.clear();
  e.u16(60);                   // class
  e.u16(0);                    // weight
  e.u64(body.size());          // body size
  e.u16(AMQP_BASIC_DELIVERY_MODE_FLAG);
  e.u8(persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT);
  put_frame(out, AMQP_FRAME_HEADER, channel, p.data(), p.size());
  const size_t chunk = frame_max > 8 ? frame_max - 8 : 4096;
  for (size_t off = 0; off < body.size(); off += chunk) {
    size_t n = std::min(chunk, body.size() - off);
    put_frame(out, AMQP_FRAME_BODY, channel, body.data() + off, n);
  }
  return out;
}

void append_ack(std::vector<uint8_t>& out, uint16_t channel, uint64_t tag, bool multiple) {
  uint8_t p[13];
  p[0] = 0; p[1] = 60;  // basic
  p[2] = 0; p[3] = 80;  // ack
  for (int i = 0; i < 8; ++i) p[4 + i] = static_cast<uint8_t>(tag >> (56 - 8 * i));
  p[12] = multiple ? 1 : 0;
  put_frame(out, AMQP_FRAME_METHOD, channel, p, sizeof p);
}

uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Publisher-confirm bookkeeping for one channel: sequence numbers
// [base, next) are published; `done` marks the confirmed (acked or nacked)
// ones. basic.ack/nack with multiple=true confirm everything up to the tag.
struct ConfirmTracker {
  uint64_t base = 1, next = 1;
  std::deque<uint8_t> done;
  uint64_t unconfirmed = 0, acked = 0, nacked = 0;
  std::atomic<uint64_t>* confirmed_total = nullptr;  // acks + nacks, for the watchdog
  std::atomic<uint64_t>* nacked_total = nullptr;

  void published(uint64_t n) {
    next += n;
    unconfirmed += n;
    done.insert(done.end(), n, 0);
  }
  void confirm(uint64_t tag, bool multiple, bool nack) {
    if (tag >= next || (!multiple && (tag < base || done[tag - base])))
      throw BenchError(strf("broker sent basic.%s for delivery tag %" PRIu64 " (multiple=%d), but only %" PRIu64
                            " published and tags below %" PRIu64 " already confirmed",
                            nack ? "nack" : "ack", tag, multiple ? 1 : 0, next - 1, base));
    uint64_t n = 0;
    const uint64_t from = multiple ? base : tag;
    for (uint64_t t = from; t <= tag; ++t) {
      uint8_t& d = done[t - base];
      if (!d) { d = 1; ++n; }
    }
    while (!done.empty() && done.front()) { done.pop_front(); ++base; }
    unconfirmed -= n;
    (nack ? nacked : acked) += n;
    if (confirmed_total) confirmed_total->fetch_add(n, std::memory_order_relaxed);
    if (nack && nacked_total) nacked_total->fetch_add(n, std::memory_order_relaxed);
  }
};

// Writes all bytes to a (possibly non-blocking) socket; waits with poll and
// gives up on g_abort or after `timeout` seconds without any progress.
void write_all(int fd, const uint8_t* p, size_t n, double timeout) {
  auto last_progress = Clock::now();
  while (n > 0) {
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    if (r > 0) {
      p += r;
      n -= static_cast<size_t>(r);
      last_progress = Clock::now();
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (g_abort.load(std::memory_order_relaxed)) throw BenchError("aborted");
      if (secs_since(last_progress) > timeout)
        throw BenchError(strf("send blocked for %.0f s (broker not reading)", timeout));
      pollfd pfd{fd, POLLOUT, 0};
      poll(&pfd, 1, 100);
      continue;
    }
    throw BenchError(strf("send failed: %s", r == 0 ? "closed" : strerror(errno)));
  }
}

// rabbitmq-c does not keep errno from a failed connect; redo a plain
// blocking connect to tell "refused" from "timed out" etc.
std::string probe_connect(const Options& o) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(o.port);
  int g = getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res);
  if (g != 0) return strf("resolve: %s", gai_strerror(g));
  std::string what = "connect works now";
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) { what = strf("socket: %s", strerror(errno)); continue; }
    timeval tv = {static_cast<time_t>(o.timeout), 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      what = strf("connect: %s", strerror(errno));
      close(fd);
      continue;
    }
    close(fd);
    what = "connect works now";
    break;
  }
  freeaddrinfo(res);
  return what;
}

class Conn {
 public:
  Conn(const Options& o, const std::string& name) : timeout_(o.timeout) {
    conn_ = amqp_new_connection();
    if (!conn_) throw BenchError("amqp_new_connection failed");
    amqp_socket_t* sock = amqp_tcp_socket_new(conn_);
    if (!sock) throw BenchError("amqp_tcp_socket_new failed");
    timeval tv = to_tv(o.timeout);
    int rc = amqp_socket_open_noblock(sock, o.host.c_str(), o.port, &tv);
    if (rc != AMQP_STATUS_OK)
      throw BenchError(strf("cannot connect to %s:%d: %s (%s)", o.host.c_str(), o.port, amqp_error_string2(rc),
                            probe_connect(o).c_str()));
    fd_ = amqp_get_sockfd(conn_);
    register_fd(fd_);
    amqp_set_handshake_timeout(conn_, &tv);
    amqp_set_rpc_timeout(conn_, &tv);
    amqp_table_entry_t entries[1];
    entries[0].key = amqp_cstring_bytes("connection_name");
    entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[0].value.value.bytes = amqp_cstring_bytes(name.c_str());
    amqp_table_t props{1, entries};
    amqp_rpc_reply_t r = amqp_login_with_properties(conn_, o.vhost.c_str(), 0, 131072, 0, &props,
                                                    AMQP_SASL_METHOD_PLAIN, o.user.c_str(), o.password.c_str());
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
      throw BenchError(strf("login to %s:%d failed: %s", o.host.c_str(), o.port, describe_reply(r).c_str()));
    open_channel(1);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    if (fd_ >= 0) unregister_fd(fd_);
    if (conn_) amqp_destroy_connection(conn_);
  }

  amqp_connection_state_t get() const { return conn_; }
  int fd() const { return fd_; }
  uint32_t frame_max() const { return static_cast<uint32_t>(amqp_get_frame_max(conn_)); }

  void check(const char* what) {
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      broken_ = true;
      throw BenchError(strf("%s: %s", what, describe_reply(r).c_str()));
    }
  }

  void open_channel(amqp_channel_t ch) {
    amqp_channel_open(conn_, ch);
    check(strf("channel.open(%u)", ch).c_str());
    channels_.push_back(ch);
  }

  // Graceful close (channel.close for each channel, then connection.close),
  // each step bounded by `rpc_timeout` seconds (default: --timeout). Returns
  // "" on success, else what went wrong.
  std::string close(double rpc_timeout = 0) {
    if (broken_) return "connection already broken";
    if (g_abort.load()) return "aborted";
    if (rpc_timeout > 0) {
      timeval tv = to_tv(rpc_timeout);
      amqp_set_rpc_timeout(conn_, &tv);
    }
    broken_ = true;
    for (amqp_channel_t ch : channels_) {
      amqp_rpc_reply_t r = amqp_channel_close(conn_, ch, AMQP_REPLY_SUCCESS);
      if (r.reply_type != AMQP_RESPONSE_NORMAL)
        return strf("channel.close(%u) -> %s", ch, describe_reply(r).c_str());
    }
    amqp_rpc_reply_t r = amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return strf("connection.close -> %s", describe_reply(r).c_str());
    return "";
  }

  // Reads and handles any frames that arrived on a connection that is used
  // only for publishing (or idling). Throws on channel/connection close.
  // basic.ack / basic.nack go to `confirms` (an error without one). Waits up
  // to wait_ns for the first frame if nothing is buffered.
  void poll_incoming(const char* who, std::atomic<uint64_t>* blocked_events, ConfirmTracker* confirms = nullptr,
                     int64_t wait_ns = 0) {
    for (;;) {
      if (amqp_frames_enqueued(conn_) == 0 && !amqp_data_in_buffer(conn_)) {
        pollfd pfd{fd_, POLLIN, 0};
        timespec ts{static_cast<time_t>(wait_ns / 1000000000), static_cast<long>(wait_ns % 1000000000)};
        wait_ns = 0;
        if (ppoll(&pfd, 1, &ts, nullptr) <= 0) return;
      }
      amqp_frame_t f;
      timeval zero{0, 0};
      int rc = amqp_simple_wait_frame_noblock(conn_, &f, &zero);
      if (rc == AMQP_STATUS_TIMEOUT) return;
      if (rc != AMQP_STATUS_OK) {
        broken_ = true;
        throw BenchError(strf("%s: connection lost: %s", who, amqp_error_string2(rc)));
      }
      if (f.frame_type != AMQP_FRAME_METHOD) continue;
      switch (f.payload.method.id) {
        case AMQP_CONNECTION_BLOCKED_METHOD:
          if (blocked_events) blocked_events->fetch_add(1);
          fprintf(stderr, "mqnode-bench: %s: broker sent connection.blocked\n", who);
          break;
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
          break;
        case AMQP_BASIC_ACK_METHOD:
        case AMQP_BASIC_NACK_METHOD: {
          if (!confirms) throw BenchError(strf("%s: unexpected publisher confirm (no confirm.select)", who));
          if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            auto* m = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
            confirms->confirm(m->delivery_tag, m->multiple != 0, false);
          } else {
            auto* m = static_cast<amqp_basic_nack_t*>(f.payload.method.decoded);
            confirms->confirm(m->delivery_tag, m->multiple != 0, true);
          }
          break;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
          auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
          broken_ = true;
          throw BenchError(strf("%s: broker closed the connection: %u %s", who, m->reply_code,
                                bytes_str(m->reply_text).c_str()));
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
          auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
          broken_ = true;
          throw BenchError(strf("%s: broker closed channel %u: %u %s", who, f.channel, m->reply_code,
                                bytes_str(m->reply_text).c_str()));
        }
        default:
          fprintf(stderr, "mqnode-bench: %s: ignoring unexpected method 0x%08x\n", who, f.payload.method.id);
      }
      amqp_maybe_release_buffers(conn_);
    }
  }

  static timeval to_tv(double s) {
    timeval tv;
    tv.tv_sec = static_cast<time_t>(s);
    tv.tv_usec = static_cast<suseconds_t>((s - static_cast<double>(tv.tv_sec)) * 1e6);
    return tv;
  }

 private:
  amqp_connection_state_t conn_ = nullptr;
  int fd_ = -1;
  double timeout_;
  bool broken_ = false;
  std::vector<amqp_channel_t> channels_;
};

// ---------------------------------------------------------------------------
// throughput / fanout

struct alignas(64) PaddedCounter {
  std::atomic<uint64_t> v{0};
};

struct Shared {
  const Options* o = nullptr;
  int nqueues = 1;
  bool spread = false;       // throughput over independent queues: each message goes to one queue
  std::vector<std::string> queues;
  std::string exchange;      // "" = default exchange (routing key = queue name)
  std::string routing_key;
  alignas(64) std::atomic<uint64_t> published{0};
  std::unique_ptr<PaddedCounter[]> consumed;  // per queue
  std::unique_ptr<PaddedCounter[]> published_q;  // per queue, spread only
  alignas(64) std::atomic<bool> target_known{false};
  std::atomic<uint64_t> target{0};            // per-queue total to receive
  std::atomic<int> consumers_ready{0};
  std::atomic<int> producers_ready{0};
  std::atomic<int> producers_done{0};
  std::atomic<int> closing{0};                // workers that finished their work and are closing
  std::atomic<bool> go{false};
  std::atomic<uint64_t> blocked_events{0};
  std::atomic<uint64_t> unexpected{0};        // deliveries beyond the target
  alignas(64) std::atomic<uint64_t> confirmed{0};  // publisher confirms received (ack + nack)
  std::atomic<uint64_t> nacked{0};
  std::atomic<uint64_t> measure_from_ns{0};   // latency: sends before this (CLOCK_MONOTONIC) are warm-up
  std::atomic<uint64_t> max_send_lag_ns{0};   // latency: worst lateness of a send vs its schedule
  std::atomic<uint64_t> window_full{0};       // latency: sends that first had to wait for confirms

  uint64_t min_consumed() const {
    uint64_t m = consumed[0].v.load(std::memory_order_relaxed);
    for (int i = 1; i < nqueues; ++i) m = std::min(m, consumed[i].v.load(std::memory_order_relaxed));
    return m;
  }
  // Backlog the producers wait on: a fanout message is done when the slowest
  // queue has it; spread messages each go to one queue.
  uint64_t lag() const {
    const uint64_t pub = published.load(std::memory_order_relaxed);
    const uint64_t cons = spread ? total_consumed() : min_consumed();
    return pub > cons ? pub - cons : 0;
  }
  // Deliveries queue q must see once target_known.
  uint64_t queue_target(int q) const {
    return spread ? published_q[q].v.load(std::memory_order_relaxed) : target.load(std::memory_order_relaxed);
  }
  uint64_t total_consumed() const {
    uint64_t s = 0;
    for (int i = 0; i < nqueues; ++i) s += consumed[i].v.load(std::memory_order_relaxed);
    return s;
  }
};

struct ThreadStats {
  uint64_t n = 0;
  Clock::time_point first{}, last{};
  bool any = false;
  double cpu = 0;
  double wall = 0;
  Clock::time_point start{}, end{};
  std::vector<std::pair<uint64_t, uint64_t>> lat;  // latency: (send ns, delivery - send ns)
};

void producer_main(Shared& s, int idx, uint64_t my_count, ThreadStats& st) {
  const Options& o = *s.o;
  const bool latency = o.scenario == Scenario::Latency;
  try {
    Conn c(o, strf("mqnode-bench producer %d", idx));
    amqp_connection_state_t cs = c.get();
    ConfirmTracker ct;
    ct.confirmed_total = &s.confirmed;
    ct.nacked_total = &s.nacked;
    ConfirmTracker* ctp = nullptr;
    if (o.confirm_window) {
      amqp_confirm_select(cs, 1);
      c.check("confirm.select");
      ctp = &ct;
    }
    std::vector<uint8_t> body(o.size);
    for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<uint8_t>('a' + i % 26);
    const int my_queue = s.spread ? idx % s.nqueues : 0;
    const std::string& routing_key = s.spread ? s.queues[static_cast<size_t>(my_queue)] : s.routing_key;
    std::vector<uint8_t> one = encode_publish(1, s.exchange, routing_key, body, c.frame_max(), o.persistent);
    // latency: the body is one frame at the end of `one` (before frame-end);
    // its first 8 bytes are overwritten with the send time.
    if (latency && o.size + 8 > c.frame_max()) throw BenchError("latency: --size must fit one body frame");
    const size_t ts_off = one.size() - 1 - o.size;
    std::vector<uint8_t> batch;
    if (!o.lib_publisher) {
      batch.reserve(one.size() * static_cast<size_t>(o.batch));
      for (int i = 0; i < o.batch; ++i) batch.insert(batch.end(), one.begin(), one.end());
    }
    amqp_bytes_t ex = amqp_cstring_bytes(s.exchange.c_str());
    amqp_bytes_t rk = amqp_cstring_bytes(routing_key.c_str());
    amqp_bytes_t bodyb{body.size(), body.data()};
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = o.persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT;

    s.producers_ready.fetch_add(1);
    while (!s.go.load()) {
      if (g_abort.load()) return;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const double cpu0 = thread_cpu_seconds();
    st.start = Clock::now();
    const auto deadline = st.start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
    const bool timed = o.count == 0 && !latency;
    const uint64_t max_lag = o.scenario == Scenario::Backlog || latency ? UINT64_MAX : o.max_lag;
    uint64_t mine = 0;
    unsigned loops = 0;
    if (latency) {
      // Fixed rate: message i is due at t0 + i / rate; each is written on its
      // own (no batching) with the current CLOCK_MONOTONIC time in its body.
      const uint64_t total = static_cast<uint64_t>(o.rate * (o.warmup + o.seconds) + 0.5);
      const double period = 1e9 / o.rate;
      const uint64_t t0 = mono_ns() + 1000000;
      s.measure_from_ns.store(t0 + static_cast<uint64_t>(o.warmup * 1e9));
      uint64_t worst = 0;
      while (mine < total && !g_abort.load(std::memory_order_relaxed)) {
        const uint64_t due = t0 + static_cast<uint64_t>(period * static_cast<double>(mine));
        for (;;) {
          const uint64_t now = mono_ns();
          if (now >= due) break;
          if (ctp) {
            c.poll_incoming("producer", &s.blocked_events, ctp, static_cast<int64_t>(due - now));
          } else {
            timespec ts{static_cast<time_t>(due / 1000000000), static_cast<long>(due % 1000000000)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
          }
        }
        if ((++loops & 63) == 0 && !ctp) c.poll_incoming("producer", &s.blocked_events);
        if (ctp && ct.unconfirmed >= o.confirm_window) s.window_full.fetch_add(1, std::memory_order_relaxed);
        while (ctp && ct.unconfirmed >= o.confirm_window && !g_abort.load(std::memory_order_relaxed))
          c.poll_incoming("producer", &s.blocked_events, ctp, 100000000);
        const uint64_t now = mono_ns();
        worst = std::max(worst, now - due);
        memcpy(one.data() + ts_off, &now, sizeof now);
        write_all(c.fd(), one.data(), one.size(), o.timeout);
        if (ctp) {
          ct.published(1);
          c.poll_incoming("producer", &s.blocked_events, ctp);
        }
        ++mine;
        s.published.fetch_add(1, std::memory_order_relaxed);
      }
      s.max_send_lag_ns.store(worst);
    }
    while (!latency && !g_abort.load(std::memory_order_relaxed)) {
      if (timed) {
        if (Clock::now() >= deadline) break;
      } else if (mine >= my_count) {
        break;
      }
      if (ctp) {
        c.poll_incoming("producer", &s.blocked_events, ctp);
        if (ct.unconfirmed >= o.confirm_window) {
          // Window full: wait for confirms (bounded by the watchdog).
          c.poll_incoming("producer", &s.blocked_events, ctp, 100000000);
          continue;
        }
      } else if ((++loops & 15) == 0) {
        c.poll_incoming("producer", &s.blocked_events);
      }
      const uint64_t lag = s.lag();
      if (lag >= max_lag) {
        c.poll_incoming("producer", &s.blocked_events, ctp);
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        continue;
      }
      uint64_t n = std::min<uint64_t>(static_cast<uint64_t>(o.batch), max_lag - lag);
      if (!timed) n = std::min(n, my_count - mine);
      if (ctp) n = std::min<uint64_t>(n, o.confirm_window - ct.unconfirmed);
      if (o.lib_publisher) {
        for (uint64_t i = 0; i < n; ++i) {
          int rc = amqp_basic_publish(cs, 1, ex, rk, 0, 0, &props, bodyb);
          if (rc != AMQP_STATUS_OK) throw BenchError(strf("amqp_basic_publish: %s", amqp_error_string2(rc)));
        }
      } else {
        write_all(c.fd(), batch.data(), one.size() * n, o.timeout);
      }
      if (ctp) ct.published(n);
      mine += n;
      if (s.spread) s.published_q[my_queue].v.fetch_add(n, std::memory_order_relaxed);
      s.published.fetch_add(n, std::memory_order_relaxed);
    }
    // With confirms, publishing ends when the last confirm has arrived.
    while (ctp && ct.unconfirmed > 0 && !g_abort.load(std::memory_order_relaxed))
      c.poll_incoming("producer", &s.blocked_events, ctp, 100000000);
    st.end = Clock::now();
    st.cpu = thread_cpu_seconds() - cpu0;
    st.wall = std::chrono::duration<double>(st.end - st.start).count();
    st.n = mine;
    s.producers_done.fetch_add(1);
    // Make sure the broker had no complaint about what we sent before we
    // stop looking at this connection.
    c.poll_incoming("producer", &s.blocked_events, ctp);
    s.closing.fetch_add(1);
    if (!g_abort.load()) {
      std::string err = c.close();
      if (!err.empty()) throw BenchError("closing: " + err);
    }
  } catch (const std::exception& e) {
    record_error(strf("producer %d: %s", idx, e.what()));
  }
}

struct ConsumerChannel {
  amqp_channel_t ch;
  int queue;
  uint64_t last_tag = 0;
  uint32_t unacked = 0;
};

void consumer_main(Shared& s, int idx, std::vector<int> queue_idx, ThreadStats& st) {
  const Options& o = *s.o;
  const bool latency = o.scenario == Scenario::Latency;
  try {
    Conn c(o, strf("mqnode-bench consumer %d", idx));
    amqp_connection_state_t cs = c.get();
    std::vector<ConsumerChannel> chans;
    for (size_t i = 0; i < queue_idx.size(); ++i) {
      amqp_channel_t ch = static_cast<amqp_channel_t>(i + 1);
      if (ch != 1) c.open_channel(ch);
      amqp_basic_qos(cs, ch, 0, o.prefetch, 0);
      c.check("basic.qos");
      const std::string& q = s.queues[static_cast<size_t>(queue_idx[i])];
      amqp_basic_consume(cs, ch, amqp_cstring_bytes(q.c_str()), amqp_empty_bytes, 0, o.ack_manual ? 0 : 1, 0,
                         amqp_empty_table);
      c.check("basic.consume");
      chans.push_back({ch, queue_idx[i]});
    }
    auto chan_of = [&](amqp_channel_t ch) -> ConsumerChannel& {
      size_t i = static_cast<size_t>(ch) - 1;
      if (i >= chans.size()) throw BenchError(strf("delivery on unknown channel %u", ch));
      return chans[i];
    };
    s.consumers_ready.fetch_add(1);

    // Acks are written once the receive buffer is drained or when this many
    // are pending (a quarter of the prefetch window, so the broker's window
    // never closes waiting for acks sitting in our buffer).
    const size_t ack_flush_at = 21 * (o.prefetch == 0 ? 256 : std::clamp<size_t>(o.prefetch / 4, 1, 256));
    std::vector<uint8_t> acks;
    acks.reserve(ack_flush_at + 64);
    auto flush_acks = [&]() {
      if (!acks.empty()) {
        write_all(c.fd(), acks.data(), acks.size(), o.timeout);
        acks.clear();
      }
    };
    auto ack_outstanding = [&]() {
      if (!o.ack_manual || o.ack_every == 1) return;
      for (auto& cc : chans)
        if (cc.unacked) {
          append_ack(acks, cc.ch, cc.last_tag, true);
          cc.unacked = 0;
        }
    };
    auto done = [&]() {
      if (!s.target_known.load(std::memory_order_acquire)) return false;
      for (int q : queue_idx)
        if (s.consumed[q].v.load(std::memory_order_relaxed) < s.queue_target(q)) return false;
      return true;
    };

    const double cpu0 = thread_cpu_seconds();
    st.start = Clock::now();
    const timeval tmo{0, 100000};
    while (!g_abort.load(std::memory_order_relaxed)) {
      amqp_maybe_release_buffers(cs);
      amqp_envelope_t env;
      timeval tv = tmo;
      amqp_rpc_reply_t r = amqp_consume_message(cs, &env, &tv, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        const auto now = Clock::now();
        if (!st.any) {
          st.first = now;
          st.any = true;
        }
        st.last = now;
        ++st.n;
        ConsumerChannel& cc = chan_of(env.channel);
        const uint64_t tag = env.delivery_tag;
        const size_t body_len = env.message.body.len;
        if (latency && body_len >= 8) {
          const uint64_t recv_ns = mono_ns();
          uint64_t sent_ns;
          memcpy(&sent_ns, env.message.body.bytes, sizeof sent_ns);
          st.lat.emplace_back(sent_ns, recv_ns >= sent_ns ? recv_ns - sent_ns : 0);
        }
        amqp_destroy_envelope(&env);
        if (body_len != o.size)
          throw BenchError(strf("delivery %" PRIu64 " has a %zu-byte body, expected %zu", tag, body_len, o.size));
        if (o.ack_manual) {
          if (o.ack_every == 1) {
            append_ack(acks, cc.ch, tag, false);
          } else {
            cc.last_tag = tag;
            if (++cc.unacked >= o.ack_every) {
              append_ack(acks, cc.ch, tag, true);
              cc.unacked = 0;
            }
          }
        }
        const uint64_t got = s.consumed[cc.queue].v.fetch_add(1, std::memory_order_relaxed) + 1;
        if (s.target_known.load(std::memory_order_relaxed) && got > s.queue_target(cc.queue))
          s.unexpected.fetch_add(1);
        if (acks.size() >= ack_flush_at || (!amqp_data_in_buffer(cs) && amqp_frames_enqueued(cs) == 0)) flush_acks();
        if (done()) break;
        continue;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) {
        ack_outstanding();
        flush_acks();
        if (done()) break;
        continue;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // A method other than basic.deliver arrived.
        amqp_frame_t f;
        timeval tv2 = Conn::to_tv(o.timeout);
        int rc = amqp_simple_wait_frame_noblock(cs, &f, &tv2);
        if (rc != AMQP_STATUS_OK) throw BenchError(strf("connection lost: %s", amqp_error_string2(rc)));
        if (f.frame_type == AMQP_FRAME_METHOD) {
          switch (f.payload.method.id) {
            case AMQP_CHANNEL_CLOSE_METHOD: {
              auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
              throw BenchError(strf("broker closed channel %u: %u %s", f.channel, m->reply_code,
                                    bytes_str(m->reply_text).c_str()));
            }
            case AMQP_CONNECTION_CLOSE_METHOD: {
              auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
              throw BenchError(
                  strf("broker closed the connection: %u %s", m->reply_code, bytes_str(m->reply_text).c_str()));
            }
            case AMQP_BASIC_CANCEL_METHOD:
              throw BenchError("broker cancelled the consumer (basic.cancel)");
            default:
              fprintf(stderr, "mqnode-bench: consumer %d: ignoring unexpected method 0x%08x\n", idx,
                      f.payload.method.id);
          }
        } else {
          fprintf(stderr, "mqnode-bench: consumer %d: ignoring unexpected frame type %u\n", idx, f.frame_type);
        }
        continue;
      }
      throw BenchError(strf("consume: %s", describe_reply(r).c_str()));
    }
    ack_outstanding();
    flush_acks();
    st.end = Clock::now();
    st.cpu = thread_cpu_seconds() - cpu0;
    st.wall = std::chrono::duration<double>(st.end - st.start).count();
    s.closing.fetch_add(1);
    if (!g_abort.load()) {
      std::string err = c.close();
      if (!err.empty()) throw BenchError("closing: " + err);
    }
  } catch (const std::exception& e) {
    record_error(strf("consumer %d: %s", idx, e.what()));
  }
}

std::string json_escape(const std::string& s) {
  std::string r;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') { r += '\\'; r += ch; }
    else if (static_cast<unsigned char>(ch) < 0x20) r += strf("\\u%04x", ch);
    else r += ch;
  }
  return r;
}

std::string run_id() {
  std::random_device rd;
  return strf("%d-%08x", static_cast<int>(getpid()), static_cast<unsigned>(rd()));
}

// Watchdog: returns when all workers finished; aborts on no progress.
template <class FinishedFn, class ProgressFn, class TickFn, class ClosingFn>
void watchdog(const Options& o, FinishedFn finished, ProgressFn progress, TickFn tick, ClosingFn closing) {
  uint64_t last = progress();
  auto last_change = Clock::now();
  bool aborted = false;
  auto abort_time = Clock::now();
  while (!finished()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    tick();
    uint64_t p = progress();
    if (p != last) {
      last = p;
      last_change = Clock::now();
    }
    if (!aborted && secs_since(last_change) > o.timeout + (closing() ? 5 : 0)) {
      if (closing())
        record_error(strf("connections did not close within %.0f s after the run (channel.close-ok / "
                          "connection.close-ok not received?)",
                          o.timeout + 5));
      else
        record_error(strf("no progress for %.0f s (stalled broker?)", o.timeout));
    }
    if (!aborted && g_abort.load()) {
      aborted = true;
      abort_time = Clock::now();
      shutdown_all_fds();
    }
    if (aborted && secs_since(abort_time) > 10) {
      fprintf(stderr, "mqnode-bench: error: %s\nmqnode-bench: worker threads did not stop; exiting\n",
              first_error().c_str());
      fflush(stdout);
      _exit(2);
    }
  }
}

const char* scenario_name(Scenario sc) {
  switch (sc) {
    case Scenario::Fanout: return "fanout";
    case Scenario::Backlog: return "backlog";
    case Scenario::Latency: return "latency";
    default: return "throughput";
  }
}

// Nearest-rank percentile of sorted values.
uint64_t percentile(const std::vector<uint64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(k, 1, v.size()) - 1];
}

int run_flow(const Options& o) {
  const bool fanout = o.scenario == Scenario::Fanout;
  const bool backlog = o.scenario == Scenario::Backlog;
  const bool latency = o.scenario == Scenario::Latency;
  const char* name = scenario_name(o.scenario);
  Shared s;
  s.o = &o;
  const std::string id = run_id();
  s.nqueues = fanout || o.scenario == Scenario::Throughput ? o.queues : 1;
  s.spread = !fanout && s.nqueues > 1;
  for (int i = 0; i < s.nqueues; ++i)
    s.queues.push_back(s.nqueues > 1     ? strf("mqnode-bench-%s-q%d", id.c_str(), i)
                       : o.queue.empty() ? strf("mqnode-bench-%s", id.c_str())
                                         : o.queue);
  if (fanout) {
    s.exchange = strf("mqnode-bench-%s-fx", id.c_str());
  } else {
    s.routing_key = s.queues[0];
  }
  s.consumed.reset(new PaddedCounter[static_cast<size_t>(s.nqueues)]);
  s.published_q.reset(new PaddedCounter[static_cast<size_t>(s.nqueues)]);
  // Spread: how a count splits over the queues is known when the producers are done.
  if (o.count && !s.spread) {
    s.target.store(o.count);
    s.target_known.store(true);
  }
  if (latency) {
    s.target.store(static_cast<uint64_t>(o.rate * (o.warmup + o.seconds) + 0.5));
    s.target_known.store(true);
  }

  // Topology (setup connection stays open to clean up at the end).
  std::unique_ptr<Conn> setup;
  try {
    setup = std::make_unique<Conn>(o, "mqnode-bench setup");
    amqp_connection_state_t cs = setup->get();
    if (fanout) {
      amqp_exchange_declare(cs, 1, amqp_cstring_bytes(s.exchange.c_str()), amqp_cstring_bytes("fanout"), 0, 0, 0, 0,
                            amqp_empty_table);
      setup->check("exchange.declare");
    }
    for (auto& q : s.queues) {
      amqp_queue_declare(cs, 1, amqp_cstring_bytes(q.c_str()), 0, o.persistent ? 1 : 0, 0, 0, amqp_empty_table);
      setup->check("queue.declare");
      if (fanout) {
        amqp_queue_bind(cs, 1, amqp_cstring_bytes(q.c_str()), amqp_cstring_bytes(s.exchange.c_str()), amqp_empty_bytes,
                        amqp_empty_table);
        setup->check("queue.bind");
      }
    }
  } catch (const std::exception& e) {
    fprintf(stderr, "mqnode-bench: error: setup: %s\n", e.what());
    printf("RESULT {\"scenario\":\"%s\",\"ok\":false,\"error\":\"setup: %s\"}\n", name,
           json_escape(e.what()).c_str());
    return 2;
  }

  const int nprod = o.producers;
  const int ncons = fanout ? o.consumer_conns : o.consumers;
  std::vector<ThreadStats> pst(static_cast<size_t>(nprod)), cst(static_cast<size_t>(ncons));
  std::vector<std::thread> threads;
  std::atomic<int> finished{0};
  const double cpu_start = process_cpu_seconds();
  const auto wall_start = Clock::now();

  auto start_consumers = [&]() {
    for (int i = 0; i < ncons; ++i) {
      std::vector<int> qs;
      // Every queue has a consumer: with fewer consumers than queues, one takes
      // several (a channel each); with more, they share queues round-robin.
      if (ncons < s.nqueues) {
        for (int q = i; q < s.nqueues; q += ncons) qs.push_back(q);
      } else {
        qs.push_back(i % s.nqueues);
      }
      threads.emplace_back([&, i, qs]() {
        consumer_main(s, i, qs, cst[static_cast<size_t>(i)]);
        finished.fetch_add(1);
      });
    }
    // Wait until every consumer is subscribed (bounded).
    auto t0 = Clock::now();
    while (s.consumers_ready.load() < ncons && !g_abort.load()) {
      if (secs_since(t0) > o.timeout + 5) {
        record_error("consumers did not become ready in time");
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  auto start_producers = [&]() {
    for (int i = 0; i < nprod; ++i) {
      uint64_t share = 0;
      if (o.count) share = o.count / static_cast<uint64_t>(nprod) + (static_cast<uint64_t>(i) < o.count % static_cast<uint64_t>(nprod) ? 1 : 0);
      threads.emplace_back([&, i, share]() {
        producer_main(s, i, share, pst[static_cast<size_t>(i)]);
        finished.fetch_add(1);
      });
    }
    // Producers connect first; all start publishing together (bounded wait).
    auto t0 = Clock::now();
    while (s.producers_ready.load() < nprod && !g_abort.load()) {
      if (secs_since(t0) > o.timeout + 5) {
        record_error("producers did not become ready in time");
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    s.go.store(true);
  };
  auto progress = [&]() { return s.published.load() + s.total_consumed() + s.confirmed.load(); };
  // Messages in flight (published, not yet consumed), sampled every tick while the
  // producers publish: by Little's law, mean in flight / rate = the mean time a message
  // spends between send() and delivery in a saturated run.
  double lag_sum = 0;
  uint64_t lag_samples = 0;
  auto tick = [&]() {
    if (s.go.load() && s.producers_done.load() < nprod) {
      lag_sum += static_cast<double>(s.lag());
      ++lag_samples;
    }
    // seconds mode: once every producer has stopped, the target is known.
    if (!s.target_known.load() && s.producers_done.load() == nprod) {
      s.target.store(s.published.load());
      s.target_known.store(true, std::memory_order_release);
    }
  };
  Clock::time_point drain_start{};
  double backlog_publish_s = 0;
  if (!backlog) {
    start_consumers();
    start_producers();
  } else {
    // Phase 1: publish the whole backlog (with confirms if asked) while no
    // consumer exists; then hold so the driver can sample the broker.
    start_producers();
    watchdog(
        o, [&]() { return finished.load() == nprod; }, progress, tick, [&]() { return s.closing.load() == nprod; });
    if (!g_abort.load()) {
      backlog_publish_s = secs_since(wall_start);
      printf("BACKLOG_READY %" PRIu64 " messages queued (%" PRIu64 " confirmed) in %.3f s\n", s.published.load(),
             s.confirmed.load(), backlog_publish_s);
      fflush(stdout);
      if (o.hold_stdin) {
        pollfd pfd{0, POLLIN, 0};
        poll(&pfd, 1, 600 * 1000);
      } else {
        std::this_thread::sleep_for(std::chrono::duration<double>(o.hold));
      }
      drain_start = Clock::now();
      start_consumers();
    }
  }
  watchdog(
      o, [&]() { return finished.load() == static_cast<int>(threads.size()); }, progress, tick,
      [&]() { return s.closing.load() == static_cast<int>(threads.size()); });
  for (auto& t : threads) t.join();
  const double wall = secs_since(wall_start);
  const double cpu = process_cpu_seconds() - cpu_start;

  // Cleanup topology.
  if (setup && !g_abort.load()) {
    try {
      amqp_connection_state_t cs = setup->get();
      for (auto& q : s.queues) {
        amqp_queue_delete(cs, 1, amqp_cstring_bytes(q.c_str()), 0, 0);
        setup->check("queue.delete");
      }
      if (fanout) {
        amqp_exchange_delete(cs, 1, amqp_cstring_bytes(s.exchange.c_str()), 0);
        setup->check("exchange.delete");
      }
      std::string cerr = setup->close();
      if (!cerr.empty()) throw BenchError("closing: " + cerr);
    } catch (const std::exception& e) {
      fprintf(stderr, "mqnode-bench: warning: cleanup: %s\n", e.what());
    }
  }
  setup.reset();

  std::string err = first_error();
  if (!err.empty()) {
    fprintf(stderr, "mqnode-bench: error: %s (published %" PRIu64 ", received %" PRIu64 ")\n", err.c_str(),
            s.published.load(), s.total_consumed());
    printf("RESULT {\"scenario\":\"%s\",\"ok\":false,\"error\":\"%s\"}\n", name, json_escape(err).c_str());
    return 2;
  }

  // Aggregate.
  uint64_t published = s.published.load();
  uint64_t received = s.total_consumed();
  Clock::time_point first = Clock::time_point::max(), last = Clock::time_point::min();
  double cons_cpu = 0, cons_wall = 0;
  for (auto& c : cst) {
    if (c.any) {
      first = std::min(first, c.first);
      last = std::max(last, c.last);
    }
    cons_cpu += c.cpu;
    cons_wall = std::max(cons_wall, c.wall);
  }
  Clock::time_point pstart = Clock::time_point::max(), pend = Clock::time_point::min();
  double prod_cpu = 0;
  for (auto& p : pst) {
    pstart = std::min(pstart, p.start);
    pend = std::max(pend, p.end);
    prod_cpu += p.cpu;
  }
  const double span = received > 1 ? std::chrono::duration<double>(last - first).count() : 0;
  const double deliver_rate = span > 0 ? static_cast<double>(received - 1) / span : 0;
  const double pub_wall = std::chrono::duration<double>(pend - pstart).count();
  const double pub_rate = pub_wall > 0 ? static_cast<double>(published) / pub_wall : 0;
  const uint64_t expected = s.spread ? published : published * static_cast<uint64_t>(s.nqueues);
  const double msg_rate = s.spread ? deliver_rate : deliver_rate / s.nqueues;
  const double mean_in_flight = lag_samples ? lag_sum / static_cast<double>(lag_samples) : 0;
  const double littles_wait_us = msg_rate > 0 ? 1e6 * mean_in_flight / msg_rate : 0;
  bool ok = received == expected && s.unexpected.load() == 0;
  if (o.count && published != o.count) ok = false;
  std::string problem;
  if (!ok)
    problem = strf("published %" PRIu64 " x %d queue(s) = %" PRIu64 " expected deliveries, received %" PRIu64,
                   published, s.nqueues, expected, received);
  if (o.confirm_window && (s.nacked.load() != 0 || s.confirmed.load() != published)) {
    if (!problem.empty()) problem += "; ";
    problem += strf("%" PRIu64 " publishes nacked, %" PRIu64 " of %" PRIu64 " confirmed", s.nacked.load(),
                    s.confirmed.load(), published);
    ok = false;
  }

  // Extra RESULT fields: persistence/confirms, backlog phases, latency.
  std::string extra = strf("\"persistent\":%s,\"confirm_window\":%u,\"confirmed\":%" PRIu64 ",\"nacked\":%" PRIu64 ",",
                           o.persistent ? "true" : "false", o.confirm_window, s.confirmed.load(), s.nacked.load());
  if (backlog) {
    const double drain_s = received > 0 ? std::chrono::duration<double>(last - drain_start).count() : 0;
    const double drain_rate = drain_s > 0 ? static_cast<double>(received) / drain_s : 0;
    extra += strf("\"backlog_publish_seconds\":%.6f,\"drain_seconds\":%.6f,\"drain_rate\":%.1f,", backlog_publish_s,
                  drain_s, drain_rate);
  }
  if (latency) {
    const uint64_t from = s.measure_from_ns.load();
    std::vector<uint64_t> lat;
    for (auto& c : cst)
      for (auto& [sent, l] : c.lat)
        if (sent >= from) lat.push_back(l);
    std::sort(lat.begin(), lat.end());
    double mean = 0;
    for (uint64_t l : lat) mean += static_cast<double>(l);
    if (!lat.empty()) mean /= static_cast<double>(lat.size());
    auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    const double achieved = o.seconds > 0 ? static_cast<double>(lat.size()) / o.seconds : 0;
    printf("latency         %zu samples after %.1f s warm-up at %.0f msg/s: p50 %.1f us, p99 %.1f us, p99.9 %.1f us, "
           "max %.1f us, mean %.1f us (producer worst lateness %.1f us, %" PRIu64 " sends waited for a full confirm "
           "window)\n",
           lat.size(), o.warmup, o.rate, us(percentile(lat, 0.50)), us(percentile(lat, 0.99)),
           us(percentile(lat, 0.999)), us(lat.empty() ? 0 : lat.back()), mean / 1000.0, us(s.max_send_lag_ns.load()),
           s.window_full.load());
    extra += strf("\"rate\":%.1f,\"warmup\":%.3f,\"lat_samples\":%zu,\"lat_rate\":%.1f,\"lat_p50_us\":%.1f,"
                  "\"lat_p90_us\":%.1f,\"lat_p99_us\":%.1f,\"lat_p999_us\":%.1f,\"lat_max_us\":%.1f,"
                  "\"lat_mean_us\":%.1f,\"max_send_lag_us\":%.1f,\"window_full_waits\":%" PRIu64 ",",
                  o.rate, o.warmup, lat.size(), achieved, us(percentile(lat, 0.50)), us(percentile(lat, 0.90)),
                  us(percentile(lat, 0.99)), us(percentile(lat, 0.999)), us(lat.empty() ? 0 : lat.back()),
                  mean / 1000.0, us(s.max_send_lag_ns.load()), s.window_full.load());
    if (lat.empty()) {
      ok = false;
      if (!problem.empty()) problem += "; ";
      problem += "no latency samples";
    }
  }

  printf("scenario        %s (%s ack, %zu-byte bodies, %d producer(s), %d consumer connection(s)%s, prefetch %u, "
         "max-lag %" PRIu64 ", publisher %s%s%s)\n",
         name, o.ack_manual ? (o.ack_every == 1 ? "manual/each" : "manual/multiple") : "no", o.size, nprod, ncons,
         s.nqueues > 1 ? strf(", %d queues", s.nqueues).c_str() : "", o.prefetch, o.max_lag,
         o.lib_publisher ? "lib" : strf("batch %d per send()", o.batch).c_str(), o.persistent ? ", persistent/durable" : "",
         o.confirm_window ? strf(", confirm window %u", o.confirm_window).c_str() : "");
  if (o.confirm_window)
    printf("confirms        %" PRIu64 " acked/nacked, %" PRIu64 " nacked\n", s.confirmed.load(), s.nacked.load());
  if (backlog)
    printf("backlog         published+confirmed in %.3f s, drained (consumer start to last delivery) in %.3f s\n",
           backlog_publish_s, received > 0 ? std::chrono::duration<double>(last - drain_start).count() : 0.0);
  printf("published       %" PRIu64 " msgs in %.3f s = %.0f msgs/s\n", published, pub_wall, pub_rate);
  printf("received        %" PRIu64 " deliveries, first-to-last %.3f s\n", received, span);
  if (fanout) {
    printf("deliveries/s    %.0f (total over %d queues)\n", deliver_rate, s.nqueues);
    printf("msgs/s          %.0f (deliveries/s / queues)\n", deliver_rate / s.nqueues);
  } else {
    printf("msgs/s          %.0f (consumer side%s)\n", deliver_rate, s.spread ? ", all queues" : "");
  }
  printf("in flight       %.0f messages on average while publishing = %.0f us mean send-to-delivery (Little's "
         "law)\n", mean_in_flight, littles_wait_us);
  printf("bench cpu       process %.0f%% of one core; producers %.0f%% of their wall time, consumers %.0f%% (sum "
         "over threads)\n",
         wall > 0 ? 100 * cpu / wall : 0, pub_wall > 0 ? 100 * prod_cpu / pub_wall : 0,
         cons_wall > 0 ? 100 * cons_cpu / cons_wall : 0);
  if (s.blocked_events.load()) printf("note            broker sent connection.blocked %" PRIu64 " time(s)\n", s.blocked_events.load());
  if (!ok) printf("ERROR           %s\n", problem.c_str());
  else printf("status          OK (published == received)\n");
  printf("RESULT {\"scenario\":\"%s\",\"ok\":%s,%s\"size\":%zu,\"ack\":\"%s\",\"ack_every\":%u,\"prefetch\":%u,"
         "\"producers\":%d,\"consumers\":%d,\"queues\":%d,\"max_lag\":%" PRIu64 ",\"publisher\":\"%s\",\"batch\":%d,"
         "\"published\":%" PRIu64 ",\"received\":%" PRIu64 ",\"publish_seconds\":%.6f,\"publish_rate\":%.1f,"
         "\"deliver_seconds\":%.6f,\"deliveries_per_sec\":%.1f,\"msgs_per_sec\":%.1f,\"bench_cpu_pct\":%.1f,"
         "\"producer_cpu_pct\":%.1f,\"consumer_cpu_pct\":%.1f,\"blocked_events\":%" PRIu64 ",\"mean_in_flight\":%.1f,"
         "\"littles_wait_us\":%.1f,%s\"tag\":\"%s\"}\n",
         name, ok ? "true" : "false", ok ? "" : strf("\"error\":\"%s\",", json_escape(problem).c_str()).c_str(), o.size,
         o.ack_manual ? "manual" : "none", o.ack_every, o.prefetch, nprod, ncons, s.nqueues, o.max_lag,
         o.lib_publisher ? "lib" : "batch", o.lib_publisher ? 1 : o.batch, published, received, pub_wall, pub_rate,
         span, deliver_rate, msg_rate, wall > 0 ? 100 * cpu / wall : 0, pub_wall > 0 ? 100 * prod_cpu / pub_wall : 0,
         cons_wall > 0 ? 100 * cons_cpu / cons_wall : 0, s.blocked_events.load(), mean_in_flight, littles_wait_us,
         extra.c_str(),
         json_escape(o.tag).c_str());
  fflush(stdout);
  return ok ? 0 : 1;
}

// ---------------------------------------------------------------------------
// idle

int run_idle(const Options& o) {
  const int n = o.connections;
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t want = static_cast<rlim_t>(n) + 256;
  if (rl.rlim_cur < want) {
    rlimit nrl = rl;
    nrl.rlim_cur = std::min(want, rl.rlim_max);
    if (setrlimit(RLIMIT_NOFILE, &nrl) != 0 || nrl.rlim_cur < want) {
      fprintf(stderr, "mqnode-bench: error: need RLIMIT_NOFILE >= %llu for %d connections (hard limit %llu)\n",
              static_cast<unsigned long long>(want), n, static_cast<unsigned long long>(rl.rlim_max));
      return 2;
    }
  }

  std::vector<std::unique_ptr<Conn>> conns(static_cast<size_t>(n));
  std::atomic<int> opened{0}, next{0};
  const auto t0 = Clock::now();
  {
    std::vector<std::thread> th;
    for (int t = 0; t < std::min(o.threads, n); ++t)
      th.emplace_back([&]() {
        for (;;) {
          int i = next.fetch_add(1);
          if (i >= n || g_abort.load()) return;
          try {
            conns[static_cast<size_t>(i)] = std::make_unique<Conn>(o, strf("mqnode-bench idle %d", i));
            opened.fetch_add(1);
          } catch (const std::exception& e) {
            record_error(strf("connection %d of %d: %s", i + 1, n, e.what()));
            return;
          }
        }
      });
    for (auto& t : th) t.join();
  }
  const double open_s = secs_since(t0);
  if (g_abort.load()) {
    std::string err = first_error();
    fprintf(stderr, "mqnode-bench: error: %s (%d of %d connections opened)\n", err.c_str(), opened.load(), n);
    printf("RESULT {\"scenario\":\"idle\",\"ok\":false,\"connections\":%d,\"opened\":%d,\"error\":\"%s\"}\n", n,
           opened.load(), json_escape(err).c_str());
    return 2;
  }
  printf("IDLE_READY %d connections open in %.3f s (%.0f conn/s)\n", n, open_s, n / open_s);
  fflush(stdout);

  if (o.hold_stdin) {
    // Hold until the driver writes a line or closes stdin (capped at 10 min).
    pollfd pfd{0, POLLIN, 0};
    poll(&pfd, 1, 600 * 1000);
  } else {
    std::this_thread::sleep_for(std::chrono::duration<double>(o.hold));
  }

  // Liveness: a connection the broker closed (or that got a connection.close)
  // counts as dead; other frames (e.g. connection.blocked) are fine.
  int alive = 0;
  std::string first_dead;
  for (int i = 0; i < n; ++i) {
    try {
      conns[static_cast<size_t>(i)]->poll_incoming("idle connection", nullptr);
      ++alive;
    } catch (const std::exception& e) {
      if (first_dead.empty()) first_dead = strf("connection %d: %s", i + 1, e.what());
    }
  }
  std::atomic<int> closed_ok{0};
  std::mutex close_err_mu;
  std::string first_close_err;
  next.store(0);
  const auto t1 = Clock::now();
  // The whole close phase is bounded: each close waits at most 5 s per step,
  // and once the phase has taken longer than --timeout the rest are dropped
  // without a handshake (and count as not closed cleanly).
  {
    std::vector<std::thread> th;
    for (int t = 0; t < std::min(o.threads, n); ++t)
      th.emplace_back([&]() {
        for (;;) {
          int i = next.fetch_add(1);
          if (i >= n) return;
          std::string err = secs_since(t1) > o.timeout ? std::string("close phase took longer than --timeout; "
                                                                     "dropped without close handshake")
                                                       : conns[static_cast<size_t>(i)]->close(std::min(5.0, o.timeout));
          if (err.empty()) {
            closed_ok.fetch_add(1);
          } else {
            std::lock_guard lk(close_err_mu);
            if (first_close_err.empty()) first_close_err = strf("connection %d: %s", i + 1, err.c_str());
          }
          conns[static_cast<size_t>(i)].reset();
        }
      });
    for (auto& t : th) t.join();
  }
  const double close_s = secs_since(t1);
  const bool ok = alive == n && closed_ok.load() == n;
  printf("idle            %d connections (1 channel each): opened in %.3f s, alive after hold %d, closed cleanly %d "
         "in %.3f s\n",
         n, open_s, alive, closed_ok.load(), close_s);
  if (!first_dead.empty()) printf("first dead      %s\n", first_dead.c_str());
  if (!first_close_err.empty()) printf("close failed    %s\n", first_close_err.c_str());
  printf("status          %s\n", ok ? "OK" : "ERROR");
  std::string problem = !first_dead.empty() ? first_dead : first_close_err;
  printf("RESULT {\"scenario\":\"idle\",\"ok\":%s,%s\"connections\":%d,\"opened\":%d,\"alive\":%d,"
         "\"closed_ok\":%d,\"open_seconds\":%.6f,\"close_seconds\":%.6f,\"tag\":\"%s\"}\n",
         ok ? "true" : "false", ok ? "" : strf("\"error\":\"%s\",", json_escape(problem).c_str()).c_str(), n,
         opened.load(), alive, closed_ok.load(), open_s, close_s, json_escape(o.tag).c_str());
  fflush(stdout);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  Options o = parse_args(argc, argv);
  try {
    if (o.scenario == Scenario::FakeBroker) return run_fake_broker(o.port, o.seconds);
    if (o.scenario == Scenario::Idle) return run_idle(o);
    return run_flow(o);
  } catch (const std::exception& e) {
    fprintf(stderr, "mqnode-bench: error: %s\n", e.what());
    return 2;
  }
}
