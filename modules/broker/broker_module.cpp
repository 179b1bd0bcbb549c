#include "broker/broker_module.hpp"

#include <filesystem>

#include <asio/co_spawn.hpp>
#include <fmt/format.h>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "broker/connection.hpp"
#include "core/events.hpp"

namespace mqnode::broker {

using namespace std::chrono_literals;

void BrokerModule::configure(core::ConfigNode slice) {
  cfg_ = parse_broker_config(std::move(slice));
  cfg_.node_name = ctx_.node.name;
  tls_.clear();
  for (const auto& l : cfg_.listeners) {  // reads the files: a bad one is a config error now
    tls_.push_back(l.tls ? std::make_shared<core::tls::TlsContext>(*l.tls) : nullptr);
    if (l.tls) core::tls::warn_if_expiring(*l.tls, ctx_.log);
  }
}

bool BrokerModule::reload(core::ConfigNode slice) {
  BrokerConfig next = parse_broker_config(std::move(slice));
  // Build every new context before swapping any: a bad file changes nothing.
  std::vector<std::pair<core::tls::TlsContext*, core::tls::TlsContext>> swaps;
  for (std::size_t i = 0; i < next.listeners.size() && i < tls_.size(); ++i)
    if (tls_[i] && next.listeners[i].tls && next.listeners[i].endpoint == cfg_.listeners[i].endpoint)
      swaps.emplace_back(tls_[i].get(), core::tls::TlsContext(*next.listeners[i].tls));
  for (auto& [cur, fresh] : swaps) {
    *cur = std::move(fresh);
    ctx_.log.info("reload: TLS certificates of {} read again", cur->options().path);
    core::tls::warn_if_expiring(cur->options(), ctx_.log);
  }
  // Nothing else of /broker applies at run time (app/ says a restart is needed).
  return false;
}

BrokerModule::~BrokerModule() = default;

void BrokerModule::start() {
  store_ = std::make_unique<store::Store>(ctx_.io, (std::filesystem::path(ctx_.node.data_dir) / "mqnode.db").string(),
                                          ctx_.log.child("store"));
  broker_ = std::make_unique<Broker>(ctx_.io, cfg_, ctx_.log, store_.get());
  auto snap = store_->load();
  if (cluster_cfg_) {
    // The raft log holds the definitions (ClusterMember::start rebuilds the catalog).
    cluster_ = std::make_unique<ClusterMember>(ctx_.io, ctx_.node, *cluster_cfg_, ram_, ctx_.log.child("cluster"));
    cluster_->open();
    // Persistent messages of queues homed here return with the queues' declarations.
    broker_->catalog().hold_stored_messages(snap.messages);
    cluster_->set_facts([this] { return node_facts(); });
    cluster_->set_events(&ctx_.events);
  } else {
    broker_->load(&snap);
  }
  store_->on_commit([b = broker_.get()] { b->on_store_commit(); });
  start_app();
  asio::co_spawn(ctx_.io, housekeeping(), asio::detached);
}

void BrokerModule::start_app() {
  if (cluster_) {
    // Queues homed on other nodes are reached over the cluster links from now on.
    queue_links_ = QueueLinks::create(ctx_.io, broker_->catalog(), cluster_->links(),
                                      [c = cluster_.get()](const std::string& node) { return c->address_of(node); },
                                      ctx_.log.child("queues"));
    cluster_->links()->on_accept(cluster::Purpose::Queues,
                                 [q = queue_links_.get()](cluster::Link link) { q->serve(std::move(link)); });
    broker_->catalog().set_queue_homes(queue_links_.get());
    cluster_->start(broker_->catalog(), cfg_);
  }
  for (std::size_t i = 0; i < cfg_.listeners.size(); ++i) {
    auto acc = core::listen(ctx_.io, cfg_.listeners[i].endpoint, "/broker/listeners");
    ctx_.log.info("listening for {} on {}:{}", tls_[i] ? "AMQPS" : "AMQP", acc->local_endpoint().address().to_string(),
                  acc->local_endpoint().port());
    asio::co_spawn(ctx_.io, accept_loop(*acc, app_generation_ + 1, tls_[i].get()), asio::detached);
    acceptors_.push_back(std::move(acc));
  }
  ++app_generation_;
  app_running_ = true;
  publish_health();
}

asio::awaitable<void> BrokerModule::housekeeping() {
  // Message TTLs, x-expires and paging every 100 ms (RabbitMQ's own expiry is not more
  // precise); memory and disk alarms too: reading them costs two syscalls, and a flood
  // can add a lot of memory in RabbitMQ's one-second monitor interval.
  asio::steady_timer t(ctx_.io);
  asio::error_code ec;
  while (!stopping_) {
    if (broker_->update_alarms(read_resources(ctx_.node.data_dir))) publish_health();
    t.expires_after(100ms);
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) break;
    if (!app_running_) continue;
    broker_->tick(broker_->catalog().clock().now_ms());
    if (cluster_) cluster_->tick();
  }
}

