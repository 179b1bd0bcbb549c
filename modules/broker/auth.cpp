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

AccessControl::AccessControl(std::vector<std::string> loopback_users) : loopback_users_(std::move(loopback_users)) {}

void AccessControl::put_user(const std::string& name, std::string password_hash, std::vector<std::string> tags) {
  bool loopback = std::find(loopback_users_.begin(), loopback_users_.end(), name) != loopback_users_.end();
  users_.insert_or_assign(name, User{name, std::move(password_hash), std::move(tags), loopback});
}

bool AccessControl::delete_user(const std::string& name) {
  std::erase_if(grants_, [&](const auto& g) { return g.first.first == name; });
  return users_.erase(name) > 0;
}

void AccessControl::set_permissions(const std::string& user, const std::string& vhost, Permissions p) {
  Grant g{p, Rule(p.configure), Rule(p.write), Rule(p.read)};
  grants_.insert_or_assign({user, vhost}, std::move(g));
}

bool AccessControl::clear_permissions(const std::string& user, const std::string& vhost) {
  return grants_.erase({user, vhost}) > 0;
}

void AccessControl::delete_vhost(const std::string& vhost) {
  std::erase_if(grants_, [&](const auto& g) { return g.first.second == vhost; });
}

const AccessControl::User* AccessControl::find_user(std::string_view name) const {
  auto it = users_.find(name);
  return it == users_.end() ? nullptr : &it->second;
}

std::vector<std::pair<std::pair<std::string, std::string>, AccessControl::Permissions>> AccessControl::permissions()
    const {
  std::vector<std::pair<std::pair<std::string, std::string>, Permissions>> out;
  for (const auto& [key, g] : grants_) out.emplace_back(key, g.patterns);
  return out;
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
