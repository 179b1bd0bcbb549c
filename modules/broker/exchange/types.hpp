// The four exchange types RabbitMQ ships (direct, fanout, topic, headers).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "broker/exchange/exchange.hpp"

namespace mqnode::broker {

// Exact routing-key match through a hash index.
class DirectExchange final : public Exchange {
 public:
  using Exchange::Exchange;
  void route(const Message& msg, std::vector<BindingTarget>& out) const override;

 private:
  void reindex() override;
  std::unordered_map<std::string, std::vector<BindingTarget>> by_key_;
};

class FanoutExchange final : public Exchange {
 public:
  using Exchange::Exchange;
  void route(const Message& msg, std::vector<BindingTarget>& out) const override;
};

class TopicExchange final : public Exchange {
 public:
  using Exchange::Exchange;
  void route(const Message& msg, std::vector<BindingTarget>& out) const override;
};

class HeadersExchange final : public Exchange {
 public:
  using Exchange::Exchange;
  void route(const Message& msg, std::vector<BindingTarget>& out) const override;
};

}  // namespace mqnode::broker
