// "host:port" / "[v6]:port" listener addresses from the config.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

namespace mqnode::core {

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  asio::ip::tcp::endpoint resolve() const;  // numeric addresses only; throws std::system_error
  std::string to_string() const;
  bool operator==(const Endpoint&) const = default;
};

// Parses "0.0.0.0:5672", "[::]:5672", "127.0.0.1:0"; nullopt if malformed or the host
// is not a numeric address.
std::optional<Endpoint> parse_endpoint(std::string_view s);

// A listening socket on <ep> (address reuse; "::" also takes IPv4). Throws
// std::runtime_error "cannot listen on <ep> (<where>): <reason>", <where> naming the config.
std::unique_ptr<asio::ip::tcp::acceptor> listen(asio::io_context& io, const Endpoint& ep, std::string_view where);

}  // namespace mqnode::core
