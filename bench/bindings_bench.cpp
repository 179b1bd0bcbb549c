// mqnode-bindings-bench: what a broker's costs do as bindings grow (issue 10). One client,
// one channel, synchronous RPCs as an application declaring its queues would make them:
//   1. queue.declare + queue.bind for --queues N queues (timed: declare+bind rate);
//   2. prints DECLARED and, with --hold-stdin, waits for a line so the caller can sample
//      the broker's RSS with N queues and their bindings;
//   3. with --publish-seconds S > 0: publishes 16-byte messages to the exchange with
//      publisher confirms (at most --confirm-window unconfirmed) for S seconds or
//      --publish-count messages, whichever comes first (timed up to the last confirm);
//   4. queue.delete of every declared queue (timed: delete rate).
// --phase-limit S stops the declare and delete phases after S seconds (for a broker that
// would take too long) and reports how far they got. Ends with one line "RESULT {json}".
// See bench/README.md, "Bindings".

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Options {
  std::string host = "127.0.0.1";
  int port = 5672;
  long queues = 1000;
  std::string exchange = "amq.topic";
  double publish_seconds = 0;
  long publish_count = 1000000;
  long confirm_window = 1000;
  double phase_limit = 0;  // 0 = none
  bool hold_stdin = false;
  std::string prefix = "bb";
};

[[noreturn]] void usage() {
  fprintf(stderr,
          "usage: mqnode-bindings-bench [--host H] [--port N] [--queues N] [--exchange amq.topic|amq.direct]\n"
          "       [--publish-seconds S] [--publish-count N] [--confirm-window W] [--phase-limit S]\n"
          "       [--hold-stdin] [--prefix P]\n");
  exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--host") o.host = value();
    else if (a == "--port") o.port = std::stoi(value());
    else if (a == "--queues") o.queues = std::stol(value());
    else if (a == "--exchange") o.exchange = value();
    else if (a == "--publish-seconds") o.publish_seconds = std::stod(value());
    else if (a == "--publish-count") o.publish_count = std::stol(value());
    else if (a == "--confirm-window") o.confirm_window = std::stol(value());
    else if (a == "--phase-limit") o.phase_limit = std::stod(value());
    else if (a == "--hold-stdin") o.hold_stdin = true;
    else if (a == "--prefix") o.prefix = value();
    else usage();
  }
  if (o.exchange != "amq.topic" && o.exchange != "amq.direct") usage();
  return o;
}

// Topic patterns of four shapes, so literal, '*' and '#' branches are all populated and a
// key "t.A.B" matches about one binding of N (see publish_key).
std::string binding_key(const Options& o, long i) {
  if (o.exchange == "amq.direct") return o.prefix + "-" + std::to_string(i);
  std::string n = std::to_string(i);
  switch (i % 4) {
    case 0: return "t." + n + ".*";
    case 1: return "t.*." + n;
    case 2: return "t." + n + ".#";
    default: return "#." + n;
  }
}

std::string publish_key(const Options& o, std::mt19937_64& rng) {
  std::uniform_int_distribution<long> pick(0, o.queues - 1);
  if (o.exchange == "amq.direct") return o.prefix + "-" + std::to_string(pick(rng));
  return "t." + std::to_string(pick(rng)) + "." + std::to_string(pick(rng));
}

