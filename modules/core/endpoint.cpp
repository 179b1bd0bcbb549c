#include "core/endpoint.hpp"

#include <charconv>

#include <asio/ip/v6_only.hpp>
#include <fmt/format.h>

namespace mqnode::core {

std::optional<Endpoint> parse_endpoint(std::string_view s) {
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == s.size()) return std::nullopt;
  std::string_view host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || ptr != port.data() + port.size() || p > 65535) return std::nullopt;
  asio::error_code aec;
  asio::ip::make_address(std::string(host), aec);
  if (aec) return std::nullopt;
  return Endpoint{std::string(host), static_cast<uint16_t>(p)};
}

asio::ip::tcp::endpoint Endpoint::resolve() const {
  return {asio::ip::make_address(host), port};
}

Endpoint any_address(uint16_t port) {
  return Endpoint{"::", port, true};
}

std::optional<Endpoint> ipv4_fallback(const Endpoint& ep, const std::error_code& error) {
  if (!ep.ipv4_fallback) return std::nullopt;
  if (error != std::errc::address_family_not_supported && error != std::errc::address_not_available)
    return std::nullopt;
  return Endpoint{"0.0.0.0", ep.port};
}

bool is_loopback(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
  return a.is_loopback();
}

std::unique_ptr<asio::ip::tcp::acceptor> listen(asio::io_context& io, const Endpoint& ep, std::string_view where) {
  auto addr = ep.resolve();
  auto acc = std::make_unique<asio::ip::tcp::acceptor>(io);
  try {
    acc->open(addr.protocol());
    acc->set_option(asio::socket_base::reuse_address(true));
    if (addr.address().is_v6()) acc->set_option(asio::ip::v6_only(false));
    acc->bind(addr);
    acc->listen(asio::socket_base::max_listen_connections);
  } catch (const std::system_error& e) {
    if (auto v4 = ipv4_fallback(ep, e.code())) return listen(io, *v4, where);
    throw std::runtime_error(fmt::format("cannot listen on {} ({}): {}", ep.to_string(), where, e.code().message()));
  }
  return acc;
}

std::string Endpoint::to_string() const {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

}  // namespace mqnode::core