nlohmann::json BrokerModule::node_facts() const {
  nlohmann::json out{{"alarms", nlohmann::json::array()}, {"listeners", nlohmann::json::array()}};
  if (broker_->alarm().memory) out["alarms"].push_back("memory");
  if (broker_->alarm().disk) out["alarms"].push_back("disk");
  for (const auto& e : local_endpoints())
    out["listeners"].push_back({{"interface", e.address().is_v6() ? "[" + e.address().to_string() + "]" : e.address().to_string()},
                                {"port", e.port()},
                                {"protocol", "amqp"},
                                {"purpose", "AMQP 0-9-1"}});
  return out;
}

void BrokerModule::publish_health() {
  ctx_.events.publish_health(name(), health());
}

asio::awaitable<void> BrokerModule::accept_loop(asio::ip::tcp::acceptor& acceptor, uint64_t generation,
                                                const core::tls::TlsContext* tls) {
  asio::error_code ec;
  asio::steady_timer backoff(ctx_.io);
  while (!stopping_) {
    asio::ip::tcp::socket sock(ctx_.io);
    co_await acceptor.async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
    // <acceptor> is gone once the app stopped (and maybe started again: a new generation).
    if (stopping_ || !app_running_ || generation != app_generation_) break;
    if (ec && core::FdReserve::exhausted(ec) && fd_reserve_.refuse(acceptor.native_handle())) {
      // Out of descriptors: the waiting client is closed at once, the connections up keep
      // working; one log line per 10 s says how many were refused.
      ++broker_->stats().connections_refused;
      ++fd_refused_;
      if (auto now = std::chrono::steady_clock::now(); now - fd_warned_at_ >= 10s) {
        ctx_.log.warn("connection refused: out of file descriptors (errno={}); refused={} connections={}", ec.value(),
                      fd_refused_, broker_->connections().size());
        fd_warned_at_ = now;
        fd_refused_ = 0;
      }
      continue;
    }
    if (ec) {
      // Other accept errors: log, back off, keep accepting.
      ctx_.log.warn("accept failed error=\"{}\"", ec.message());
      backoff.expires_after(100ms);
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    auto& stats = broker_->stats();
    if (cfg_.max_connections && broker_->connections().size() >= cfg_.max_connections) {
      ++stats.connections_refused;
      ctx_.log.warn("connection refused: max_connections={} reached", cfg_.max_connections);
      continue;  // socket closes as it goes out of scope
    }
    ++stats.connections_accepted;
    auto conn = std::make_shared<Connection>(*broker_, std::move(sock), broker_->next_connection_id(), tls);
    broker_->add_connection(conn);
    conn->start();
  }
}

asio::awaitable<void> BrokerModule::stop() {
  stopping_ = true;
  if (broker_) co_await stop_app();
  if (cluster_) cluster_->close();
}

asio::awaitable<void> BrokerModule::stop_app() {
  app_running_ = false;
  publish_health();  // followers (lb, vrrp) drain before the listeners go
  for (auto& a : acceptors_) {
    asio::error_code ec;
    a->close(ec);
  }
  acceptors_.clear();
  auto conns = broker_->connections();
  if (!conns.empty()) ctx_.log.info("closing {} connections", conns.size());
  for (auto& [id, c] : conns) c->close(amqp::ConnectionReplyCode::ConnectionForced, "broker forced connection closure with reason 'shutdown'");
  // Give clients a moment to answer close-ok; connections stop themselves after 3 s anyway.
  asio::steady_timer t(ctx_.io);
  asio::error_code ec;
  for (int i = 0; i < 50 && !broker_->connections().empty(); ++i) {
    t.expires_after(20ms);
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  auto stragglers = broker_->connections();  // stop() erases from the live map
  for (auto& [id, c] : stragglers) c->stop();
  if (cluster_) {
    // Raft writes what it appended before it closes (5 s at most): not on the loop.
    auto stopped = std::make_shared<bool>(false);
    cluster_->stop_async([stopped] { *stopped = true; });
    while (!*stopped) {
      t.expires_after(10ms);
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  if (queue_links_) {
    cluster_->links()->on_accept(cluster::Purpose::Queues, nullptr);
    queue_links_->close();
    broker_->catalog().set_queue_homes(nullptr);
    queue_links_.reset();
  }
  // Everything queued for the store is committed before the process exits.
  auto flushed = std::make_shared<bool>(false);
  store_->after_commit([flushed](bool) { *flushed = true; });
  for (int i = 0; i < 500 && !*flushed; ++i) {
    t.expires_after(10ms);
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> BrokerModule::stop_app_then(CommandDone done) {
  co_await stop_app();
  done({200, fmt::format("Stopping rabbit application on node {} ...", ctx_.node.name), {}});
}

void BrokerModule::command(const std::string& op, const nlohmann::json& args, CommandDone done) {
  auto need_cluster = [&] {
    done({409, fmt::format("Error: node {} is not configured for clustering: add the /cluster section to its config",
                           ctx_.node.name),
          {}});
  };
  if (stopping_ || !broker_) return done({503, "Error: the node is stopping", {}});
  if (op == "stop_app") {
    if (!app_running_) return done({200, fmt::format("Stopping rabbit application on node {} ...", ctx_.node.name), {}});
    asio::co_spawn(ctx_.io, stop_app_then(std::move(done)), asio::detached);
  } else if (op == "start_app") {
    if (!app_running_) {
      try {
        start_app();
      } catch (const std::exception& e) {
        return done({500, fmt::format("Error: cannot start the broker app: {}", e.what()), {}});
      }
    }
    done({200, fmt::format("Starting node {} ...", ctx_.node.name), {}});
  } else if (op == "await_startup") {
    // The app runs, and in a cluster raft knows a leader; ctl asks until then.
    if (app_running_ && (!cluster_ || cluster_->ready())) return done({200, {}, {}});
    done({409, fmt::format("node {} has not finished starting up", ctx_.node.name), {}});
  } else if (cluster_) {
    cluster_->command(op, args, std::move(done));  // modules/broker/cluster_member.hpp
  } else {
    need_cluster();
  }
}

core::Health BrokerModule::health() const {
  if (stopping_) return {core::Health::State::Down, "stopping"};
  if (!broker_) return {core::Health::State::Down, "not started"};
  if (!app_running_) return {core::Health::State::Down, "broker app stopped (mqnode ctl start_app)"};
  if (broker_->alarm().any()) return {core::Health::State::Degraded, "resource alarm: " + broker_->alarm().reason()};
  return {core::Health::State::Ok, ""};
}

std::vector<asio::ip::tcp::endpoint> BrokerModule::local_endpoints() const {
  std::vector<asio::ip::tcp::endpoint> out;
  for (const auto& a : acceptors_) out.push_back(a->local_endpoint());
  return out;
}

std::vector<core::tls::TlsListener> BrokerModule::tls_listeners() const {
  std::vector<core::tls::TlsListener> out;
  for (std::size_t i = 0; i < acceptors_.size() && i < tls_.size(); ++i)  // acceptors_ in cfg_.listeners' order
    if (tls_[i]) out.push_back({"amqp/ssl", acceptors_[i]->local_endpoint(), tls_[i]->options()});
  return out;
}

void BrokerModule::dump(nlohmann::json& out) const {
  if (broker_) broker_->dump(out);
  if (store_) store_->stats().dump(out["store"]);
  if (cluster_) cluster_->dump(out["cluster"]);
  if (queue_links_) queue_links_->dump(out["queue_links"]);
}

void BrokerModule::metrics(core::MetricsWriter& out) const {
  using Type = core::MetricsWriter::Type;
  if (!broker_) return;
  const BrokerStats& st = broker_->stats();
#define MQ_COUNTER(n, help)                                        \
  out.family("mqnode_broker_" #n "_total", Type::Counter, help); \
  out.sample(static_cast<double>(st.n));
#define MQ_GAUGE(n, help)                                  \
  out.family("mqnode_broker_" #n, Type::Gauge, help); \
  out.sample(static_cast<double>(st.n));
  MQ_BROKER_STATS(MQ_COUNTER, MQ_GAUGE)
#undef MQ_COUNTER
#undef MQ_GAUGE
  out.family("mqnode_broker_messages_unacked", Type::Gauge, "deliveries awaiting acknowledgement");
  out.sample(static_cast<double>(broker_->messages_unacked()));
  out.family("mqnode_broker_alarm", Type::Gauge, "1 while a resource alarm blocks publishers");
  out.sample({{"resource", "memory"}}, broker_->alarm().memory ? 1 : 0);
  out.sample({{"resource", "disk"}}, broker_->alarm().disk ? 1 : 0);

  // Per queue, as RabbitMQ's rabbitmq_queue_* families (one sample per vhost and queue).
  struct QueueFamily {
    const char* name;
    const char* help;
    double (*value)(const Queue&);
  };
  static constexpr QueueFamily kQueueFamilies[] = {
      {"mqnode_queue_messages_ready", "messages ready for delivery",
       [](const Queue& q) { return static_cast<double>(q.message_count()); }},
      {"mqnode_queue_messages_ready_bytes", "body bytes of the ready messages",
       [](const Queue& q) { return static_cast<double>(q.message_bytes()); }},
      {"mqnode_queue_messages_ram", "ready messages with their content in RAM (the rest is paged out)",
       [](const Queue& q) { return static_cast<double>(q.messages_resident()); }},
      {"mqnode_queue_messages_ram_bytes", "estimated RAM held by the resident ready messages (bounded by queue_ram_bytes)",
       [](const Queue& q) { return static_cast<double>(q.resident_cost()); }},
      {"mqnode_queue_consumers", "consumers of the queue",
       [](const Queue& q) { return static_cast<double>(q.consumer_count()); }},
  };
  for (const auto& f : kQueueFamilies) {
    out.family(f.name, Type::Gauge, f.help);
    for (const auto& [vname, vh] : broker_->vhosts())
      for (const auto& [qname, q] : vh->queues()) out.sample({{"vhost", vname}, {"queue", qname}}, f.value(*q));
  }

  if (!store_) return;
  // The store's counters are declared without help texts (MQ_STORE_STATS); their names say it.
  const store::StoreStats& ss = store_->stats();
#define MQ_COUNTER(n)                                                                       \
  out.family("mqnode_store_" #n "_total", Type::Counter, "SQLite store: " #n " since start"); \
  out.sample(static_cast<double>(ss.n));
#define MQ_GAUGE(n)                                                       \
  out.family("mqnode_store_" #n, Type::Gauge, "SQLite store: " #n " now"); \
  out.sample(static_cast<double>(ss.n));
  MQ_STORE_STATS(MQ_COUNTER, MQ_GAUGE)
#undef MQ_COUNTER
#undef MQ_GAUGE
}

}  // namespace mqnode::broker
