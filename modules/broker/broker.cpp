#include "broker/broker.hpp"

#include <array>
#include <set>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "broker/connection.hpp"
#include "core/config.hpp"

namespace mqnode::broker {

namespace {
// A stored policy in the shape of /broker/policies/N, so one parser validates both.
nlohmann::json policy_json(const store::PolicyRecord& r) {
  nlohmann::json definition = nlohmann::json::parse(r.definition, nullptr, /*allow_exceptions=*/false);
  return {{"name", r.name},         {"vhost", r.vhost},       {"pattern", r.pattern},
          {"definition", definition}, {"priority", r.priority}, {"apply_to", r.apply_to}};
}
}  // namespace

void BrokerStats::dump(nlohmann::json& out) const {
#define MQ_DUMP(n, help) out[#n] = n;
  MQ_BROKER_STATS(MQ_DUMP, MQ_DUMP)
#undef MQ_DUMP
}

Broker::Broker(asio::io_context& io, BrokerConfig cfg, core::Logger log, store::Store* store)
    : io_(io), cfg_(std::move(cfg)), access_(cfg_), log_(std::move(log)), store_(store), policies_(cfg_.policies) {
  for (const auto& v : cfg_.vhosts) vhosts_.emplace(v, std::make_unique<Vhost>(v, store_, &policies_, cfg_.queue_ram_bytes));
}

bool Broker::store_flow() {
  if (!store_flow_ && store_ && store_->stats().pending_bytes > cfg_.store_backlog_bytes) {
    store_flow_ = true;
    ++stats_.store_flow_pauses;
  }
  return store_flow_;
}

void Broker::on_store_commit() {
  if (!store_flow_ || store_->stats().pending_bytes > cfg_.store_backlog_bytes / 2) return;
  store_flow_ = false;
  for (auto& [id, c] : connections_) c->resume_reading();
}

bool Broker::update_alarms(const ResourceReading& r) {
  AlarmState next = evaluate_alarms(cfg_.resources, r);
  if (next == alarm_) return false;
  if (next.memory != alarm_.memory)
    log_.warn("memory resource limit alarm {} rss={} limit={}{}", next.memory ? "set" : "cleared", r.rss,
              memory_limit(cfg_.resources, r.total_memory),
              next.memory ? ": publishers are blocked until it clears (raise /broker/vm_memory_high_watermark "
                            "or drain queues)"
                          : "");
  if (next.disk != alarm_.disk)
    log_.warn("disk resource limit alarm {} free={} limit={}{}", next.disk ? "set" : "cleared", r.disk_free,
              cfg_.resources.disk_free_limit,
              next.disk ? ": publishers are blocked until it clears (free space under the data dir)" : "");
  alarm_ = next;
  auto conns = connections_;  // a notification may close a connection
  for (auto& [id, c] : conns) c->alarm_changed();
  return true;
}

void Broker::tick(int64_t now_ms) {
  for (auto& [name, vh] : vhosts_) vh->tick(now_ms);
}

void Broker::restore(const store::Snapshot& snap) {
  // Policies first, so restored queues and exchanges get theirs. One in the config file
  // wins over a stored one of the same name (the file is applied at every start, as
  // RabbitMQ's load_definitions); the stored copy it replaces is dropped.
  for (const auto& r : snap.policies) {
    if (cfg_.policies.find(r.vhost, r.name)) {
      store_->delete_policy(r.vhost, r.name);
      continue;
    }
    if (!vhosts_.count(r.vhost)) {
      log_.warn("store has policy \"{}\" of vhost \"{}\" which is not in /broker/vhosts; it stays on disk, unused",
                r.name, r.vhost);
      continue;
    }
    try {
      policies_.add(parse_policy(core::ConfigNode(policy_json(r), "")));
    } catch (const std::exception& e) {
      log_.warn("stored policy \"{}\" of vhost \"{}\" is not valid, ignored: {}", r.name, r.vhost, e.what());
    }
  }
  for (auto& [name, vh] : vhosts_) vh->restore(snap);
  std::set<std::string> orphans;
  for (const auto& q : snap.queues)
    if (!vhosts_.count(q.vhost)) orphans.insert(q.vhost);
  for (const auto& v : orphans)
    log_.warn("store has queues of vhost \"{}\" which is not in /broker/vhosts; they stay on disk, unused", v);
  log_.info("restored from {}: {} exchanges, {} queues, {} bindings, {} messages, {} policies", store_->path(),
            snap.exchanges.size(), snap.queues.size(), snap.bindings.size(), snap.messages.size(),
            snap.policies.size());
}

Broker::~Broker() = default;

Vhost& Broker::vhost_or_throw(const std::string& name) {
  Vhost* vh = find_vhost(name);
  if (!vh) throw PolicyError(true, fmt::format("vhost '{}' does not exist (vhosts are listed in /broker/vhosts)", name));
  return *vh;
}

void Broker::set_policy(const std::string& vhost, const std::string& name, const std::string& pattern,
                        const nlohmann::json& definition, int64_t priority, const std::string& apply_to) {
  Vhost& vh = vhost_or_throw(vhost);
  store::PolicyRecord r{vhost, name, pattern, apply_to, definition.dump(), priority};
  Policy p;
  try {
    p = parse_policy(core::ConfigNode(policy_json(r), ""));
  } catch (const core::ConfigError& e) {
    throw PolicyError(false, fmt::format("Validation failed: {}", e.what()));
  }
  policies_.set(std::move(p));
  if (store_) store_->put_policy(std::move(r));
  log_.info("policy set vhost={} name={} pattern=\"{}\" apply_to={} priority={} definition={}", vhost, name, pattern,
            apply_to, priority, definition.dump());
  vh.apply_policies();
}

void Broker::clear_policy(const std::string& vhost, const std::string& name) {
  Vhost& vh = vhost_or_throw(vhost);
  if (!policies_.erase(vhost, name))
    throw PolicyError(true, fmt::format("no policy '{}' in vhost '{}'", name, vhost));
  if (store_) store_->delete_policy(vhost, name);
  log_.info("policy cleared vhost={} name={}", vhost, name);
  vh.apply_policies();
}

std::vector<const Policy*> Broker::list_policies(std::string_view vhost) const {
  std::vector<const Policy*> out;
  for (const auto& p : policies_.all())
    if (vhost.empty() || p.vhost == vhost) out.push_back(&p);
  return out;
}

uint64_t Broker::messages_unacked() const {
  uint64_t n = 0;
  for (const auto& [id, c] : connections_) n += c->messages_unacked();
  return n;
}

Vhost* Broker::find_vhost(std::string_view name) {
  auto it = vhosts_.find(name);
  return it == vhosts_.end() ? nullptr : it->second.get();
}

void Broker::add_connection(std::shared_ptr<Connection> c) {
  auto id = c->id();
  connections_.emplace(id, std::move(c));
  stats_.connections = connections_.size();
}

void Broker::remove_connection(uint64_t id) {
  connections_.erase(id);
  stats_.connections = connections_.size();
}

std::string Broker::random_name(std::string_view prefix) {
  std::array<unsigned char, 16> raw{};
  RAND_bytes(raw.data(), static_cast<int>(raw.size()));
  std::string b64(32, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()), raw.data(), static_cast<int>(raw.size()));
  b64.resize(static_cast<std::size_t>(n));
  // URL-safe alphabet without padding, as RabbitMQ's amq.gen- names.
  for (auto& ch : b64) ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return std::string(prefix) + b64;
}

std::string Broker::register_reply_channel(Channel* ch) {
  std::string token = random_name("");
  reply_channels_.emplace(token, ch);
  return token;
}

void Broker::unregister_reply_channel(const std::string& token) {
  reply_channels_.erase(token);
}

Channel* Broker::find_reply_channel(std::string_view token) const {
  auto it = reply_channels_.find(std::string(token));
  return it == reply_channels_.end() ? nullptr : it->second;
}

void Broker::dump(nlohmann::json& out) const {
  stats_.dump(out["stats"]);
  auto& vs = out["vhosts"];
  for (const auto& [name, v] : vhosts_) {
    auto& j = vs[name];
    j["exchanges"] = v->exchanges().size();
    j["queues"] = v->queues().size();
    j["policies"] = list_policies(name).size();
  }
}

}  // namespace mqnode::broker
