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
    throw std::runtime_error(fmt::format("cannot listen on {} ({}): {}", ep.to_string(), where, e.code().message()));
  }
  return acc;
}

std::string Endpoint::to_string() const {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

}  // namespace mqnode::core
