#include "broker/broker_module.hpp"

#include <filesystem>

#include <asio/co_spawn.hpp>
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
}

void BrokerModule::start() {
  std::error_code fs_ec;
  std::filesystem::create_directories(ctx_.node.data_dir, fs_ec);
  if (fs_ec)
    throw std::runtime_error(fmt::format("cannot create the data dir {} (/node/data_dir or --data-dir): {}",
                                         ctx_.node.data_dir, fs_ec.message()));
  store_ = std::make_unique<store::Store>(ctx_.io, (std::filesystem::path(ctx_.node.data_dir) / "mqnode.db").string(),
                                          ctx_.log.child("store"));
  broker_ = std::make_unique<Broker>(ctx_.io, cfg_, ctx_.log, store_.get());
  broker_->restore(store_->load());
  store_->on_commit([b = broker_.get()] { b->on_store_commit(); });
  for (const auto& l : cfg_.listeners) {
    auto acc = core::listen(ctx_.io, l, "/broker/listeners");
    ctx_.log.info("listening for AMQP on {}:{}", acc->local_endpoint().address().to_string(), acc->local_endpoint().port());
    asio::co_spawn(ctx_.io, accept_loop(*acc), asio::detached);
    acceptors_.push_back(std::move(acc));
  }
  asio::co_spawn(ctx_.io, housekeeping(), asio::detached);
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
    broker_->tick(Queue::now_ms());
  }
}

void BrokerModule::publish_health() {
  ctx_.events.publish_health(name(), health());
}

asio::awaitable<void> BrokerModule::accept_loop(asio::ip::tcp::acceptor& acceptor) {
  asio::error_code ec;
  asio::steady_timer backoff(ctx_.io);
  while (!stopping_) {
    asio::ip::tcp::socket sock(ctx_.io);
    co_await acceptor.async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) break;
    if (ec) {
      // EMFILE and friends: log, back off, keep accepting.
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
    auto conn = std::make_shared<Connection>(*broker_, std::move(sock), broker_->next_connection_id());
    broker_->add_connection(conn);
    conn->start();
  }
}

asio::awaitable<void> BrokerModule::stop() {
  stopping_ = true;
  publish_health();  // followers (lb, vrrp) drain before the listeners go
  for (auto& a : acceptors_) {
    asio::error_code ec;
    a->close(ec);
  }
  if (!broker_) co_return;
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
  // Everything queued for the store is committed before the process exits.
  auto flushed = std::make_shared<bool>(false);
  store_->after_commit([flushed](bool) { *flushed = true; });
  for (int i = 0; i < 500 && !*flushed; ++i) {
    t.expires_after(10ms);
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

core::Health BrokerModule::health() const {
  if (stopping_) return {core::Health::State::Down, "stopping"};
  if (!broker_) return {core::Health::State::Down, "not started"};
  if (broker_->alarm().any()) return {core::Health::State::Degraded, "resource alarm: " + broker_->alarm().reason()};
  return {core::Health::State::Ok, ""};
}

std::vector<asio::ip::tcp::endpoint> BrokerModule::local_endpoints() const {
  std::vector<asio::ip::tcp::endpoint> out;
  for (const auto& a : acceptors_) out.push_back(a->local_endpoint());
  return out;
}

void BrokerModule::dump(nlohmann::json& out) const {
  if (broker_) broker_->dump(out);
  if (store_) store_->stats().dump(out["store"]);
}

}  // namespace mqnode::broker
