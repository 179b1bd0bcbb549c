#include "broker/broker.hpp"

#include <array>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "broker/connection.hpp"
#include "core/config.hpp"

namespace mqnode::broker {

void BrokerStats::dump(nlohmann::json& out) const {
#define MQ_DUMP(n, help) out[#n] = n;
  MQ_BROKER_STATS(MQ_DUMP, MQ_DUMP)
#undef MQ_DUMP
}

Broker::Broker(asio::io_context& io, BrokerConfig cfg, core::Logger log, store::Store* store)
    : io_(io),
      cfg_(std::move(cfg)),
      log_(std::move(log)),
      store_(store),
      catalog_({cfg_.node_name, store_, cfg_.queue_ram_bytes, cfg_.loopback_users}, log_.child("catalog")) {
  catalog_.set_observer(this);
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
  for (auto& [name, vh] : catalog_.vhosts()) vh->tick(now_ms);
}

Broker::~Broker() = default;

void Broker::vhost_deleted(const std::string& vhost) {
  auto conns = connections_;  // closing erases from the live map
  for (auto& [id, c] : conns)
    if (c->vhost_name() == vhost) {
      c->vhost_deleted();
      c->close(amqp::ConnectionReplyCode::ConnectionForced, fmt::format("vhost '{}' is deleted", vhost));
    }
}

void Broker::user_deleted(const std::string& user) {
  auto conns = connections_;
  for (auto& [id, c] : conns)
    if (c->user() == user)
      c->close(amqp::ConnectionReplyCode::ConnectionForced, fmt::format("user '{}' is deleted", user));
}

std::vector<const Policy*> Broker::list_policies(std::string_view vhost) const {
  std::vector<const Policy*> out;
  for (const auto& p : catalog_.policies().all())
    if (vhost.empty() || p.vhost == vhost) out.push_back(&p);
  return out;
}

uint64_t Broker::messages_unacked() const {
  uint64_t n = 0;
  for (const auto& [id, c] : connections_) n += c->messages_unacked();
  return n;
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
  for (const auto& [name, v] : catalog_.vhosts()) {
    auto& j = vs[name];
    j["exchanges"] = v->exchanges().size();
    j["queues"] = v->queues().size();
    j["policies"] = list_policies(name).size();
  }
}

}  // namespace mqnode::broker
