// fake-broker: a minimal AMQP 0-9-1 "broker" used only to measure how fast
// mqnode-bench itself can go (its ceiling), so that we know the generator is
// not the bottleneck when it drives mqnode or RabbitMQ.
//
// It implements just enough of the protocol for `mqnode-bench throughput`
// (one logical queue): handshake, channel.open, queue.declare/delete,
// basic.qos/consume/publish/ack, channel/connection.close. Every queue name
// maps to the same message counter; message bodies are not stored, deliveries
// carry a zero-filled body of the size last published. One thread per
// connection, non-blocking sockets, frames parsed in place.

#include "fake_broker.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<uint64_t> g_available{0};   // published, not yet delivered
std::atomic<uint64_t> g_published{0};
std::atomic<uint64_t> g_delivered{0};
std::atomic<uint64_t> g_acked{0};
std::atomic<uint64_t> g_body_size{0};
std::atomic<bool> g_stop{false};

// Fault injection for testing mqnode-bench's failure handling, from the
// environment variable MQNODE_FAKE_BROKER_FAULT:
//   no-close-ok      never answer channel.close / connection.close
//   stop-after=N     stop delivering after N deliveries (per process)
//   close-channel    answer the first basic.publish with channel.close 406
struct Faults {
  bool no_close_ok = false;
  uint64_t stop_after = 0;
  bool close_channel = false;
};
Faults g_faults;

void parse_faults() {
  const char* f = getenv("MQNODE_FAKE_BROKER_FAULT");
  if (!f) return;
  std::string v = f;
  if (v == "no-close-ok") g_faults.no_close_ok = true;
  else if (v.rfind("stop-after=", 0) == 0) g_faults.stop_after = std::stoull(v.substr(11));
  else if (v == "close-channel") g_faults.close_channel = true;
  else fprintf(stderr, "fake-broker: unknown fault '%s'\n", f);
  fprintf(stderr, "fake-broker: fault injection: %s\n", f);
}

void on_signal(int) { g_stop.store(true); }

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t rd32(const uint8_t* p) { return static_cast<uint32_t>(rd16(p)) << 16 | rd16(p + 2); }
uint64_t rd64(const uint8_t* p) { return static_cast<uint64_t>(rd32(p)) << 32 | rd32(p + 4); }

struct Out {
  std::vector<uint8_t> b;
  void u8(uint8_t v) { b.push_back(v); }
  void u16(uint16_t v) { u8(static_cast<uint8_t>(v >> 8)); u8(static_cast<uint8_t>(v)); }
  void u32(uint32_t v) { u16(static_cast<uint16_t>(v >> 16)); u16(static_cast<uint16_t>(v)); }
  void u64(uint64_t v) { u32(static_cast<uint32_t>(v >> 32)); u32(static_cast<uint32_t>(v)); }
  void sstr(const std::string& s) { u8(static_cast<uint8_t>(s.size())); b.insert(b.end(), s.begin(), s.end()); }
  void lstr(const std::string& s) { u32(static_cast<uint32_t>(s.size())); b.insert(b.end(), s.begin(), s.end()); }
  // Starts a frame; returns the offset of the size field.
  size_t begin(uint8_t type, uint16_t ch) { u8(type); u16(ch); size_t at = b.size(); u32(0); return at; }
  void end(size_t at) {
    uint32_t n = static_cast<uint32_t>(b.size() - at - 4);
    b[at] = static_cast<uint8_t>(n >> 24); b[at + 1] = static_cast<uint8_t>(n >> 16);
    b[at + 2] = static_cast<uint8_t>(n >> 8); b[at + 3] = static_cast<uint8_t>(n);
    u8(0xCE);
  }
  void method(uint16_t ch, uint16_t cls, uint16_t m, const std::vector<uint8_t>& args = {}) {
    size_t at = begin(1, ch);
    u16(cls); u16(m);
    b.insert(b.end(), args.begin(), args.end());
    end(at);
  }
};

std::string sstr_at(const uint8_t* p, size_t n, size_t off) {
  if (off >= n) return {};
  size_t len = p[off];
  if (off + 1 + len > n) return {};
  return std::string(reinterpret_cast<const char*>(p + off + 1), len);
}

class Session {
 public:
  explicit Session(int fd) : fd_(fd) {}

