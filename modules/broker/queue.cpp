#include "broker/queue.hpp"

#include <algorithm>
#include <chrono>

namespace mqnode::broker {

const char* death_reason_name(DeathReason r) {
  switch (r) {
    case DeathReason::Rejected: return "rejected";
    case DeathReason::Expired: return "expired";
    case DeathReason::MaxLen: return "maxlen";
  }
  return "";
}

int64_t Queue::now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Queue::Queue(QueueDefinition def, std::string vhost, store::Store* store, QueueOwner* owner)
    : def_(std::move(def)), vhost_(std::move(vhost)), store_(store), owner_(owner) {}

void Queue::push_back(QueueEntry e) {
  ready_bytes_ += e.msg->body.size();
  ready_.push_back(std::move(e));
}

QueueEntry Queue::pop_front() {
  QueueEntry e = std::move(ready_.front());
  ready_.pop_front();
  ready_bytes_ -= e.msg->body.size();
  return e;
}

bool Queue::over_limit(uint64_t extra_messages, uint64_t extra_bytes) const {
  const auto& a = def_.args;
  return (a.max_length && ready_.size() + extra_messages > static_cast<uint64_t>(*a.max_length)) ||
         (a.max_length_bytes && ready_bytes_ + extra_bytes > static_cast<uint64_t>(*a.max_length_bytes));
}

EnqueueResult Queue::enqueue(MessagePtr msg) {
  if (deleted_) return {false, false};
  const auto& a = def_.args;
  if (a.overflow != Overflow::DropHead && over_limit(1, msg->body.size())) {
    // reject-publish(-dlx): the newest message is refused, the publisher gets a nack.
    if (a.overflow == Overflow::RejectPublishDlx) dead_letter(QueueEntry{msg}, DeathReason::MaxLen);
    return {false, false};
  }
  QueueEntry e{std::move(msg)};
  int64_t ttl = a.message_ttl_ms.value_or(-1);
  if (e.msg->ttl_ms >= 0 && (ttl < 0 || e.msg->ttl_ms < ttl)) ttl = e.msg->ttl_ms;
  int64_t now = ttl >= 0 ? now_ms() : 0;
  if (ttl >= 0) e.expires_at = now + ttl;
  if (store_ && def_.durable && e.msg->persistent) {
    const Message& m = *e.msg;
    e.store_id = store_->put_message(vhost_, def_.name,
                                     store::MessageContent{e.msg, m.exchange, m.routing_key, m.properties, m.body});
  }
  bool durable = e.store_id != 0;
  push_back(std::move(e));
  if (!consumers_.empty()) dispatch();
  // drop-head: the oldest messages make room (RabbitMQ's default overflow).
  while (!ready_.empty() && over_limit(0, 0)) dead_letter(pop_front(), DeathReason::MaxLen);
  // A TTL of 0 means "deliver now or never".
  if (ttl >= 0) drop_expired_head(now);
  return {true, durable};
}

void Queue::restore(MessagePtr msg, uint64_t store_id) {
  push_back({std::move(msg), true, store_id});
}

void Queue::forget(const QueueEntry& e) {
  if (e.store_id && store_ && !deleted_) store_->delete_message(e.store_id);
}

void Queue::dead_letter(QueueEntry e, DeathReason why) {
  if (owner_)
    owner_->dead_letter(*this, std::move(e), why);
  else
    forget(e);
}

void Queue::drop_expired_head(int64_t now) {
  while (!ready_.empty() && ready_.front().expires_at && ready_.front().expires_at <= now)
    dead_letter(pop_front(), DeathReason::Expired);
}

void Queue::expire(int64_t now_ms) {
  drop_expired_head(now_ms);
}

bool Queue::unused_since(int64_t now) const {
  const auto& exp = def_.args.expires_ms;
  return exp && consumers_.empty() && now - last_used_ >= *exp;
}

void Queue::requeue(std::vector<QueueEntry> entries) {
  if (deleted_) return;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    it->redelivered = true;
    ready_bytes_ += it->msg->body.size();
    ready_.push_front(std::move(*it));
  }
  dispatch();
}

std::optional<QueueEntry> Queue::get() {
  touch();
  if (!ready_.empty() && ready_.front().expires_at) drop_expired_head(now_ms());
  if (ready_.empty()) return std::nullopt;
  return pop_front();
}

std::size_t Queue::purge() {
  std::size_t n = ready_.size();
  for (const auto& e : ready_) forget(e);
  ready_.clear();
  ready_bytes_ = 0;
  return n;
}

void Queue::add_consumer(Consumer* c) {
  consumers_.push_back(c);
  had_consumer_ = true;
  touch();
  dispatch();
}

bool Queue::remove_consumer(const Consumer* c) {
  auto it = std::find(consumers_.begin(), consumers_.end(), c);
  if (it == consumers_.end()) return false;
  consumers_.erase(it);
  if (next_consumer_ >= consumers_.size()) next_consumer_ = 0;
  touch();
  if (consumers_.empty() && had_consumer_ && def_.auto_delete && !deleted_ && owner_) owner_->queue_unused(*this);
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
    if (ready_.front().expires_at) {  // never deliver what has expired (TTL queues only)
      drop_expired_head(now_ms());
      if (ready_.empty()) break;
    }
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
    chosen->target.deliver(*chosen, pop_front());
  }
  dispatching_ = false;
}

std::vector<Consumer*> Queue::mark_deleted() {
  deleted_ = true;
  ready_.clear();
  ready_bytes_ = 0;
  return std::exchange(consumers_, {});
}

}  // namespace mqnode::broker
