#include "core/cert_expiry.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace mqnode::core::tls {

PemCertificates read_certificates(const std::string& pem_file) {
  PemCertificates out;
  std::FILE* f = std::fopen(pem_file.c_str(), "r");
  if (!f) {
    out.error = fmt::format("cannot read {}: {}", pem_file, std::strerror(errno));
    return out;
  }
  while (X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr)) {
    std::tm before{}, after{};
    ASN1_TIME_to_tm(X509_get0_notBefore(cert), &before);
    ASN1_TIME_to_tm(X509_get0_notAfter(cert), &after);
    out.certificates.push_back({timegm(&before), timegm(&after)});
    X509_free(cert);
  }
  std::fclose(f);
  ERR_clear_error();  // the end of the file is queued as an error
  if (out.certificates.empty()) out.error = "The certificate file provided does not contain any PEM entry.";
  return out;
}

std::vector<std::string> expiring_before(const std::string& pem_file, std::time_t now, std::time_t deadline) {
  std::vector<std::string> out;
  if (pem_file.empty()) return out;
  PemCertificates pem = read_certificates(pem_file);
  if (!pem.error.empty()) out.push_back(pem.error);
  for (const auto& c : pem.certificates) {
    if (c.not_before > now) {
      out.push_back("Certificate is not yet valid");
    } else if (c.not_after < deadline) {
      std::tm t{};
      gmtime_r(&c.not_after, &t);
      out.push_back(fmt::format("{}-{:02}-{:02} {}:{:02}:{:02}", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour,
                                t.tm_min, t.tm_sec));
    }
  }
  return out;
}

void warn_if_expiring(const TlsOptions& opts, const Logger& log) {
  constexpr std::time_t kWarnAhead = 30 * 86400;
  const std::time_t now = std::time(nullptr);
  for (const auto& [key, file] : {std::pair{"certfile", &opts.certfile}, std::pair{"cacertfile", &opts.cacertfile}}) {
    if (file->empty()) continue;
    for (const auto& c : read_certificates(*file).certificates) {
      if (c.not_after >= now + kWarnAhead) continue;
      if (c.not_after < now)
        log.warn("{}/{}: a certificate of {} expired {} day(s) ago: clients will refuse it; renew it and send SIGHUP",
                 opts.path, key, *file, (now - c.not_after) / 86400);
      else
        log.warn("{}/{}: a certificate of {} expires in {} day(s): renew it and send SIGHUP", opts.path, key, *file,
                 (c.not_after - now) / 86400);
    }
  }
}

}  // namespace mqnode::core::tls
