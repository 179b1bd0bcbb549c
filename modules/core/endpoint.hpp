// "host:port" / "[v6]:port" listener addresses from the config.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <asio/ip/tcp.hpp>

namespace mqnode::core {

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  asio::ip::tcp::endpoint resolve() const;  // numeric addresses only; throws std::system_error
  std::string to_string() const;
};

// Parses "0.0.0.0:5672", "[::]:5672", "127.0.0.1:0"; nullopt if malformed or the host
// is not a numeric address.
std::optional<Endpoint> parse_endpoint(std::string_view s);

}  // namespace mqnode::core
