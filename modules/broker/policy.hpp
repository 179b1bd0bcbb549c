// RabbitMQ policies (rabbitmqctl set_policy NAME PATTERN DEFINITION --priority N
// --apply-to queues|exchanges|all): the highest-priority policy whose pattern matches a
// queue's or exchange's name sets its defaults. Queue arguments from clients win where
// RabbitMQ says they do; for TTLs and length limits the lower value applies.
#pragma once

#include <cstdint>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/queue_args.hpp"
#include "core/config.hpp"

namespace mqnode::broker {

enum class ApplyTo { Queues, Exchanges, All };

struct Policy {
  std::string name, vhost, pattern;
  int64_t priority = 0;
  ApplyTo apply_to = ApplyTo::All;
  nlohmann::json definition;  // as given, for listing
  // Parsed definition.
  QueueArgs queue;                       // message-ttl, expires, max-length(-bytes), overflow, dead-letter-*, max-priority
  std::optional<std::string> alternate_exchange;
  std::optional<std::string> ha_mode;    // stored for the cluster: all | exactly | nodes
  nlohmann::json ha_params;
  std::optional<std::string> ha_sync_mode;  // manual | automatic
  std::regex regex;
};

// Parses one policy; throws core::ConfigError naming the JSON path.
Policy parse_policy(core::ConfigNode node);
// "queues" | "exchanges" | "all": the spelling of the config, the store and rabbitmqctl.
const char* apply_to_name(ApplyTo a);

class PolicySet {
 public:
  void add(Policy p) { policies_.push_back(std::move(p)); }
  // Adds <p>, or replaces the policy of the same vhost and name in place.
  void set(Policy p);
  // Removes the policy; false when there is none of that name.
  bool erase(const std::string& vhost, const std::string& name);
  const Policy* find(const std::string& vhost, const std::string& name) const;
  const std::vector<Policy>& all() const { return policies_; }
  // The highest-priority policy applying to <name> (a queue when <is_queue>) in <vhost>.
  const Policy* match(const std::string& vhost, const std::string& name, bool is_queue) const;

 private:
  std::vector<Policy> policies_;
};

// Client arguments merged with the policy (RabbitMQ's rules): for message-ttl, expires,
// max-length and max-length-bytes the lower value wins; otherwise the client's argument.
QueueArgs effective_queue_args(const QueueArgs& client, const Policy* policy);

}  // namespace mqnode::broker
