// The four exchange types RabbitMQ ships (direct, fanout, topic, headers).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "broker/exchange/exchange.hpp"
#include "broker/exchange/topic_trie.hpp"

namespace mqnode::broker {

// Exact routing-key match through a hash index of binding positions by key.
class DirectExchange final : public Exchange {
 public:
  using Exchange::Exchange;
  void route(const Message& msg, std::vector<BindingTarget>& out) const override;

 private:
  void indexed(uint32_t pos) override;
  void unindexing(uint32_t pos) override;
  void moved(uint32_t from, uint32_t to) override;
  std::unordered_map<std::string, PositionSet> by_key_;
  PositionSlots slots_;
};

// Every binding matches: route() walks bindings() itself, no index.
class FanoutExchange final : public Exchange {
 public:
  using Exchange::Exchange;
  void route(const Message& msg, std::vector<BindingTarget>& out) const override;
};

// Patterns in a trie over words, so a message visits only the bindings that can match.
class TopicExchange final : public Exchange {
 public:
  using Exchange::Exchange;
  void route(const Message& msg, std::vector<BindingTarget>& out) const override;

 private:
  void indexed(uint32_t pos) override;
  void unindexing(uint32_t pos) override;
  void moved(uint32_t from, uint32_t to) override;
  TopicTrie trie_;
};

// Each binding's arguments are tested against the message headers (as RabbitMQ does:
// a header binding has no key to index by).
class HeadersExchange final : public Exchange {
 public:
  using Exchange::Exchange;
  void route(const Message& msg, std::vector<BindingTarget>& out) const override;
};

}  // namespace mqnode::broker
