#include "core/http.hpp"

#include <http_parser.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include "core/accept.hpp"
#include "core/tls.hpp"

namespace mqnode::core::http {

using namespace std::chrono_literals;

// ---- request / response helpers ------------------------------------------------------

const std::string& Request::header(std::string_view name) const {
  static const std::string kEmpty;
  auto it = headers.find(std::string(name));
  return it == headers.end() ? kEmpty : it->second;
}

std::map<std::string, std::string> Request::params() const {
  auto out = parse_form(query);
  if (method == "POST" && header("content-type").starts_with("application/x-www-form-urlencoded"))
    for (auto& [k, v] : parse_form(body)) out[k] = v;
  return out;
}

Response Response::text(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Response::html(std::string body) {
  Response r;
  r.content_type = "text/html; charset=utf-8";
  r.body = std::move(body);
  return r;
}

Response Response::json(std::string body) {
  Response r;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

Response Response::unauthorized(std::string_view realm) {
  Response r = text(401, "401 Unauthorized\n");
  r.headers.emplace_back("WWW-Authenticate", fmt::format("Basic realm=\"{}\"", realm));
  return r;
}

Response Response::not_found() {
  return text(404, "404 Not Found\n");
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

std::string serialize(const Response& r, bool keep_alive, bool head_only) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", r.status,
                                reason_phrase(r.status), r.content_type, r.body.size());
  out += "Cache-Control: no-cache\r\n";
  for (const auto& [k, v] : r.headers) out += fmt::format("{}: {}\r\n", k, v);
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (!head_only) out += r.body;
  return out;
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string url_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string url_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::map<std::string, std::string> parse_form(std::string_view s) {
  std::map<std::string, std::string> out;
  while (!s.empty()) {
    auto amp = s.find('&');
    auto item = s.substr(0, amp);
    if (!item.empty()) {
      auto eq = item.find('=');
      if (eq == std::string_view::npos)
        out[url_decode(item)] = "";
      else
        out[url_decode(item.substr(0, eq))] = url_decode(item.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    s.remove_prefix(amp + 1);
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!s.empty() && s.back() == '=') s.remove_suffix(1);
  if (s.size() % 4 == 1) return std::nullopt;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v = val(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::optional<std::pair<std::string, std::string>> basic_credentials(const Request& req) {
  const std::string& h = req.header("authorization");
  if (h.size() < 6) return std::nullopt;
  std::string scheme = h.substr(0, 6);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  if (scheme != "basic ") return std::nullopt;
  std::string_view b64(h);
  b64.remove_prefix(6);
  while (!b64.empty() && b64.front() == ' ') b64.remove_prefix(1);
  auto decoded = base64_decode(b64);
  if (!decoded) return std::nullopt;
  auto colon = decoded->find(':');  // RFC 7617: the user id cannot contain ':'
  if (colon == std::string::npos) return std::nullopt;
  return std::pair{decoded->substr(0, colon), decoded->substr(colon + 1)};
}

bool check_basic_auth(const Request& req, std::string_view user, std::string_view password) {
  auto creds = basic_credentials(req);
  if (!creds) return false;
  std::string got = creds->first + ":" + creds->second;
  std::string expected = std::string(user) + ":" + std::string(password);
  unsigned diff = got.size() != expected.size();
  for (std::size_t i = 0; i < expected.size(); ++i)
    diff |= static_cast<unsigned char>(i < got.size() ? got[i] : 0) ^ static_cast<unsigned char>(expected[i]);
  return diff == 0;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// ---- router --------------------------------------------------------------------------

void Router::add(std::string method, std::string path, Handler h) {
  routes_.push_back({std::move(method), std::move(path), false, std::move(h), {}});
}

void Router::add_prefix(std::string method, std::string prefix, Handler h) {
  routes_.push_back({std::move(method), std::move(prefix), true, std::move(h), {}});
}

void Router::add_prefix_async(std::string method, std::string prefix, AsyncHandler h) {
  routes_.push_back({std::move(method), std::move(prefix), true, {}, std::move(h)});
}

const Router::Route* Router::find(const Request& req, bool& path_known) const {
  const Route* best = nullptr;
  path_known = false;
  std::string_view method = req.method;
  if (method == "HEAD") method = "GET";
  for (const auto& r : routes_) {
    bool match = r.prefix ? req.path.starts_with(r.path) : req.path == r.path;
    if (!match) continue;
    path_known = true;
    if (r.method != method) continue;
    if (!r.prefix) return &r;
    if (!best || r.path.size() > best->path.size()) best = &r;
  }
  return best;
}

Response Router::dispatch(const Request& req) const {
  bool path_known = false;
  const Route* r = find(req, path_known);
  if (r && r->handler) return r->handler(req);
  if (r) return Response::text(500, "500 Internal Server Error\n");
  if (path_known) return Response::text(405, "405 Method Not Allowed\n");
  return Response::not_found();
}

asio::awaitable<Response> Router::dispatch_async(const Request& req) const {
  bool path_known = false;
  const Route* r = find(req, path_known);
  if (r && r->async_handler) co_return co_await r->async_handler(req);
  co_return dispatch(req);
}

// ---- parser --------------------------------------------------------------------------

struct ParserCallbacks {
  static RequestParser& self(http_parser* p) { return *static_cast<RequestParser*>(p->data); }

  static int on_url(http_parser* p, const char* at, std::size_t n) {
    auto& s = self(p);
    s.header_bytes_ += n;
    if (s.header_bytes_ > s.max_header_bytes_) return 1;
    s.req_.target.append(at, n);
    return 0;
  }
  static void commit_header(RequestParser& s) {
    if (s.field_.empty()) return;
    std::transform(s.field_.begin(), s.field_.end(), s.field_.begin(), [](unsigned char c) { return std::tolower(c); });
    auto [it, inserted] = s.req_.headers.emplace(s.field_, s.value_);
    if (!inserted) it->second += "," + s.value_;
    s.field_.clear();
    s.value_.clear();
  }
  static int on_header_field(http_parser* p, const char* at, std::size_t n) {
    auto& s = self(p);
    s.header_bytes_ += n;
    if (s.header_bytes_ > s.max_header_bytes_) return 1;
    if (s.in_value_) {
      commit_header(s);
      s.in_value_ = false;
    }
    s.field_.append(at, n);
    return 0;
  }
  static int on_header_value(http_parser* p, const char* at, std::size_t n) {
    auto& s = self(p);
    s.header_bytes_ += n;
    if (s.header_bytes_ > s.max_header_bytes_) return 1;
    s.in_value_ = true;
    s.value_.append(at, n);
    return 0;
  }
  static int on_headers_complete(http_parser* p) {
    auto& s = self(p);
    s.headers_done_ = true;
    commit_header(s);
    s.in_value_ = false;
    s.req_.method = http_method_str(static_cast<http_method>(p->method));
    auto q = s.req_.target.find('?');
    s.req_.path = s.req_.target.substr(0, q);
    s.req_.query = q == std::string::npos ? "" : s.req_.target.substr(q + 1);
    if (p->content_length != ULLONG_MAX && p->content_length > s.max_body_bytes_) {
      s.error_ = "request body too large";
      return -1;  // 1 and 2 mean "no body" to http_parser; anything else is an error
    }
    return 0;
  }
  static int on_body(http_parser* p, const char* at, std::size_t n) {
    auto& s = self(p);
    if (s.req_.body.size() + n > s.max_body_bytes_) {
      s.error_ = "request body too large";
      return 1;
    }
    s.req_.body.append(at, n);
    return 0;
  }
  static int on_message_complete(http_parser* p) {
    auto& s = self(p);
    s.complete_ = true;
    s.keep_alive_ = http_should_keep_alive(p) != 0;
    // Pause so a pipelined request behind this one waits until this one is answered.
    http_parser_pause(p, 1);
    return 0;
  }
};

namespace {
const http_parser_settings& settings() {
  static const http_parser_settings s = [] {
    http_parser_settings x{};
    x.on_url = &ParserCallbacks::on_url;
    x.on_header_field = &ParserCallbacks::on_header_field;
    x.on_header_value = &ParserCallbacks::on_header_value;
    x.on_headers_complete = &ParserCallbacks::on_headers_complete;
    x.on_body = &ParserCallbacks::on_body;
    x.on_message_complete = &ParserCallbacks::on_message_complete;
    return x;
  }();
  return s;
}
}  // namespace

std::optional<Response> parse_response(std::string_view wire) {
  struct State {
    Response r;
    std::string field;
    bool complete = false;
  } st;
  http_parser_settings cb{};
  cb.on_header_field = [](http_parser* p, const char* at, std::size_t n) {
    auto& s = *static_cast<State*>(p->data);
    s.field.assign(at, n);
    std::transform(s.field.begin(), s.field.end(), s.field.begin(), [](unsigned char c) { return std::tolower(c); });
    return 0;
  };
  cb.on_header_value = [](http_parser* p, const char* at, std::size_t n) {
    auto& s = *static_cast<State*>(p->data);
    if (s.field == "content-type") s.r.content_type.assign(at, n);
    return 0;
  };
  cb.on_body = [](http_parser* p, const char* at, std::size_t n) {
    static_cast<State*>(p->data)->r.body.append(at, n);
    return 0;
  };
  cb.on_message_complete = [](http_parser* p) {
    static_cast<State*>(p->data)->complete = true;
    return 0;
  };
  http_parser parser;
  http_parser_init(&parser, HTTP_RESPONSE);
  parser.data = &st;
  st.r.content_type.clear();
  http_parser_execute(&parser, &cb, wire.data(), wire.size());
  if (!st.complete) http_parser_execute(&parser, &cb, nullptr, 0);  // EOF ends a body without a length
  if (!st.complete || HTTP_PARSER_ERRNO(&parser) != HPE_OK) return std::nullopt;
  st.r.status = static_cast<int>(parser.status_code);
  return std::move(st.r);
}

RequestParser::RequestParser(std::size_t max_header_bytes, std::size_t max_body_bytes)
    : parser_(std::make_unique<http_parser>()), max_header_bytes_(max_header_bytes), max_body_bytes_(max_body_bytes) {
  http_parser_init(parser_.get(), HTTP_REQUEST);
  parser_->data = this;
}

RequestParser::~RequestParser() = default;

void RequestParser::reset() {
  req_ = Request{};
  field_.clear();
  value_.clear();
  in_value_ = false;
  complete_ = false;
  header_bytes_ = 0;
  header_section_bytes_ = 0;
  headers_done_ = false;
}

RequestParser::Status RequestParser::feed(std::string_view data, std::size_t& consumed) {
  consumed = 0;
  if (!error_.empty() && HTTP_PARSER_ERRNO(parser_.get()) != HPE_OK) return Status::Error;
  if (complete_) return Status::Complete;
  // Resume after the previous request's pause.
  if (HTTP_PARSER_ERRNO(parser_.get()) == HPE_PAUSED) http_parser_pause(parser_.get(), 0);
  if (data.empty()) return Status::NeedMore;
  const bool in_headers = !headers_done_;
  consumed = http_parser_execute(parser_.get(), &settings(), data.data(), data.size());
  auto err = HTTP_PARSER_ERRNO(parser_.get());
  // On an error <consumed> is where it happened; a header section already over the limit
  // there is "too large" whether or not the callbacks have seen all of it yet.
  if (in_headers && !headers_done_) header_section_bytes_ += consumed;
  if (complete_) return Status::Complete;
  if (err != HPE_OK && err != HPE_PAUSED) {
    if (header_bytes_ > max_header_bytes_ || (!headers_done_ && header_section_bytes_ > max_header_bytes_))
      error_ = "request header too large";
    else if (error_.empty())
      error_ = http_errno_description(err);
    return Status::Error;
  }
  return Status::NeedMore;
}

Request RequestParser::take() {
  Request r = std::move(req_);
  reset();
  return r;
}

// ---- server --------------------------------------------------------------------------

using Protocol = asio::generic::stream_protocol;

namespace {
// The TCP form of <ep>, or an unspecified endpoint when it is not an IP address.
asio::ip::tcp::endpoint as_tcp(const Protocol::endpoint& ep) {
  asio::ip::tcp::endpoint out;
  int family = ep.protocol().family();
  if ((family == AF_INET || family == AF_INET6) && ep.size() <= out.capacity()) {
    std::memcpy(out.data(), ep.data(), ep.size());
    out.resize(ep.size());
  }
  return out;
}
}  // namespace

struct Server::Shared {
  Shared(asio::io_context& io, Logger l, std::shared_ptr<const Router> r, ServerOptions o)
      : log(std::move(l)), router(std::move(r)), opts(o), acceptor(io) {}
  Logger log;
  std::shared_ptr<const Router> router;
  ServerOptions opts;
  asio::basic_socket_acceptor<Protocol> acceptor;
  std::string unix_path;  // removed at stop() when set
  std::map<uint64_t, std::weak_ptr<Conn>> conns;
  uint64_t next_id = 0;
  bool stopped = false;
  FdReserve fd_reserve;
  std::chrono::steady_clock::time_point fd_warned_at{};
};

class Server::Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(std::shared_ptr<Shared> st, Protocol::socket sock, uint64_t id)
      : st_(std::move(st)),
        stream_(st_->opts.tls ? tls::Stream<Protocol::socket>(std::move(sock), st_->opts.tls->context())
                              : tls::Stream<Protocol::socket>(std::move(sock))),
        timer_(stream_.socket().get_executor()),
        id_(id) {}

  void start() {
    auto self = shared_from_this();
    auto ex = stream_.socket().get_executor();
    asio::co_spawn(ex, [self] { return self->run(); }, asio::detached);
    asio::co_spawn(ex, [self] { return self->watchdog(); }, asio::detached);
  }

  void close() {
    asio::error_code ec;
    stream_.socket().close(ec);
    timer_.cancel();
  }

 private:
  asio::awaitable<void> watchdog() {
    asio::error_code ec;
    while (stream_.socket().is_open()) {
      timer_.expires_at(deadline_);
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec != asio::error::operation_aborted && std::chrono::steady_clock::now() >= deadline_) {
        close();
        break;
      }
    }
  }

  // Waiting for a request: the keep-alive idle time. Within one (its first byte seen): the
  // request timeout, which reading does not extend.
  void expect_request() {
    in_request_ = false;
    set_deadline(st_->opts.idle_timeout);
  }
  void request_started() {
    if (in_request_) return;
    in_request_ = true;
    set_deadline(st_->opts.request_timeout);
  }
  void set_deadline(std::chrono::milliseconds d) {
    auto before = deadline_;
    deadline_ = std::chrono::steady_clock::now() + d;
    if (deadline_ < before) timer_.cancel();  // the watchdog waits for the earlier time
  }

  asio::awaitable<void> run() {
    auto self = shared_from_this();
    asio::error_code ec;
    asio::ip::tcp::endpoint peer = as_tcp(stream_.socket().remote_endpoint(ec));
    RequestParser parser;
    std::string buf;
    std::size_t start = 0;
    char chunk[4096];
    if (stream_.is_tls()) {
      request_started();  // the handshake counts as part of the first request
      co_await stream_.handshake(ec);
      if (ec) {
        st_->log.debug("TLS handshake failed peer={} error=\"{}\"", peer.address().to_string(), ec.message());
        finish();
        co_return;
      }
    }
    expect_request();
    for (;;) {
      std::size_t used = 0;
      auto status = parser.feed(std::string_view(buf).substr(start), used);
      start += used;
      if (status == RequestParser::Status::NeedMore) {
        if (start == buf.size()) {
          buf.clear();
          start = 0;
        }
        std::size_t n = co_await stream_.read_some(asio::buffer(chunk), ec);
        if (ec) break;
        buf.append(chunk, n);
        request_started();
        continue;
      }
      Response resp;
      bool keep = false;
      bool head = false;
      if (status == RequestParser::Status::Error) {
        int code = parser.error().find("too large") != std::string::npos ? (parser.error().find("header") != std::string::npos ? 431 : 413) : 400;
        resp = Response::text(code, fmt::format("{} {}\n", code, reason_phrase(code)));
        st_->log.debug("bad request peer={} error=\"{}\"", peer.address().to_string(), parser.error());
      } else {
        Request req = parser.take();
        req.peer = peer;
        set_deadline(st_->opts.idle_timeout);  // the handler's time is not the client's
        keep = parser.keep_alive() && !st_->stopped;
        head = req.method == "HEAD";
        auto router = st_->router;  // a reload may swap it during the handler
        try {
          resp = co_await router->dispatch_async(req);
        } catch (const std::exception& e) {
          st_->log.error("http handler failed path={} what=\"{}\"", req.path, e.what());
          resp = Response::text(500, "500 Internal Server Error\n");
          keep = false;
        }
      }
      auto wire = serialize(resp, keep, head);
      co_await stream_.write(asio::buffer(wire), ec);
      if (ec || !keep) break;
      expect_request();
      if (start < buf.size()) request_started();  // a pipelined request is under way
    }
    if (stream_.socket().is_open()) {
      stream_.socket().shutdown(asio::socket_base::shutdown_send, ec);
    }
    finish();
  }

  void finish() {
    close();
    st_->conns.erase(id_);
  }

  std::shared_ptr<Shared> st_;
  tls::Stream<Protocol::socket> stream_;
  asio::steady_timer timer_;
  uint64_t id_;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  bool in_request_ = false;
};

Server::Server(asio::io_context& io, Logger log, std::shared_ptr<const Router> router, ServerOptions opts)
    : st_(std::make_shared<Shared>(io, std::move(log), std::move(router), opts)) {}

Server::~Server() {
  stop();
}

void Server::listen(const asio::ip::tcp::endpoint& ep) {
  auto& acc = st_->acceptor;
  Protocol::endpoint gep(ep);
  acc.open(gep.protocol());
  acc.set_option(asio::socket_base::reuse_address(true));
  acc.bind(gep);
  start_accepting();
}

void Server::listen_unix(const std::string& path, unsigned mode) {
  asio::local::stream_protocol::endpoint local(path);
  std::error_code fs_ec;
  if (std::filesystem::is_socket(path, fs_ec)) {
    // Someone answering means a live server; a refused connect means a stale file.
    asio::local::stream_protocol::socket probe(st_->acceptor.get_executor());
    asio::error_code ec;
    probe.connect(local, ec);
    if (!ec)
      throw std::runtime_error(fmt::format("{} is in use: another process (a node with the same data dir?) serves it",
                                           path));
    std::filesystem::remove(path, fs_ec);
  }
  auto& acc = st_->acceptor;
  Protocol::endpoint gep(local);
  acc.open(gep.protocol());
  // The umask decides the socket file's mode at bind() (a chmod afterwards would leave a
  // window). It is process-wide: callers bind at startup, when the store's thread (the only
  // other one) has its files open already and creates none.
  mode_t old = ::umask(static_cast<mode_t>(~mode & 0777));
  asio::error_code ec;
  acc.bind(gep, ec);
  ::umask(old);
  if (ec) throw std::system_error(ec, path);
  st_->unix_path = path;
  start_accepting();
}

void Server::start_accepting() {
  st_->acceptor.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(st_->acceptor.get_executor(), accept_loop(st_), asio::detached);
}

asio::ip::tcp::endpoint Server::local_endpoint() const {
  asio::error_code ec;
  return as_tcp(st_->acceptor.local_endpoint(ec));
}

void Server::set_router(std::shared_ptr<const Router> router) {
  st_->router = std::move(router);
}

void Server::set_tls(std::shared_ptr<tls::TlsContext> tls) {
  st_->opts.tls = std::move(tls);
}

std::size_t Server::connections() const {
  return st_->conns.size();
}

void Server::stop() {
  if (st_->stopped) return;
  st_->stopped = true;
  asio::error_code ec;
  st_->acceptor.close(ec);
  if (!st_->unix_path.empty()) {
    std::error_code fs_ec;
    std::filesystem::remove(st_->unix_path, fs_ec);
  }
  auto conns = st_->conns;
  for (auto& [id, w] : conns)
    if (auto c = w.lock()) c->close();
}

asio::awaitable<void> Server::accept_loop(std::shared_ptr<Shared> st) {
  asio::steady_timer backoff(st->acceptor.get_executor());
  asio::error_code ec;
  while (!st->stopped) {
    Protocol::socket sock(st->acceptor.get_executor());
    co_await st->acceptor.async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
    if (st->stopped) break;
    if (ec && FdReserve::exhausted(ec) && st->fd_reserve.refuse(st->acceptor.native_handle())) {
      // Out of descriptors: the waiting client is closed at once instead of hanging.
      if (auto now = std::chrono::steady_clock::now(); now - st->fd_warned_at >= 10s) {
        st->log.warn("http connection refused: out of file descriptors (errno={})", ec.value());
        st->fd_warned_at = now;
      }
      continue;
    }
    if (ec) {
      st->log.warn("http accept failed error=\"{}\"", ec.message());
      backoff.expires_after(100ms);
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (st->conns.size() >= st->opts.max_connections) continue;  // closed as it goes out of scope
    auto id = ++st->next_id;
    auto c = std::make_shared<Conn>(st, std::move(sock), id);
    st->conns.emplace(id, c);
    c->start();
  }
}

}  // namespace mqnode::core::http
