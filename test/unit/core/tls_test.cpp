#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/cert_expiry.hpp"
#include "core/tls.hpp"
#include "support/config_parse.hpp"

using mqnode::core::ConfigError;
using mqnode::core::ConfigNode;
using namespace mqnode::core::tls;
using nlohmann::json;

namespace {
constexpr const char* kPath = "/broker/listeners/0/tls";

TlsOptions parse(const std::string& text) {
  return mqnode::test::parse_json(parse_tls_options, text, kPath);
}
// The ConfigError of parsing <text> (parse_error), or of building a context from it.
std::string parse_error(const std::string& text) {
  return mqnode::test::config_error_of(parse_tls_options, text, kPath);
}
std::string build_error(const std::string& text) {
  return mqnode::test::config_error_of([](ConfigNode n) { return make_context(parse_tls_options(n)); }, text, kPath);
}

// A self-signed P-256 certificate for <cn> and its key, written as PEM under a temp dir.
struct SelfSigned {
  std::filesystem::path dir, cert, key;
  explicit SelfSigned(const std::string& cn, const std::string& tag) {
    dir = std::filesystem::temp_directory_path() / ("mqnode-tls-test-" + tag + "-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    cert = dir / "cert.pem";
    key = dir / "key.pem";
    EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    REQUIRE(pkey);
    X509* x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(x, name);
    REQUIRE(X509_sign(x, pkey, EVP_sha256()) > 0);
    FILE* f = std::fopen(cert.c_str(), "w");
    PEM_write_X509(f, x);
    std::fclose(f);
    f = std::fopen(key.c_str(), "w");
    PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    X509_free(x);
    EVP_PKEY_free(pkey);
  }
  ~SelfSigned() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string options(const std::string& extra = "") const {
    return R"({"certfile": ")" + cert.string() + R"(", "keyfile": ")" + key.string() + "\"" + extra + "}";
  }
};
}  // namespace

TEST_CASE("tls options: defaults and errors that name the JSON path") {
  auto o = parse(R"({"certfile": "c.pem", "keyfile": "k.pem"})");
  CHECK(o.path == "/broker/listeners/0/tls");
  CHECK_FALSE(o.verify_peer);
  CHECK(o.versions == std::vector<std::string>{"tlsv1.3", "tlsv1.2"});

  CHECK(parse_error(R"({"keyfile": "k.pem"})").rfind("/broker/listeners/0/tls/certfile: expected", 0) == 0);
  CHECK(parse_error(R"({"certfile": "c", "keyfile": "k", "verify": "peer"})") ==
        "/broker/listeners/0/tls/verify: expected \"verify_peer\" or \"verify_none\", got string \"peer\"");
  CHECK(parse_error(R"({"certfile": "c", "keyfile": "k", "verify": "verify_peer"})")
            .rfind("/broker/listeners/0/tls/cacertfile: expected a CA bundle", 0) == 0);
  CHECK(parse_error(R"({"certfile": "c", "keyfile": "k", "fail_if_no_peer_cert": true})")
            .rfind("/broker/listeners/0/tls/fail_if_no_peer_cert: expected false unless", 0) == 0);
  CHECK(parse_error(R"({"certfile": "c", "keyfile": "k", "versions": ["tlsv1.2", "sslv3"]})")
            .rfind("/broker/listeners/0/tls/versions/1: expected one of", 0) == 0);
  CHECK(parse_error(R"({"certfile": "c", "keyfile": "k", "sni": "x"})")
            .rfind("/broker/listeners/0/tls/sni:", 0) == 0);
}

TEST_CASE("tls context: files are loaded and checked, errors name the option") {
  SelfSigned a("node-a", "a"), b("node-b", "b");
  CHECK_NOTHROW(make_context(parse(a.options())));
  CHECK(build_error(R"({"certfile": "/nonexistent.pem", "keyfile": "k"})")
            .rfind("/broker/listeners/0/tls/certfile: cannot load the certificate chain \"/nonexistent.pem\": ", 0) == 0);
  // a's certificate with b's key
  auto mixed = R"({"certfile": ")" + a.cert.string() + R"(", "keyfile": ")" + b.key.string() + "\"}";
  CHECK(build_error(mixed).rfind("/broker/listeners/0/tls/keyfile: the key", 0) == 0);
  CHECK(build_error(a.options(R"(, "ciphers": "NOPE")"))
            .rfind("/broker/listeners/0/tls/ciphers: no usable cipher in \"NOPE\"", 0) == 0);
  CHECK(build_error(a.options(R"(, "cacertfile": "/nonexistent-ca.pem")"))
            .rfind("/broker/listeners/0/tls/cacertfile: cannot load the CA bundle", 0) == 0);

  SUBCASE("versions bound the handshake") {
    auto ctx = make_context(parse(a.options(R"(, "versions": ["tlsv1.2"])")));
    CHECK(SSL_CTX_get_min_proto_version(ctx->native_handle()) == TLS1_2_VERSION);
    CHECK(SSL_CTX_get_max_proto_version(ctx->native_handle()) == TLS1_2_VERSION);
    auto def = make_context(parse(a.options()));
    CHECK(SSL_CTX_get_min_proto_version(def->native_handle()) == TLS1_2_VERSION);
    CHECK(SSL_CTX_get_max_proto_version(def->native_handle()) == TLS1_3_VERSION);
  }
  SUBCASE("reload swaps the context; a failed one keeps the current") {
    TlsContext live(parse(a.options()));
    auto before = live.context();
    live.reload(parse(b.options()));
    CHECK(live.context() != before);
    X509* cert = SSL_CTX_get0_certificate(live.context()->native_handle());
    char cn[64] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    CHECK(std::string(cn) == "node-b");
    auto current = live.context();
    CHECK_THROWS_AS(live.reload(parse(R"({"certfile": "/nonexistent.pem", "keyfile": "k"})")), ConfigError);
    CHECK(live.context() == current);
    CHECK(live.options().certfile == b.cert.string());
  }
}

TEST_CASE("certificate expiry: dates in RabbitMQ's format, errors for what cannot be checked") {
  SelfSigned a("node-a", "expiry");  // valid for one hour from now
  auto pem = read_certificates(a.cert.string());
  REQUIRE(pem.error.empty());
  REQUIRE(pem.certificates.size() == 1);
  std::time_t now = std::time(nullptr), end = pem.certificates[0].not_after;
  CHECK(end - pem.certificates[0].not_before == 3600);

  CHECK(expiring_before(a.cert.string(), now, end - 1).empty());
  std::tm t{};
  gmtime_r(&end, &t);
  char want[80];
  std::snprintf(want, sizeof want, "%d-%02d-%02d %d:%02d:%02d", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour,
                t.tm_min, t.tm_sec);
  CHECK(expiring_before(a.cert.string(), now, end + 1) == std::vector<std::string>{want});
  // Checked at a time before its start, it is not yet valid whatever the deadline.
  CHECK(expiring_before(a.cert.string(), now - 86400, now - 86400) ==
        std::vector<std::string>{"Certificate is not yet valid"});
  CHECK(expiring_before(a.key.string(), now, now) ==
        std::vector<std::string>{"The certificate file provided does not contain any PEM entry."});
  auto missing = expiring_before("/nonexistent.pem", now, now);
  REQUIRE(missing.size() == 1);
  CHECK(missing[0].rfind("cannot read /nonexistent.pem: ", 0) == 0);
  CHECK(expiring_before("", now, now + 1000000).empty());  // no cacertfile: nothing to check
}