  void run() {
    std::vector<uint8_t> in;
    in.reserve(1 << 18);
    size_t in_off = 0;
    bool got_header = false;
    uint8_t tmp[1 << 16];
    while (!g_stop.load(std::memory_order_relaxed) && !closing_done_) {
      fill_deliveries();
      pollfd pfd{fd_, static_cast<short>(POLLIN | (out_.b.size() > out_off_ ? POLLOUT : 0)), 0};
      int pr = poll(&pfd, 1, consuming_ && window_open() ? 1 : 20);
      if (pr < 0 && errno != EINTR) break;
      if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL) && !(pfd.revents & POLLIN)) break;
      if (pfd.revents & POLLIN) {
        ssize_t r = recv(fd_, tmp, sizeof tmp, 0);
        if (r == 0) break;
        if (r < 0) {
          if (errno == EAGAIN || errno == EINTR) continue;
          break;
        }
        in.insert(in.end(), tmp, tmp + r);
        if (!got_header) {
          if (in.size() < 8) continue;
          if (memcmp(in.data(), "AMQP\x00\x00\x09\x01", 8) != 0) break;
          in_off = 8;
          got_header = true;
          send_start();
        }
        while (in.size() - in_off >= 8) {
          const uint8_t* f = in.data() + in_off;
          uint32_t size = rd32(f + 3);
          if (in.size() - in_off < size + 8) break;
          handle(f[0], rd16(f + 1), f + 7, size);
          in_off += size + 8;
        }
        if (in_off > (1 << 17) || in_off == in.size()) {
          in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(in_off));
          in_off = 0;
        }
      }
      if (!flush()) break;
      if (closing_ && out_off_ == out_.b.size()) closing_done_ = true;
    }
    close(fd_);
  }

 private:
  bool window_open() const { return no_ack_ || prefetch_ == 0 || outstanding_ < prefetch_; }

  void send_start() {
    size_t at = out_.begin(1, 0);
    out_.u16(10); out_.u16(10);
    out_.u8(0); out_.u8(9);
    out_.u32(0);  // server-properties: empty table
    out_.lstr("PLAIN");
    out_.lstr("en_US");
    out_.end(at);
  }

  void handle(uint8_t type, uint16_t ch, const uint8_t* p, uint32_t n) {
    if (type == 2) {  // content header of a publish
      if (n >= 12) g_body_size.store(rd64(p + 4), std::memory_order_relaxed);
      return;
    }
    if (type != 1 || n < 4) return;  // bodies and heartbeats are ignored
    const uint16_t cls = rd16(p), m = rd16(p + 2);
    const uint8_t* a = p + 4;
    const size_t an = n - 4;
    switch (cls << 16 | m) {
      case 10 << 16 | 11: {  // start-ok -> tune
        size_t at = out_.begin(1, 0);
        out_.u16(10); out_.u16(30);
        out_.u16(2047); out_.u32(131072); out_.u16(0);
        out_.end(at);
        break;
      }
      case 10 << 16 | 31:  // tune-ok
        break;
      case 10 << 16 | 40:  // connection.open -> open-ok
        out_.method(0, 10, 41, {0});
        break;
      case 10 << 16 | 50:  // connection.close -> close-ok
        if (g_faults.no_close_ok) break;
        out_.method(0, 10, 51);
        closing_ = true;
        break;
      case 20 << 16 | 10:  // channel.open -> open-ok
        out_.method(ch, 20, 11, {0, 0, 0, 0});
        break;
      case 20 << 16 | 40:  // channel.close -> close-ok
        if (ch == consume_ch_) consuming_ = false;
        if (g_faults.no_close_ok) break;
        out_.method(ch, 20, 41);
        break;
      case 40 << 16 | 10:  // exchange.declare
        out_.method(ch, 40, 11);
        break;
      case 40 << 16 | 20:  // exchange.delete
        out_.method(ch, 40, 21);
        break;
      case 50 << 16 | 10: {  // queue.declare -> declare-ok
        std::string q = sstr_at(a, an, 2);
        Out o;
        o.sstr(q.empty() ? "fake-q" : q);
        o.u32(0);
        o.u32(0);
        out_.method(ch, 50, 11, o.b);
        break;
      }
      case 50 << 16 | 20:  // queue.bind
        out_.method(ch, 50, 21);
        break;
      case 50 << 16 | 40:  // queue.delete
        out_.method(ch, 50, 41, {0, 0, 0, 0});
        break;
      case 60 << 16 | 10:  // basic.qos
        if (an >= 6) prefetch_ = rd16(a + 4);
        out_.method(ch, 60, 11);
        break;
      case 60 << 16 | 20: {  // basic.consume: ticket, queue, tag, bits
        size_t off = 2;
        std::string q = sstr_at(a, an, off);
        off += 1 + q.size();
        tag_ = sstr_at(a, an, off);
        off += 1 + tag_.size();
        if (tag_.empty()) tag_ = "fake-ctag";
        no_ack_ = off < an && (a[off] & 0x02);
        Out o;
        o.sstr(tag_);
        out_.method(ch, 60, 21, o.b);
        consuming_ = true;
        consume_ch_ = ch;
        build_delivery_template();
        break;
      }
      case 60 << 16 | 40:  // basic.publish
        if (g_faults.close_channel) {
          Out o;
          o.u16(406);
          o.sstr("PRECONDITION_FAILED - injected fault");
          o.u16(60);
          o.u16(40);
          out_.method(ch, 20, 40, o.b);
          g_faults.close_channel = false;
        }
        g_published.fetch_add(1, std::memory_order_relaxed);
        g_available.fetch_add(1, std::memory_order_release);
        break;
      case 60 << 16 | 80: {  // basic.ack
        if (an < 9) break;
        uint64_t tag = rd64(a);
        bool multiple = a[8] & 1;
        uint64_t n_acked = multiple ? (tag > acked_upto_ ? tag - acked_upto_ : 0) : 1;
        if (multiple) acked_upto_ = std::max(acked_upto_, tag);
        else if (tag == acked_upto_ + 1) acked_upto_ = tag;
        outstanding_ -= std::min(outstanding_, n_acked);
        g_acked.fetch_add(n_acked, std::memory_order_relaxed);
        break;
      }
      default:
        fprintf(stderr, "fake-broker: ignoring method %u.%u\n", cls, m);
    }
  }

  void build_delivery_template() {
    body_size_ = g_body_size.load();
    Out o;
    size_t at = o.begin(1, consume_ch_);
    o.u16(60); o.u16(60);
    o.sstr(tag_);
    tag_off_ = o.b.size();
    o.u64(0);  // delivery tag, patched per message
    o.u8(0);
    o.sstr("");
    o.sstr("fake-q");
    o.end(at);
    at = o.begin(2, consume_ch_);
    o.u16(60); o.u16(0); o.u64(body_size_); o.u16(0);
    o.end(at);
    if (body_size_ > 0) {
      at = o.begin(3, consume_ch_);
      o.b.resize(o.b.size() + body_size_, 0);
      o.end(at);
    }
    template_ = std::move(o.b);
  }

  void fill_deliveries() {
    if (!consuming_) return;
    while (window_open() && out_.b.size() - out_off_ < (1 << 18)) {
      uint64_t avail = g_available.load(std::memory_order_acquire);
      uint64_t room = no_ack_ || prefetch_ == 0 ? 256 : prefetch_ - outstanding_;
      uint64_t take = std::min<uint64_t>({avail, room, 256});
      if (g_faults.stop_after) {
        uint64_t d = g_delivered.load();
        take = d >= g_faults.stop_after ? 0 : std::min(take, g_faults.stop_after - d);
      }
      if (take == 0) return;
      if (!g_available.compare_exchange_weak(avail, avail - take)) continue;
      if (g_body_size.load(std::memory_order_relaxed) != body_size_) build_delivery_template();
      for (uint64_t i = 0; i < take; ++i) {
        uint64_t t = ++next_tag_;
        size_t base = out_.b.size();
        out_.b.insert(out_.b.end(), template_.begin(), template_.end());
        for (int k = 0; k < 8; ++k) out_.b[base + tag_off_ + static_cast<size_t>(k)] = static_cast<uint8_t>(t >> (56 - 8 * k));
      }
      if (!no_ack_) outstanding_ += take;
      g_delivered.fetch_add(take, std::memory_order_relaxed);
    }
  }

  bool flush() {
    while (out_off_ < out_.b.size()) {
      ssize_t r = send(fd_, out_.b.data() + out_off_, out_.b.size() - out_off_, MSG_NOSIGNAL);
      if (r > 0) { out_off_ += static_cast<size_t>(r); continue; }
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (r < 0 && errno == EINTR) continue;
      return false;
    }
    if (out_off_ == out_.b.size()) { out_.b.clear(); out_off_ = 0; }
    else if (out_off_ > (1 << 18)) { out_.b.erase(out_.b.begin(), out_.b.begin() + static_cast<std::ptrdiff_t>(out_off_)); out_off_ = 0; }
    return true;
  }

  int fd_;
  Out out_;
  size_t out_off_ = 0;
  bool closing_ = false, closing_done_ = false;
  bool consuming_ = false, no_ack_ = false;
  uint16_t consume_ch_ = 0, prefetch_ = 0;
  std::string tag_;
  uint64_t next_tag_ = 0, acked_upto_ = 0, outstanding_ = 0, body_size_ = 0;
  size_t tag_off_ = 0;
  std::vector<uint8_t> template_;
};

}  // namespace

int run_fake_broker(int port, double seconds) {
  parse_faults();
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(ls, 1024) != 0) {
    fprintf(stderr, "fake-broker: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
    return 2;
  }
  printf("fake-broker listening on 127.0.0.1:%d (Ctrl-C to stop)\n", port);
  fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  while (!g_stop.load()) {
    if (seconds > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) break;
    pollfd pfd{ls, POLLIN, 0};
    if (poll(&pfd, 1, 200) <= 0) continue;
    int fd = accept4(ls, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::thread([fd]() { Session(fd).run(); }).detach();
  }
  close(ls);
  printf("fake-broker: published %llu, delivered %llu, acked %llu\n",
         static_cast<unsigned long long>(g_published.load()), static_cast<unsigned long long>(g_delivered.load()),
         static_cast<unsigned long long>(g_acked.load()));
  return 0;
}
