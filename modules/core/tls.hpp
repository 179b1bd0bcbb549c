// TLS for the node's listeners (AMQPS, HTTPS): the options of one listener in the shape of
// RabbitMQ's ssl_options, the OpenSSL server context built from them (through Asio's SSL
// wrapper: no hand-written crypto) and swapped on reload, and Stream, a socket that is
// plain or TLS, so one connection class serves both with a single branch per read/write.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/redirect_error.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "core/config.hpp"

namespace mqnode::core::tls {

// One listener's "tls" object (RabbitMQ's ssl_options).
struct TlsOptions {
  std::string path;        // JSON path of the object, for error messages ("/broker/listeners/0/tls")
  std::string certfile;    // PEM: the server certificate, then its chain
  std::string keyfile;     // PEM private key
  std::string cacertfile;  // PEM CA bundle that client certificates are checked against
  bool verify_peer = false;           // "verify": "verify_peer" | "verify_none"
  bool fail_if_no_peer_cert = false;  // verify_peer only: refuse clients without a certificate
  // Protocol versions allowed, as RabbitMQ's ssl_options.versions: "tlsv1.3", "tlsv1.2",
  // "tlsv1.1", "tlsv1"; the lowest and highest listed bound the handshake.
  std::vector<std::string> versions{"tlsv1.3", "tlsv1.2"};
  std::string ciphers;  // OpenSSL cipher list for TLS ≤ 1.2; empty: OpenSSL's default
};

// Reads <node> (an object); throws core::ConfigError naming the JSON path of a bad value.
// Files are not read here (make_context() does).
TlsOptions parse_tls_options(ConfigNode node);

// A server context from <opts>: certificate chain and key (checked to match), CA bundle,
// verification mode, versions and ciphers. Throws core::ConfigError naming the option's
// JSON path and OpenSSL's reason ("/broker/listeners/0/tls/certfile: cannot load ...").
std::shared_ptr<asio::ssl::context> make_context(const TlsOptions& opts);

// The live context of one listener. A reload builds a new context and swaps the pointer:
// handshakes from then on use the new certificate, sessions already up keep theirs (each
// Stream holds the context it was made with).
class TlsContext {
 public:
  explicit TlsContext(TlsOptions opts) : opts_(std::move(opts)), ctx_(make_context(opts_)) {}
  const TlsOptions& options() const { return opts_; }
  std::shared_ptr<asio::ssl::context> context() const { return ctx_; }
  // Rebuilds from <opts> (the files read again); throws core::ConfigError and keeps the
  // current context when the new one cannot be built.
  void reload(TlsOptions opts);

 private:
  TlsOptions opts_;
  std::shared_ptr<asio::ssl::context> ctx_;
};
using TlsContextPtr = std::shared_ptr<TlsContext>;

// The peer certificate's subject CN once a handshake verified it; nullopt without a
// verified certificate (EXTERNAL login, rabbitmq_auth_mechanism_ssl's common_name).
std::optional<std::string> peer_common_name(SSL* ssl);
// "TLSv1.3 TLS_AES_256_GCM_SHA384", for logs.
std::string describe_session(SSL* ssl);
// The first OpenSSL error on this thread's queue as text (and the queue cleared).
std::string last_error();

// A socket that is plain or carries TLS. Only read_some/write/handshake differ; they return
// the awaitable of whichever layer is in use, so the plain path costs one branch.
template <class Socket>
class Stream {
 public:
  explicit Stream(Socket s) : plain_(std::move(s)) {}
  Stream(Socket s, std::shared_ptr<asio::ssl::context> ctx)
      : plain_(s.get_executor()), ctx_(std::move(ctx)), tls_(std::make_unique<asio::ssl::stream<Socket>>(std::move(s), *ctx_)) {}

  bool is_tls() const { return tls_ != nullptr; }
  Socket& socket() { return tls_ ? tls_->next_layer() : plain_; }
  const Socket& socket() const { return tls_ ? tls_->next_layer() : plain_; }
  SSL* native() { return tls_ ? tls_->native_handle() : nullptr; }

  // The server side of the TLS handshake (done at once on a plain stream).
  asio::awaitable<void> handshake(asio::error_code& ec) {
    if (!tls_) {
      ec = {};
      co_return;
    }
    co_await tls_->async_handshake(asio::ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
  }
  asio::awaitable<std::size_t> read_some(asio::mutable_buffer b, asio::error_code& ec) {
    if (tls_) return tls_->async_read_some(b, asio::redirect_error(asio::use_awaitable, ec));
    return plain_.async_read_some(b, asio::redirect_error(asio::use_awaitable, ec));
  }
  asio::awaitable<std::size_t> write(asio::const_buffer b, asio::error_code& ec) {
    if (tls_) return asio::async_write(*tls_, b, asio::redirect_error(asio::use_awaitable, ec));
    return asio::async_write(plain_, b, asio::redirect_error(asio::use_awaitable, ec));
  }

 private:
  Socket plain_;  // unused (never opened) under TLS: tls_ owns the socket then
  std::shared_ptr<asio::ssl::context> ctx_;
  std::unique_ptr<asio::ssl::stream<Socket>> tls_;
};

}  // namespace mqnode::core::tls
