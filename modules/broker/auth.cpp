#include "broker/auth.hpp"

#include <algorithm>
#include <array>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace mqnode::broker {

namespace {
constexpr std::size_t kSaltLen = 4;

std::string base64(const unsigned char* p, std::size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

// Decodes strict base64; empty on error.
std::string unbase64(std::string_view s) {
  if (s.empty() || s.size() % 4) return {};
  std::string out(s.size() / 4 * 3 + 1, '\0');
  int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (len < 0) return {};
  std::size_t pad = (s.back() == '=') + (s.size() > 1 && s[s.size() - 2] == '=');
  out.resize(static_cast<std::size_t>(len) - pad);
  return out;
}

std::string salted_digest(std::string_view salt, std::string_view password) {
  std::string buf(salt);
  buf.append(password);
  std::array<unsigned char, SHA256_DIGEST_LENGTH> d{};
  SHA256(reinterpret_cast<const unsigned char*>(buf.data()), buf.size(), d.data());
  std::string out(salt);
  out.append(reinterpret_cast<const char*>(d.data()), d.size());
  return out;
}

bool is_loopback_user(const BrokerConfig& cfg, const std::string& name) {
  return std::find(cfg.loopback_users.begin(), cfg.loopback_users.end(), name) != cfg.loopback_users.end();
}
}  // namespace

std::string hash_password(std::string_view password) {
  std::array<unsigned char, kSaltLen> salt{};
  RAND_bytes(salt.data(), static_cast<int>(salt.size()));
  auto raw = salted_digest(std::string_view(reinterpret_cast<const char*>(salt.data()), salt.size()), password);
  return base64(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

bool valid_password_hash(std::string_view hash) {
  return unbase64(hash).size() == kSaltLen + SHA256_DIGEST_LENGTH;
}

bool check_password(std::string_view hash, std::string_view password) {
  auto raw = unbase64(hash);
  if (raw.size() != kSaltLen + SHA256_DIGEST_LENGTH) return false;
  auto expect = salted_digest(std::string_view(raw).substr(0, kSaltLen), password);
  return CRYPTO_memcmp(expect.data(), raw.data(), raw.size()) == 0;
}

AccessControl::AccessControl(const BrokerConfig& cfg) {
  for (const auto& u : cfg.users)
    users_.emplace(u.name, User{u.name, u.password_hash, u.tags, is_loopback_user(cfg, u.name)});
  for (const auto& p : cfg.permissions)
    grants_.insert_or_assign({p.user, p.vhost}, Grant{Rule(p.configure), Rule(p.write), Rule(p.read)});
}

const AccessControl::User* AccessControl::authenticate(std::string_view user, std::string_view password,
                                                       bool from_loopback, std::string& why) const {
  auto it = users_.find(user);
  if (it == users_.end() || !check_password(it->second.password_hash, password)) {
    why = "invalid credentials";
    return nullptr;
  }
  if (it->second.loopback_only && !from_loopback) {
    why = "user can only log in via localhost";
    return nullptr;
  }
  return &it->second;
}

bool AccessControl::can_access_vhost(std::string_view user, std::string_view vhost) const {
  return grants_.count({std::string(user), std::string(vhost)}) > 0;
}

bool AccessControl::permitted(std::string_view user, std::string_view vhost, Permission what,
                              std::string_view resource) const {
  auto it = grants_.find({std::string(user), std::string(vhost)});
  if (it == grants_.end()) return false;
  const Rule& rule = what == Permission::Configure ? it->second.configure
                    : what == Permission::Write   ? it->second.write
                                                  : it->second.read;
  // RabbitMQ: an empty pattern grants nothing (rather than matching everything).
  if (!rule.re) return false;
  std::string_view name = resource.empty() ? std::string_view("amq.default") : resource;
  return std::regex_search(name.begin(), name.end(), *rule.re);
}

}  // namespace mqnode::broker
