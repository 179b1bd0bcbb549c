#include "broker/policy.hpp"

#include <limits>

#include <fmt/format.h>

namespace mqnode::broker {

namespace {
void lower(std::optional<int64_t>& client, const std::optional<int64_t>& policy) {
  if (policy && (!client || *policy < *client)) client = policy;
}
}  // namespace

Policy parse_policy(core::ConfigNode n) {
  Policy p;
  p.name = n.required_string("name");
  p.vhost = n.string("vhost", "/");
  p.pattern = n.required_string("pattern");
  try {
    p.regex = std::regex(p.pattern);
  } catch (const std::regex_error& e) {
    n.fail("pattern", fmt::format("a regular expression ({})", e.what()));
  }
  p.priority = n.integer("priority", 0, -1000000, 1000000);
  auto apply = n.string("apply_to", "all");
  if (apply == "queues") p.apply_to = ApplyTo::Queues;
  else if (apply == "exchanges") p.apply_to = ApplyTo::Exchanges;
  else if (apply == "all") p.apply_to = ApplyTo::All;
  else n.fail("apply_to", "\"queues\", \"exchanges\" or \"all\"");
  if (!n.has("definition")) n.fail("definition", "an object with at least one key");
  p.definition = n.raw("definition");
  auto d = n.object("definition");
  // Marks every supported key known up front, so an unknown key's error lists them all.
  for (const char* key : {"message-ttl", "expires", "max-length", "max-length-bytes", "max-priority", "overflow",
                          "dead-letter-exchange", "dead-letter-routing-key", "alternate-exchange", "ha-mode",
                          "ha-params", "ha-sync-mode"})
    d.raw(key);
  auto non_negative = [&](const char* key, bool zero_ok) -> std::optional<int64_t> {
    if (!d.has(key)) return std::nullopt;
    return d.integer(key, 0, zero_ok ? 0 : 1, std::numeric_limits<int64_t>::max());
  };
  p.queue.message_ttl_ms = non_negative("message-ttl", true);
  p.queue.expires_ms = non_negative("expires", false);
  p.queue.max_length = non_negative("max-length", true);
  p.queue.max_length_bytes = non_negative("max-length-bytes", true);
  if (d.has("max-priority")) p.queue.max_priority = d.integer("max-priority", 0, 1, 255);
  if (d.has("overflow")) {
    auto o = d.string("overflow", "");
    if (o == "drop-head") p.queue.overflow = Overflow::DropHead;
    else if (o == "reject-publish") p.queue.overflow = Overflow::RejectPublish;
    else if (o == "reject-publish-dlx") p.queue.overflow = Overflow::RejectPublishDlx;
    else d.fail("overflow", "\"drop-head\", \"reject-publish\" or \"reject-publish-dlx\"");
  }
  if (d.has("dead-letter-exchange")) p.queue.dead_letter_exchange = d.string("dead-letter-exchange", "");
  if (d.has("dead-letter-routing-key")) p.queue.dead_letter_routing_key = d.string("dead-letter-routing-key", "");
  if (d.has("alternate-exchange")) p.alternate_exchange = d.string("alternate-exchange", "");
  if (d.has("ha-mode")) {
    p.ha_mode = d.string("ha-mode", "");
    if (*p.ha_mode != "all" && *p.ha_mode != "exactly" && *p.ha_mode != "nodes")
      d.fail("ha-mode", "\"all\", \"exactly\" or \"nodes\"");
  }
  p.ha_params = d.raw("ha-params");
  if (p.ha_mode == "exactly" && !(p.ha_params.is_number_integer() && p.ha_params.get<int64_t>() >= 1))
    d.fail("ha-params", "a positive integer (ha-mode exactly)");
  if (p.ha_mode == "nodes" && !(p.ha_params.is_array() && !p.ha_params.empty()))
    d.fail("ha-params", "a non-empty list of node names (ha-mode nodes)");
  if (!p.ha_params.is_null() && (!p.ha_mode || *p.ha_mode == "all"))
    d.fail("ha-params", "nothing unless ha-mode is exactly or nodes");
  if (d.has("ha-sync-mode")) {
    p.ha_sync_mode = d.string("ha-sync-mode", "");
    if (*p.ha_sync_mode != "manual" && *p.ha_sync_mode != "automatic")
      d.fail("ha-sync-mode", "\"manual\" or \"automatic\"");
  }
  d.finish();
  n.finish();
  return p;
}

const char* apply_to_name(ApplyTo a) {
  switch (a) {
    case ApplyTo::Queues: return "queues";
    case ApplyTo::Exchanges: return "exchanges";
    case ApplyTo::All: return "all";
  }
  return "all";
}

void PolicySet::set(Policy p) {
  for (auto& o : policies_)
    if (o.vhost == p.vhost && o.name == p.name) {
      o = std::move(p);
      return;
    }
  policies_.push_back(std::move(p));
}

bool PolicySet::erase(const std::string& vhost, const std::string& name) {
  return std::erase_if(policies_, [&](const Policy& p) { return p.vhost == vhost && p.name == name; }) != 0;
}

const Policy* PolicySet::find(const std::string& vhost, const std::string& name) const {
  for (const auto& p : policies_)
    if (p.vhost == vhost && p.name == name) return &p;
  return nullptr;
}

const Policy* PolicySet::match(const std::string& vhost, const std::string& name, bool is_queue) const {
  const Policy* best = nullptr;
  for (const auto& p : policies_) {
    if (p.vhost != vhost) continue;
    if (p.apply_to == (is_queue ? ApplyTo::Exchanges : ApplyTo::Queues)) continue;
    if (!std::regex_search(name, p.regex)) continue;
    if (!best || p.priority > best->priority) best = &p;
  }
  return best;
}

QueueArgs effective_queue_args(const QueueArgs& client, const Policy* policy) {
  QueueArgs out = client;
  if (!policy) return out;
  const QueueArgs& p = policy->queue;
  lower(out.message_ttl_ms, p.message_ttl_ms);
  lower(out.expires_ms, p.expires_ms);
  lower(out.max_length, p.max_length);
  lower(out.max_length_bytes, p.max_length_bytes);
  if (!out.dead_letter_exchange) out.dead_letter_exchange = p.dead_letter_exchange;
  if (!out.dead_letter_routing_key) out.dead_letter_routing_key = p.dead_letter_routing_key;
  if (!out.max_priority) out.max_priority = p.max_priority;
  if (!out.overflow_set && policy->definition.contains("overflow")) out.overflow = p.overflow;
  return out;
}

}  // namespace mqnode::broker
