// The one HTTP/1.1 server of the node (lb stats page, management API and control socket):
// node's http-parser (Debian libhttp-parser-dev) for the request syntax, Asio coroutines for
// the connections on TCP or a Unix stream socket, a small router of exact paths and
// prefixes, and helpers for basic auth. Handlers are synchronous and run on the loop
// thread: they must not block.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/basic_socket_acceptor.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "core/log.hpp"

struct http_parser;

namespace mqnode::core::tls {
class TlsContext;
}

namespace mqnode::core::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: "/haproxy;csv?x=1"
  std::string path;    // target before '?', not decoded (HAProxy's ";csv" stays in it)
  std::string query;   // after '?', not decoded
  std::map<std::string, std::string> headers;  // names lower-cased; repeats joined with ","
  std::string body;
  asio::ip::tcp::endpoint peer;  // unspecified (0.0.0.0:0) on a Unix socket

  // The header value or "" (<name> lower-case).
  const std::string& header(std::string_view name) const;
  // Decoded query (and, for application/x-www-form-urlencoded POSTs, body) parameters.
  std::map<std::string, std::string> params() const;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string body;

  static Response text(int status, std::string body);
  static Response html(std::string body);
  static Response json(std::string body);
  // 401 with WWW-Authenticate: Basic realm="<realm>".
  static Response unauthorized(std::string_view realm);
  static Response not_found();
};

// The standard reason phrase for <status> ("OK", "Not Found"); "Unknown" otherwise.
std::string_view reason_phrase(int status);
// The full wire form of <r> (status line, Content-Length, Connection, body).
std::string serialize(const Response& r, bool keep_alive, bool head_only = false);

// RFC 3986 percent-decoding; '+' becomes ' ' when <plus_is_space> (form encoding).
std::string url_decode(std::string_view s, bool plus_is_space = true);
// Percent-encodes everything but RFC 3986's unreserved characters (a path segment or query
// value: "/" → "%2F").
std::string url_encode(std::string_view s);
// "a=1&b=x%20y" → {a:1, b:"x y"}; later repeats win.
std::map<std::string, std::string> parse_form(std::string_view s);
std::optional<std::string> base64_decode(std::string_view s);
// The user and password of an "Authorization: Basic base64(user:password)" header.
std::optional<std::pair<std::string, std::string>> basic_credentials(const Request& req);
// True when the request carries basic credentials matching <user> and <password>.
// Compares in constant time per byte so timing does not leak how much of it matched.
bool check_basic_auth(const Request& req, std::string_view user, std::string_view password);
std::string html_escape(std::string_view s);

using Handler = std::function<Response(const Request&)>;
// For a request whose answer waits on something else (a metadata change going through the
// cluster): the connection waits, the loop does not.
using AsyncHandler = std::function<asio::awaitable<Response>(const Request&)>;

// Exact paths first, then the longest matching prefix. A path registered with another
// method answers 405.
class Router {
 public:
  void add(std::string method, std::string path, Handler h);
  void add_prefix(std::string method, std::string prefix, Handler h);
  void add_prefix_async(std::string method, std::string prefix, AsyncHandler h);
  // Synchronous routes only; an asynchronous one answers 500 here.
  Response dispatch(const Request& req) const;
  asio::awaitable<Response> dispatch_async(const Request& req) const;

 private:
  struct Route {
    std::string method;
    std::string path;
    bool prefix;
    Handler handler;
    AsyncHandler async_handler;  // set instead of <handler>
  };
  const Route* find(const Request& req, bool& path_known) const;
  std::vector<Route> routes_;
};

// Parses a complete response (as read up to EOF from a "Connection: close" exchange) with
// http_parser; nullopt when it is not a whole, valid HTTP/1.x response. For clients of our
// own servers (mqnode ctl over the control socket).
std::optional<Response> parse_response(std::string_view wire);

// Incremental request parser around http_parser: feed() any split of the byte stream.
// Pipelined requests are returned one at a time (the parser pauses after each).
class RequestParser {
 public:
  enum class Status { NeedMore, Complete, Error };

  explicit RequestParser(std::size_t max_header_bytes = 16 * 1024, std::size_t max_body_bytes = 1 << 20);
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Consumes from <data>, sets <consumed>. Complete: take() the request; feed the rest
  // of the buffer afterwards. Error: error() says why; the connection should get a 400.
  Status feed(std::string_view data, std::size_t& consumed);
  Request take();
  bool keep_alive() const { return keep_alive_; }
  const std::string& error() const { return error_; }

 private:
  friend struct ParserCallbacks;
  void reset();

  std::unique_ptr<http_parser> parser_;
  std::size_t max_header_bytes_, max_body_bytes_, header_bytes_ = 0;
  // Raw bytes of the request line and headers read so far: the limit is judged at the byte
  // where a request fails, so the verdict does not depend on how the stream was split.
  std::size_t header_section_bytes_ = 0;
  bool headers_done_ = false;
  Request req_;
  std::string field_, value_;
  bool in_value_ = false;
  bool complete_ = false;
  bool keep_alive_ = true;
  std::string error_;
};

struct ServerOptions {
  std::size_t max_connections = 256;
  std::chrono::milliseconds idle_timeout{30000};  // keep-alive: waiting for a request's first byte
  // From a request's first byte (or a TLS connection's accept) to its last: a client
  // sending a byte now and then (slowloris) is closed then, as RabbitMQ's handshake
  // timeout does for AMQP. Reading does not extend it.
  std::chrono::milliseconds request_timeout{10000};
  // HTTPS when set (TCP listeners): its current context serves each new connection.
  std::shared_ptr<tls::TlsContext> tls;
};

// Serves <router> on one listening address, TCP or a Unix stream socket (one code path:
// Asio's generic stream protocol). Owned by a module; stop() before destruction.
class Server {
 public:
  Server(asio::io_context& io, Logger log, std::shared_ptr<const Router> router, ServerOptions opts = {});
  ~Server();

  // Binds and starts accepting; throws std::system_error.
  void listen(const asio::ip::tcp::endpoint& ep);
  // Binds the Unix socket <path> with permissions <mode> (set while binding, so the socket
  // is never reachable with looser ones) and starts accepting. A socket file left by a
  // process that died is replaced; one that still answers means another process serves
  // it: throws std::runtime_error saying so. stop() removes the file.
  void listen_unix(const std::string& path, unsigned mode);
  // The TCP address listened on (port 0 resolved); unspecified for a Unix socket.
  asio::ip::tcp::endpoint local_endpoint() const;
  // Swaps the routes (config reload); requests in flight finish on the old ones.
  void set_router(std::shared_ptr<const Router> router);
  // Swaps the TLS context (config reload; nullptr: plain HTTP): connections accepted from
  // now on use it, those up keep theirs.
  void set_tls(std::shared_ptr<tls::TlsContext> tls);
  // Closes the listener and every connection (idempotent).
  void stop();

  std::size_t connections() const;

 private:
  class Conn;
  struct Shared;  // what connections need; outlives the Server if they do
  static asio::awaitable<void> accept_loop(std::shared_ptr<Shared> st);
  void start_accepting();  // after bind

  std::shared_ptr<Shared> st_;
};

}  // namespace mqnode::core::http
