// The cluster cookie, the shared secret every node of a cluster holds (RabbitMQ's
// .erlang.cookie): where it lives, its creation on a node's first start and the checks that
// keep it private. Links prove knowledge of it (handshake.hpp); it never crosses the wire.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

namespace mqnode::cluster {

// A cookie file that cannot be used: the message names the file and says what to do.
struct CookieError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Cookie {
 public:
  // Reads the cookie at <path>; when no file is there, creates one with 20 random uppercase
  // letters and mode 0400 (a first start). Refuses, with CookieError, a file that group or
  // others may access (`chmod 400 <path>`), one that is not a regular file, and an empty one.
  // Surrounding whitespace (a trailing newline from `echo`) is not part of the cookie.
  static Cookie load_or_create(const std::filesystem::path& path);

  // <data_dir>/.cookie, where /node/cookie_file points when the config leaves it out.
  static std::filesystem::path default_path(const std::filesystem::path& data_dir);

  const std::string& secret() const { return secret_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  Cookie(std::filesystem::path path, std::string secret) : path_(std::move(path)), secret_(std::move(secret)) {}
  std::filesystem::path path_;
  std::string secret_;
};

}  // namespace mqnode::cluster