class Client {
 public:
  explicit Client(const Options& o) : conn_(amqp_new_connection()) {
    amqp_socket_t* sock = amqp_tcp_socket_new(conn_);
    if (!sock || amqp_socket_open(sock, o.host.c_str(), o.port) != AMQP_STATUS_OK)
      throw std::runtime_error("cannot connect to " + o.host + ":" + std::to_string(o.port));
    ok(amqp_login(conn_, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login");
    amqp_channel_open(conn_, 1);
    ok(amqp_get_rpc_reply(conn_), "channel.open");
  }
  ~Client() {
    amqp_channel_close(conn_, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void declare_and_bind(const std::string& queue, const std::string& exchange, const std::string& key) {
    amqp_queue_declare(conn_, 1, amqp_cstring_bytes(queue.c_str()), 0, 0, 0, 0, amqp_empty_table);
    ok(amqp_get_rpc_reply(conn_), "queue.declare");
    amqp_queue_bind(conn_, 1, amqp_cstring_bytes(queue.c_str()), amqp_cstring_bytes(exchange.c_str()),
                    amqp_cstring_bytes(key.c_str()), amqp_empty_table);
    ok(amqp_get_rpc_reply(conn_), "queue.bind");
  }

  void delete_queue(const std::string& queue) {
    amqp_queue_delete(conn_, 1, amqp_cstring_bytes(queue.c_str()), 0, 0);
    ok(amqp_get_rpc_reply(conn_), "queue.delete");
  }

  // Publishes for <seconds> or <count> messages with at most <window> unconfirmed; returns
  // how many were confirmed. Every confirm must be an ack.
  long publish_confirmed(const Options& o, double seconds) {
    amqp_confirm_select(conn_, 1);
    ok(amqp_get_rpc_reply(conn_), "confirm.select");
    std::mt19937_64 rng(42);
    const char body[16] = "0123456789abcde";
    amqp_bytes_t payload{sizeof body, const_cast<char*>(body)};
    amqp_basic_properties_t props{};
    auto t0 = Clock::now();
    long sent = 0;
    while (sent < o.publish_count && since(t0) < seconds) {
      while (sent - confirmed_ >= o.confirm_window) read_confirm();
      std::string key = publish_key(o, rng);
      if (amqp_basic_publish(conn_, 1, amqp_cstring_bytes(o.exchange.c_str()), amqp_cstring_bytes(key.c_str()), 0, 0,
                             &props, payload) != AMQP_STATUS_OK)
        throw std::runtime_error("basic.publish failed");
      ++sent;
    }
    while (confirmed_ < sent) read_confirm();
    return sent;
  }

 private:
  void read_confirm() {
    amqp_frame_t f;
    timeval tv{30, 0};
    if (amqp_simple_wait_frame_noblock(conn_, &f, &tv) != AMQP_STATUS_OK) throw std::runtime_error("no confirm in 30 s");
    if (f.frame_type != AMQP_FRAME_METHOD) return;
    if (f.payload.method.id != AMQP_BASIC_ACK_METHOD)
      throw std::runtime_error("unexpected method " + std::to_string(f.payload.method.id) + " (nack or close)");
    // One channel, transient messages: both brokers confirm in publish order, so the
    // latest tag (multiple or not) is the number confirmed.
    confirmed_ = static_cast<long>(static_cast<amqp_basic_ack_t*>(f.payload.method.decoded)->delivery_tag);
    amqp_maybe_release_buffers(conn_);
  }

  static void ok(amqp_rpc_reply_t r, const char* what) {
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return;
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) throw std::runtime_error(std::string(what) + ": server closed");
    throw std::runtime_error(std::string(what) + ": " + amqp_error_string2(r.library_error));
  }

  amqp_connection_state_t conn_;
  long confirmed_ = 0;
};

bool within(const Options& o, Clock::time_point t0) { return o.phase_limit <= 0 || since(t0) < o.phase_limit; }

int run(const Options& o) {
  Client c(o);
  auto t0 = Clock::now();
  long declared = 0;
  for (; declared < o.queues && within(o, t0); ++declared)
    c.declare_and_bind(o.prefix + "-" + std::to_string(declared), o.exchange, binding_key(o, declared));
  double declare_s = since(t0);
  printf("declared+bound %ld of %ld queues in %.2f s: %.0f/s\n", declared, o.queues, declare_s, declared / declare_s);
  printf("DECLARED\n");
  fflush(stdout);
  if (o.hold_stdin) {
    std::string line;
    std::getline(std::cin, line);
  }

  long published = 0;
  double publish_s = 0;
  if (o.publish_seconds > 0) {
    auto tp = Clock::now();
    published = c.publish_confirmed(o, o.publish_seconds);
    publish_s = since(tp);
    printf("published %ld with confirms in %.2f s: %.0f msg/s\n", published, publish_s, published / publish_s);
  }

  auto td = Clock::now();
  long deleted = 0;
  for (; deleted < declared && within(o, td); ++deleted) c.delete_queue(o.prefix + "-" + std::to_string(deleted));
  double delete_s = since(td);
  printf("deleted %ld of %ld queues in %.2f s: %.0f/s\n", deleted, declared, delete_s, deleted / delete_s);
  printf("RESULT {\"queues\": %ld, \"declared\": %ld, \"declare_seconds\": %.3f, \"declare_rate\": %.1f, "
         "\"published\": %ld, \"publish_seconds\": %.3f, \"publish_rate\": %.1f, "
         "\"deleted\": %ld, \"delete_seconds\": %.3f, \"delete_rate\": %.1f}\n",
         o.queues, declared, declare_s, declared / declare_s, published, publish_s,
         publish_s > 0 ? published / publish_s : 0.0, deleted, delete_s, deleted / delete_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    fprintf(stderr, "mqnode-bindings-bench: %s\n", e.what());
    return 2;
  }
}
