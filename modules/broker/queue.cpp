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

std::deque<QueueEntry>& ReadyList::level_of(const QueueEntry& e) {
  // Priorities above the queue's maximum count as the maximum (RabbitMQ).
  return levels_[std::min<std::size_t>(e.msg->priority, levels_.size() - 1)];
}

void ReadyList::push_back(QueueEntry e) {
  bytes_ += e.msg->body.size();
  ++size_;
  level_of(e).push_back(std::move(e));
}

void ReadyList::push_front(QueueEntry e) {
  bytes_ += e.msg->body.size();
  ++size_;
  level_of(e).push_front(std::move(e));
}

QueueEntry& ReadyList::front() {
  for (auto it = levels_.rbegin(); it != levels_.rend(); ++it)
    if (!it->empty()) return it->front();
  return levels_.front().front();  // unreachable when the precondition holds
}

QueueEntry ReadyList::pop_front() {
  for (auto it = levels_.rbegin(); it != levels_.rend(); ++it) {
    if (it->empty()) continue;
    QueueEntry e = std::move(it->front());
    it->pop_front();
    bytes_ -= e.msg->body.size();
    --size_;
    return e;
  }
  return {};
}

void ReadyList::clear() {
  for (auto& l : levels_) l.clear();
  size_ = 0;
  bytes_ = 0;
}

Queue::Queue(QueueDefinition def, std::string vhost, store::Store* store, QueueOwner* owner)
    : def_(std::move(def)),
      vhost_(std::move(vhost)),
      store_(store),
      owner_(owner),
      ready_(static_cast<uint8_t>(def_.args.max_priority.value_or(0))) {}

bool Queue::over_limit(uint64_t extra_messages, uint64_t extra_bytes) const {
  const auto& a = def_.args;
  return (a.max_length && ready_.size() + extra_messages > static_cast<uint64_t>(*a.max_length)) ||
         (a.max_length_bytes && ready_.bytes() + extra_bytes > static_cast<uint64_t>(*a.max_length_bytes));
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
  ready_.push_back(std::move(e));
  if (!consumers_.empty()) dispatch();
  // drop-head: the oldest messages make room (RabbitMQ's default overflow).
  drop_head_over_limit();
  // A TTL of 0 means "deliver now or never".
  if (ttl >= 0) drop_expired_head(now);
  return {true, durable};
}

void Queue::drop_head_over_limit() {
  while (!ready_.empty() && over_limit(0, 0)) dead_letter(ready_.pop_front(), DeathReason::MaxLen);
}

void Queue::set_args(QueueArgs args) {
  args.max_priority = def_.args.max_priority;
  // RabbitMQ restarts the expiry timer with the new value.
  if (args.expires_ms != def_.args.expires_ms) last_used_ = now_ms();
  def_.args = std::move(args);
  // RabbitMQ drops at once only under drop-head; reject-publish refuses new messages until
  // consumers bring the queue under the limit.
  if (def_.args.overflow == Overflow::DropHead) drop_head_over_limit();
}

void Queue::restore(MessagePtr msg, uint64_t store_id) {
  ready_.push_back({std::move(msg), true, store_id});
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
    dead_letter(ready_.pop_front(), DeathReason::Expired);
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
    ready_.push_front(std::move(*it));
  }
  dispatch();
}

std::optional<QueueEntry> Queue::get() {
  touch();
  if (!ready_.empty() && ready_.front().expires_at) drop_expired_head(now_ms());
  if (ready_.empty()) return std::nullopt;
  return ready_.pop_front();
}

std::size_t Queue::purge() {
  std::size_t n = ready_.size();
  ready_.for_each([this](const QueueEntry& e) { forget(e); });
  ready_.clear();
  return n;
}

void Queue::add_consumer(Consumer* c) {
  // Highest priority first, registration order within a level; a single active consumer
  // queue keeps plain registration order (the first is the active one, as RabbitMQ 3.10).
  auto at = def_.args.single_active_consumer
                ? consumers_.end()
                : std::find_if(consumers_.begin(), consumers_.end(),
                               [&](const Consumer* o) { return o->priority < c->priority; });
  consumers_.insert(at, c);
  had_consumer_ = true;
  touch();
  dispatch();
}

bool Queue::remove_consumer(const Consumer* c) {
  auto it = std::find(consumers_.begin(), consumers_.end(), c);
  if (it == consumers_.end()) return false;
  consumers_.erase(it);
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
    Consumer* chosen = pick_consumer();
    if (!chosen) break;
    chosen->target.deliver(*chosen, ready_.pop_front());
  }
  dispatching_ = false;
}

Consumer* Queue::pick_consumer() {
  if (def_.args.single_active_consumer) {
    Consumer* active = consumers_.front();
    return active->target.can_deliver(*active) ? active : nullptr;
  }
  // Walk the priority levels from the top; within a level, round-robin from a rotating
  // offset. Lower levels get messages only while every higher consumer lacks credit.
  const std::size_t n = consumers_.size();
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j < n && consumers_[j]->priority == consumers_[i]->priority) ++j;
    const std::size_t len = j - i;
    for (std::size_t k = 0; k < len; ++k) {
      Consumer* c = consumers_[i + (round_robin_ + k) % len];
      if (c->target.can_deliver(*c)) {
        round_robin_ += k + 1;
        return c;
      }
    }
    i = j;
  }
  return nullptr;
}

std::vector<Consumer*> Queue::mark_deleted() {
  deleted_ = true;
  ready_.clear();
  return std::exchange(consumers_, {});
}

}  // namespace mqnode::broker
