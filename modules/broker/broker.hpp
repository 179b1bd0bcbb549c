// The node-wide broker state shared by all connections: configuration, access control,
// vhosts, live connections and the direct reply-to registry. Loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "broker/auth.hpp"
#include "broker/catalog.hpp"
#include "broker/config.hpp"
#include "broker/message_stats.hpp"
#include "broker/resource_alarm.hpp"
#include "broker/vhost.hpp"
#include "core/log.hpp"

namespace mqnode::broker {

class Connection;
class Channel;

// Counters (C) and gauges (G) declared once with their help text; dump() and
// BrokerModule::metrics() read the same list.
#define MQ_BROKER_STATS(C, G)                                                                     \
  C(connections_accepted, "AMQP connections accepted")                                           \
  C(connections_refused, "AMQP connections refused (max_connections, failed login)")             \
  C(connection_errors, "AMQP connections closed by a connection exception")                      \
  C(channel_errors, "AMQP channels closed by a channel exception")                               \
  C(frames_malformed, "frames that could not be decoded")                                        \
  C(messages_published, "messages published by clients")                                         \
  C(messages_routed, "published messages routed to at least one queue")                          \
  C(messages_unroutable, "published messages routed to no queue")                                \
  C(messages_delivered, "messages delivered to consumers and basic.get")                         \
  C(messages_acked, "deliveries acknowledged by clients")                                        \
  C(messages_redelivered, "deliveries flagged redelivered")                                      \
  C(messages_returned, "unroutable mandatory messages returned to publishers")                   \
  C(store_flow_pauses, "times publishers were paused because the store fell behind")             \
  G(connections, "open AMQP connections")                                                        \
  G(channels, "open AMQP channels")                                                              \
  G(consumers, "consumers")

struct BrokerStats {
#define MQ_COUNTER(n, help) uint64_t n = 0;
  MQ_BROKER_STATS(MQ_COUNTER, MQ_COUNTER)
#undef MQ_COUNTER
  void dump(nlohmann::json& out) const;
};

class Broker final : public CatalogObserver {
 public:
  // <store>: durable state (nullptr: everything in memory, e.g. unit tests).
  Broker(asio::io_context& io, BrokerConfig cfg, core::Logger log, store::Store* store);
  ~Broker() override;

  asio::io_context& io() { return io_; }
  const BrokerConfig& config() const { return cfg_; }
  const AccessControl& access() const { return catalog_.access(); }
  Catalog& catalog() { return catalog_; }
  const Catalog& catalog() const { return catalog_; }
  const core::Logger& log() const { return log_; }
  BrokerStats& stats() { return stats_; }
  const BrokerStats& stats() const { return stats_; }
  // The node's message_stats (the management API's overview); channels count into it.
  MessageStats& message_stats() { return message_stats_; }
  const MessageStats& message_stats() const { return message_stats_; }

  Vhost* find_vhost(std::string_view name) { return catalog_.find_vhost(name); }
  const std::map<std::string, std::unique_ptr<Vhost>, std::less<>>& vhosts() const { return catalog_.vhosts(); }

  // The policies of <vhost>, or of every vhost when it is empty, in definition order.
  std::vector<const Policy*> list_policies(std::string_view vhost) const;
  // Messages delivered and not yet acknowledged, over every channel.
  uint64_t messages_unacked() const;
  store::Store* store() { return store_; }
  // The catalog from the config and what the store kept (<snap>; nullptr: nothing), at start.
  void load(const store::Snapshot* snap) { catalog_.load(cfg_, snap); }
  // Periodic housekeeping on every vhost (TTL, x-expires).
  void tick(int64_t now_ms);
  // Applies a new resource reading: raises or clears the memory/disk alarm and tells every
  // connection. Returns true when the alarm state changed.
  bool update_alarms(const ResourceReading& r);
  const AlarmState& alarm() const { return alarm_; }
  // Back-pressure: true while more message bytes wait for the store than
  // /broker/store_backlog_bytes; publishers then stop being read until half of it is written.
  bool store_flow();
  // The store committed a batch: lifts the back-pressure once the backlog halved.
  void on_store_commit();

  uint64_t next_connection_id() { return ++last_connection_id_; }
  void add_connection(std::shared_ptr<Connection> c);
  void remove_connection(uint64_t id);
  const std::map<uint64_t, std::shared_ptr<Connection>>& connections() const { return connections_; }

  // Direct reply-to (amq.rabbitmq.reply-to): a channel consuming the pseudo-queue gets an
  // unguessable token; replies published to "amq.rabbitmq.reply-to.<token>" reach it.
  std::string register_reply_channel(Channel* ch);
  void unregister_reply_channel(const std::string& token);
  Channel* find_reply_channel(std::string_view token) const;

  // Random URL-safe suffix for server-generated names (amq.gen-, amq.ctag-).
  std::string random_name(std::string_view prefix);

  void dump(nlohmann::json& out) const;

  // CatalogObserver: as RabbitMQ, their connections are closed (320).
  void vhost_deleted(const std::string& vhost) override;
  void user_deleted(const std::string& user) override;

 private:

  asio::io_context& io_;
  BrokerConfig cfg_;
  core::Logger log_;
  store::Store* store_;
  BrokerStats stats_;
  MessageStats message_stats_;
  Catalog catalog_;
  std::map<uint64_t, std::shared_ptr<Connection>> connections_;
  std::unordered_map<std::string, Channel*> reply_channels_;
  uint64_t last_connection_id_ = 0;
  AlarmState alarm_;
  bool store_flow_ = false;
};

}  // namespace mqnode::broker
