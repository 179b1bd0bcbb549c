#include "broker/queue.hpp"

#include <algorithm>

namespace mqnode::broker {

Queue::Queue(QueueDefinition def, std::string vhost, store::Store* store, std::function<void(Queue&)> on_unused)
    : def_(std::move(def)), vhost_(std::move(vhost)), store_(store), on_unused_(std::move(on_unused)) {}

bool Queue::enqueue(MessagePtr msg) {
  if (deleted_) return false;
  uint64_t store_id = 0;
  if (store_ && def_.durable && msg->persistent) {
    const Message& m = *msg;
    store_id = store_->put_message(vhost_, def_.name,
                                   store::MessageContent{msg, m.exchange, m.routing_key, m.properties, m.body});
  }
  ready_.push_back({std::move(msg), false, store_id});
  if (!consumers_.empty()) dispatch();
  return store_id != 0;
}

void Queue::restore(MessagePtr msg, uint64_t store_id) {
  ready_.push_back({std::move(msg), true, store_id});
}

void Queue::forget(const QueueEntry& e) {
  if (e.store_id && store_ && !deleted_) store_->delete_message(e.store_id);
}

void Queue::requeue(std::vector<QueueEntry> entries) {
  if (deleted_) return;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    it->redelivered = true;
    ready_.push_front(std::move(*it));
  }
  dispatch();
}

std::optional<QueueEntry> Queue::get() {
  if (ready_.empty()) return std::nullopt;
  QueueEntry e = std::move(ready_.front());
  ready_.pop_front();
  return e;
}

std::size_t Queue::purge() {
  std::size_t n = ready_.size();
  for (const auto& e : ready_) forget(e);
  ready_.clear();
  return n;
}

void Queue::add_consumer(Consumer* c) {
  consumers_.push_back(c);
  had_consumer_ = true;
  dispatch();
}

bool Queue::remove_consumer(const Consumer* c) {
  auto it = std::find(consumers_.begin(), consumers_.end(), c);
  if (it == consumers_.end()) return false;
  consumers_.erase(it);
  if (next_consumer_ >= consumers_.size()) next_consumer_ = 0;
  if (consumers_.empty() && had_consumer_ && def_.auto_delete && !deleted_ && on_unused_) on_unused_(*this);
  return true;
}

bool Queue::has_exclusive_consumer() const {
  return std::any_of(consumers_.begin(), consumers_.end(), [](const Consumer* c) { return c->exclusive; });
}

void Queue::dispatch() {
  // A delivery can re-enter (a consumer's channel acks or cancels synchronously); the
  // outer loop picks up whatever changed.
  if (dispatching_) return;
  dispatching_ = true;
  while (!ready_.empty() && !consumers_.empty()) {
    std::size_t n = consumers_.size();
    Consumer* chosen = nullptr;
    for (std::size_t i = 0; i < n; ++i) {
      Consumer* c = consumers_[(next_consumer_ + i) % n];
      if (c->target.can_deliver(*c)) {
        chosen = c;
        next_consumer_ = (next_consumer_ + i + 1) % n;
        break;
      }
    }
    if (!chosen) break;
    QueueEntry e = std::move(ready_.front());
    ready_.pop_front();
    chosen->target.deliver(*chosen, std::move(e));
  }
  dispatching_ = false;
}

std::vector<Consumer*> Queue::mark_deleted() {
  deleted_ = true;
  ready_.clear();
  return std::exchange(consumers_, {});
}

}  // namespace mqnode::broker
