// "host:port" / "[v6]:port" listener addresses from the config, the defaulted dual-stack
// listener (RabbitMQ's: [::] taking IPv4 too, plain IPv4 where the host has no IPv6), and
// the loopback test that the guest user's rule needs behind such a listener.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

namespace mqnode::core {

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  // Set only on defaulted listeners (any_address()): on a host without IPv6, listen()
  // takes IPv4's 0.0.0.0 instead. An "[::]:port" from the config fails there instead.
  bool ipv4_fallback = false;
  asio::ip::tcp::endpoint resolve() const;  // numeric addresses only; throws std::system_error
  std::string to_string() const;
  bool operator==(const Endpoint&) const = default;
};

// Parses "0.0.0.0:5672", "[::]:5672", "127.0.0.1:0"; nullopt if malformed or the host
// is not a numeric address.
std::optional<Endpoint> parse_endpoint(std::string_view s);

// Every address of the host on <port>, IPv6 and IPv4 (a dual-stack "::"), falling back to
// IPv4 only where the host has no IPv6: the default of listeners the config leaves out.
Endpoint any_address(uint16_t port);

// What listen() binds after binding <ep> failed with <error>: IPv4's 0.0.0.0 on the same
// port when <ep> may fall back and <error> says the host has no IPv6 (EAFNOSUPPORT: no
// IPv6 in the kernel; EADDRNOTAVAIL: IPv6 disabled); nullopt otherwise.
std::optional<Endpoint> ipv4_fallback(const Endpoint& ep, const std::error_code& error);

// True for 127.0.0.0/8, ::1, and IPv4 loopback seen through a dual-stack socket
// (::ffff:127.0.0.1): the addresses loopback-only users may come from.
bool is_loopback(const asio::ip::address& a);

// A listening socket on <ep> (address reuse; "::" also takes IPv4, whatever the host's
// net.ipv6.bindv6only), or on ipv4_fallback(<ep>). Throws std::runtime_error
// "cannot listen on <ep> (<where>): <reason>", <where> naming the config.
std::unique_ptr<asio::ip::tcp::acceptor> listen(asio::io_context& io, const Endpoint& ep, std::string_view where);

}  // namespace mqnode::core
