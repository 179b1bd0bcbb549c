// Cluster links over asio: the one cluster port (/cluster/bind) and outgoing connections.
// Every link opens with the cookie handshake (handshake.hpp) under a deadline; an
// authenticated socket is handed, by the purpose the initiator named, to the handler
// registered for it (raft's transport, the peer protocol). A refused peer gets nothing
// but a reject, and one log line per address and interval that says what to do.
// Loop thread only, all of it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include "cluster/handshake.hpp"
#include "core/endpoint.hpp"
#include "core/log.hpp"

namespace mqnode::cluster {

inline constexpr std::string_view kDefaultClusterBind = "0.0.0.0:25672";

struct LinkConfig {
  NodeIdentity self;
  std::string cookie;       // the secret
  std::string cookie_path;  // for the messages that tell an operator which file to copy
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds log_interval{std::chrono::seconds(60)};  // per peer address
  // Accepted connections still in their handshake, at most: beyond it a new one is closed
  // at once, so a flood of silent connections costs sockets for handshake_timeout only.
  std::size_t max_handshakes = 64;
};

// An authenticated link: the socket (TCP_NODELAY), positioned right after the handshake.
struct Link {
  asio::ip::tcp::socket socket;
  NodeIdentity peer;
  Purpose purpose;
};

// At most one line per key and interval; says how many were held back meanwhile. The map
// is pruned as it grows, so a scan from many addresses cannot grow it without bound.
class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogLimiter(Clock::duration interval) : interval_(interval) {}
  // True when a line for <key> may be written now; <suppressed> is how many were not since.
  bool allow(const std::string& key, Clock::time_point now, std::size_t& suppressed);

 private:
  struct Entry {
    Clock::time_point last;
    std::size_t suppressed = 0;
  };
  Clock::duration interval_;
  std::map<std::string, Entry, std::less<>> entries_;
};

#define MQ_CLUSTER_LINK_STATS(C)                                                              \
  C(accepted) C(connects) C(authenticated) C(refused_cookie) C(refused_version) C(refused_malformed) \
  C(refused_name_clash) C(refused_busy) C(timeouts) C(io_errors) C(unhandled_purpose)
struct LinkStats {
#define MQ_DECLARE(name) uint64_t name = 0;
  MQ_CLUSTER_LINK_STATS(MQ_DECLARE)
#undef MQ_DECLARE
};

class Links : public std::enable_shared_from_this<Links> {
 public:
  using AcceptHandler = std::function<void(Link)>;
  // <link> on success, else nullopt and <error>, a sentence for a log line.
  using ConnectHandler = std::function<void(std::optional<Link> link, std::string error)>;

  static std::shared_ptr<Links> create(asio::io_context& io, LinkConfig cfg, core::Logger log);

  // Where authenticated links with <purpose> go; without a handler (or after an empty one
  // unregistered it) they are closed.
  void on_accept(Purpose purpose, AcceptHandler handler);
  const NodeIdentity& self() const { return cfg_.self; }
  // Binds the cluster port and starts accepting. Throws std::runtime_error naming /cluster/bind.
  // A node with no address of its own (self.address empty) advertises the bound one, which
  // serves a node on a single address, and tests on port 0.
  void listen(const core::Endpoint& bind);
  asio::ip::tcp::endpoint local_endpoint() const;
  // Connects to <address> ("host:port", numeric), authenticates for <purpose>, then calls
  // <done> (always, once, on the loop; with an error after stop()).
  void connect(const std::string& address, Purpose purpose, ConnectHandler done);
  // Closes the port and every link still in its handshake, and the parked ones. Other
  // handed-over links are not ours.
  void stop();
  bool stopped() const { return stopped_; }
  // A handed-over link that ends with these links (a served peer link idling between
  // requests): stop() closes it if it is still open.
  void close_on_stop(std::weak_ptr<Link> link);

  // Links a caller is done with that can carry more (peer requests): parked per address
  // and purpose, kMaxParked each, for kParkedFor at most. take_parked gives back one whose
  // peer has not closed it, saving a connect and a handshake.
  static constexpr std::size_t kMaxParked = 4;
  static constexpr std::chrono::seconds kParkedFor{30};
  void park(const std::string& address, Link link);
  std::optional<Link> take_parked(const std::string& address, Purpose purpose);

  const LinkStats& stats() const { return stats_; }
  void dump(nlohmann::json& out) const;

 private:
  struct Outcome;
  Links(asio::io_context& io, LinkConfig cfg, core::Logger log);
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::shared_ptr<asio::ip::tcp::socket> sock);
  asio::awaitable<void> dial(std::string address, Purpose purpose, ConnectHandler done);
  // Drives <h> over <sock> (connecting it to <dial_to> first, if given) under the deadline.
  asio::awaitable<Outcome> run(std::shared_ptr<asio::ip::tcp::socket> sock, Handshake& h,
                               std::optional<asio::ip::tcp::endpoint> dial_to);
  // Counts <o>'s failure and logs it, rate-limited by <peer>; returns the sentence.
  std::string report(const Outcome& o, const std::string& peer, std::string_view direction);

  asio::io_context& io_;
  LinkConfig cfg_;
  core::Logger log_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  std::map<Purpose, AcceptHandler> handlers_;
  std::set<std::shared_ptr<asio::ip::tcp::socket>> handshaking_;  // in and out, for stop()
  std::size_t inbound_handshakes_ = 0;
  LogLimiter limiter_;
  struct Parked {
    Link link;
    std::chrono::steady_clock::time_point since;
  };
  std::map<std::pair<std::string, Purpose>, std::vector<Parked>> parked_;
  std::vector<std::weak_ptr<Link>> close_on_stop_;
  LinkStats stats_;
  bool stopped_ = false;
};

}  // namespace mqnode::cluster
