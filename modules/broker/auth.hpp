// Users, password hashes and per-vhost permissions (RabbitMQ's internal auth backend).
// Hashes use RabbitMQ's rabbit_password_hashing_sha256 layout, so a password_hash taken
// from a RabbitMQ definitions export works here unchanged.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "broker/config.hpp"

namespace mqnode::broker {

// base64(salt[4] ‖ sha256(salt ‖ password)) with a random salt.
std::string hash_password(std::string_view password);
bool valid_password_hash(std::string_view hash);
bool check_password(std::string_view hash, std::string_view password);

enum class Permission { Configure, Write, Read };

class AccessControl {
 public:
  // <loopback_users>: users who may log in only from loopback (node config, as RabbitMQ's
  // loopback_users).
  explicit AccessControl(std::vector<std::string> loopback_users = {});

  struct User {
    std::string name;
    std::string password_hash;
    std::vector<std::string> tags;
    bool loopback_only = false;
  };
  // A user's permission patterns on one vhost, as set (rabbitmqctl set_permissions).
  struct Permissions {
    std::string configure, write, read;
  };

  // nullptr with <why> set when the login is refused. <from_loopback>: the peer address is
  // 127.0.0.0/8 or ::1 (RabbitMQ's loopback_users rule).
  const User* authenticate(std::string_view user, std::string_view password, bool from_loopback,
                           std::string& why) const;
  bool can_access_vhost(std::string_view user, std::string_view vhost) const;
  // Resource names are matched against the user's regex for <what> on <vhost>; the
  // default exchange is checked as "amq.default" (as RabbitMQ does).
  bool permitted(std::string_view user, std::string_view vhost, Permission what, std::string_view resource) const;

  // Changes, made by the Catalog only. set_permissions throws std::regex_error on a bad
  // pattern before changing anything.
  void put_user(const std::string& name, std::string password_hash, std::vector<std::string> tags);
  bool delete_user(const std::string& name);  // with the user's permissions
  void set_permissions(const std::string& user, const std::string& vhost, Permissions p);
  bool clear_permissions(const std::string& user, const std::string& vhost);
  void delete_vhost(const std::string& vhost);  // every user's permissions on it

  const User* find_user(std::string_view name) const;
  const std::map<std::string, User, std::less<>>& users() const { return users_; }
  // (user, vhost) -> patterns, in that order.
  std::vector<std::pair<std::pair<std::string, std::string>, Permissions>> permissions() const;

 private:
  struct Rule {
    explicit Rule(const std::string& pattern) {
      if (!pattern.empty()) re = std::regex(pattern);
    }
    std::optional<std::regex> re;
  };
  struct Grant {
    Permissions patterns;
    Rule configure, write, read;
  };
  std::vector<std::string> loopback_users_;
  std::map<std::string, User, std::less<>> users_;
  std::map<std::pair<std::string, std::string>, Grant> grants_;  // (user, vhost)
};

}  // namespace mqnode::broker
