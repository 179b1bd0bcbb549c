#include "core/tls.hpp"

#include <algorithm>
#include <array>
#include <string_view>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace mqnode::core::tls {

namespace {
struct VersionName {
  std::string_view name;
  int version;
};
// Ordered from oldest to newest.
constexpr std::array<VersionName, 4> kVersions{{
    {"tlsv1", TLS1_VERSION},
    {"tlsv1.1", TLS1_1_VERSION},
    {"tlsv1.2", TLS1_2_VERSION},
    {"tlsv1.3", TLS1_3_VERSION},
}};

int version_of(std::string_view name) {
  for (const auto& v : kVersions)
    if (v.name == name) return v.version;
  return 0;
}

[[noreturn]] void fail_option(const TlsOptions& o, std::string_view key, const std::string& what) {
  throw ConfigError(fmt::format("{}/{}: {}: {}", o.path, key, what, last_error()));
}
}  // namespace

std::string last_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

TlsOptions parse_tls_options(ConfigNode node) {
  TlsOptions o;
  o.path = node.path();
  o.certfile = node.required_string("certfile");
  o.keyfile = node.required_string("keyfile");
  o.cacertfile = node.string("cacertfile", "");
  auto verify = node.string("verify", "verify_none");
  if (verify != "verify_none" && verify != "verify_peer") node.fail("verify", "\"verify_peer\" or \"verify_none\"");
  o.verify_peer = verify == "verify_peer";
  o.fail_if_no_peer_cert = node.boolean("fail_if_no_peer_cert", false);
  if (o.verify_peer && o.cacertfile.empty())
    node.fail("cacertfile", "a CA bundle (PEM) to check client certificates against when verify is \"verify_peer\"");
  if (o.fail_if_no_peer_cert && !o.verify_peer)
    node.fail("fail_if_no_peer_cert", "false unless verify is \"verify_peer\"");
  o.versions = node.strings("versions", o.versions);
  if (o.versions.empty()) node.fail("versions", "at least one of \"tlsv1.3\", \"tlsv1.2\", \"tlsv1.1\", \"tlsv1\"");
  for (std::size_t i = 0; i < o.versions.size(); ++i)
    if (!version_of(o.versions[i]))
      throw ConfigError(fmt::format("{}/{}: expected one of \"tlsv1.3\", \"tlsv1.2\", \"tlsv1.1\", \"tlsv1\", got \"{}\"",
                                    node.path_of("versions"), i, o.versions[i]));
  o.ciphers = node.string("ciphers", "");
  node.finish();
  return o;
}

std::shared_ptr<asio::ssl::context> make_context(const TlsOptions& o) {
  ERR_clear_error();
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  int lo = TLS1_3_VERSION, hi = TLS1_VERSION;
  for (const auto& v : o.versions) {
    lo = std::min(lo, version_of(v));
    hi = std::max(hi, version_of(v));
  }
  if (lo < TLS1_2_VERSION) {
    // Debian's OpenSSL refuses TLS < 1.2 at its default security level; an operator who
    // lists an old version asks for it, as RabbitMQ's versions option does.
    SSL_CTX_set_security_level(c, 0);
  }
  if (!SSL_CTX_set_min_proto_version(c, lo) || !SSL_CTX_set_max_proto_version(c, hi))
    fail_option(o, "versions", "cannot set the protocol versions");
  if (!o.ciphers.empty() && SSL_CTX_set_cipher_list(c, o.ciphers.c_str()) != 1)
    fail_option(o, "ciphers", fmt::format("no usable cipher in \"{}\"", o.ciphers));
  if (SSL_CTX_use_certificate_chain_file(c, o.certfile.c_str()) != 1)
    fail_option(o, "certfile", fmt::format("cannot load the certificate chain \"{}\"", o.certfile));
  if (SSL_CTX_use_PrivateKey_file(c, o.keyfile.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH)
      fail_option(o, "keyfile", fmt::format("cannot load the private key \"{}\"", o.keyfile));
    fail_option(o, "keyfile", fmt::format("the key \"{}\" does not match the certificate \"{}\"", o.keyfile, o.certfile));
  }
  if (SSL_CTX_check_private_key(c) != 1)
    fail_option(o, "keyfile", fmt::format("the key \"{}\" does not match the certificate \"{}\"", o.keyfile, o.certfile));
  if (!o.cacertfile.empty()) {
    if (SSL_CTX_load_verify_locations(c, o.cacertfile.c_str(), nullptr) != 1)
      fail_option(o, "cacertfile", fmt::format("cannot load the CA bundle \"{}\"", o.cacertfile));
    // The CAs named in the CertificateRequest, so clients pick a matching certificate.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.cacertfile.c_str()))
      SSL_CTX_set_client_CA_list(c, names);
  }
  int mode = SSL_VERIFY_NONE;
  if (o.verify_peer) mode = SSL_VERIFY_PEER | (o.fail_if_no_peer_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
  SSL_CTX_set_verify(c, mode, nullptr);
  // Session resumption across a reload would skip the new certificate's checks: keep the
  // cache per context (the default), with an id so resumption works within one.
  static const unsigned char kSessionId[] = "mqnode";
  SSL_CTX_set_session_id_context(c, kSessionId, sizeof kSessionId - 1);
  ERR_clear_error();
  return ctx;
}

void TlsContext::reload(TlsOptions opts) {
  auto next = make_context(opts);  // throws before anything changes
  opts_ = std::move(opts);
  ctx_ = std::move(next);
}

std::optional<std::string> peer_common_name(SSL* ssl) {
  if (!ssl) return std::nullopt;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return std::nullopt;
  std::optional<std::string> out;
  if (SSL_get_verify_result(ssl) == X509_V_OK) {
    X509_NAME* subject = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i >= 0) {
      ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
      unsigned char* utf8 = nullptr;
      int n = ASN1_STRING_to_UTF8(&utf8, data);
      if (n >= 0) out = std::string(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
      OPENSSL_free(utf8);
    }
  }
  X509_free(cert);
  return out;
}

std::string describe_session(SSL* ssl) {
  if (!ssl) return "plain";
  return fmt::format("{} {}", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

}  // namespace mqnode::core::tls
