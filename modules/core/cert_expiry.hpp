// Certificate expiry: the dates of the certificates a TLS listener serves, for RabbitMQ's
// health/checks/certificate-expiration and a warning in the log at start and on reload
// (an expired certificate otherwise shows only as clients failing their handshakes).
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include <asio/ip/tcp.hpp>

#include "core/log.hpp"
#include "core/tls.hpp"

namespace mqnode::core::tls {

struct CertificateDates {
  std::time_t not_before = 0;
  std::time_t not_after = 0;
};
// Every certificate of a PEM file (a chain has several; other blocks, a key, are skipped).
struct PemCertificates {
  std::vector<CertificateDates> certificates;
  std::string error;  // set when the file cannot be read or holds no certificate
};
PemCertificates read_certificates(const std::string& pem_file);

// As RabbitMQ's check reports a file: the expiry dates ("2026-12-03 5:04:00", UTC, its
// format) of the certificates of <pem_file> that end before <deadline>, an error text for
// each certificate not yet valid at <now> and for a file that cannot be read. Empty:
// nothing to report (also for an empty <pem_file>: no CA bundle configured).
std::vector<std::string> expiring_before(const std::string& pem_file, std::time_t now, std::time_t deadline);

// A listener serving TLS now, as the certificate-expiration health check lists it.
struct TlsListener {
  std::string protocol;  // RabbitMQ's names: "amqp/ssl", "https"
  asio::ip::tcp::endpoint endpoint;
  TlsOptions options;
};

// Warns in <log> when a certificate of <opts> (certfile or cacertfile) has expired or
// expires within 30 days, so the operator hears of it before clients are refused.
void warn_if_expiring(const TlsOptions& opts, const Logger& log);

}  // namespace mqnode::core::tls
