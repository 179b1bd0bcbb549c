#include "broker/queue.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "amqp/properties.hpp"

namespace mqnode::broker {

const char* death_reason_name(DeathReason r) {
  switch (r) {
    case DeathReason::Rejected: return "rejected";
    case DeathReason::Expired: return "expired";
    case DeathReason::MaxLen: return "maxlen";
  }
  return "";
}


uint64_t ram_cost(const Message& m) {
  // Message, its vectors and strings, the shared_ptr control block and the index entry.
  constexpr uint64_t kOverhead = 224;
  return m.body.size() + m.properties.size() + m.exchange.size() + m.routing_key.size() + kOverhead;
}

namespace {

// The one place a message read back from the store becomes a Message again.
MessagePtr message_from_record(store::MessageRecord&& r) {
  auto m = std::make_shared<Message>();
  m->exchange = std::move(r.exchange);
  m->routing_key = std::move(r.routing_key);
  m->properties = std::move(r.properties);
  m->body = std::move(r.body);
  auto summary = amqp::validate_properties(m->properties);
  m->persistent = summary.delivery_mode == 2;
  m->priority = summary.priority;
  return m;
}

}  // namespace

ReadyList::Level& ReadyList::level_of(uint8_t priority) {
  // Priorities above the queue's maximum count as the maximum (RabbitMQ).
  return levels_[std::min<std::size_t>(priority, levels_.size() - 1)];
}

ReadyList::Level* ReadyList::top() {
  for (auto it = levels_.rbegin(); it != levels_.rend(); ++it)
    if (!it->entries.empty()) return &*it;
  return nullptr;
}

void ReadyList::make_resident(Level& l) {
  resident_cost_ += ram_cost(*l.entries[l.resident].msg);
  ++l.resident;
  l.released_end = std::max(l.released_end, l.resident);
}

void ReadyList::push_back(QueueEntry e, bool resident) {
  bytes_ += e.body_size;
  ++size_;
  Level& l = level_of(e.priority);
  l.entries.push_back(std::move(e));
  if (resident && l.resident + 1 == l.entries.size()) make_resident(l);
}

void ReadyList::push_front(QueueEntry e) {
  bytes_ += e.body_size;
  ++size_;
  Level& l = level_of(e.priority);
  resident_cost_ += ram_cost(*e.msg);
  l.entries.push_front(std::move(e));
  ++l.resident;
  ++l.released_end;
}

QueueEntry& ReadyList::front() { return top()->entries.front(); }

QueueEntry ReadyList::pop_front() {
  Level& l = *top();
  QueueEntry e = std::move(l.entries.front());
  l.entries.pop_front();
  if (l.resident > 0) {
    --l.resident;
    resident_cost_ -= ram_cost(*e.msg);
  }
  if (l.released_end > 0) --l.released_end;
  bytes_ -= e.body_size;
  --size_;
  return e;
}

void ReadyList::clear() {
  for (auto& l : levels_) l = Level{};
  size_ = 0;
  bytes_ = 0;
  resident_cost_ = 0;
}

bool ReadyList::has_paged(uint8_t priority) const {
  const Level& l = levels_[std::min<std::size_t>(priority, levels_.size() - 1)];
  return l.resident < l.entries.size();
}

bool ReadyList::any_paged() const {
  return std::any_of(levels_.begin(), levels_.end(), [](const Level& l) { return l.resident < l.entries.size(); });
}

std::size_t ReadyList::resident() const {
  std::size_t n = 0;
  for (const auto& l : levels_) n += l.resident;
  return n;
}

bool ReadyList::head_ready() {
  Level* l = top();
  if (!l) return false;
  if (l->resident == 0 && l->entries.front().msg) make_resident(*l);
  return l->resident > 0;
}

void ReadyList::fill_head(MessagePtr msg) {
  Level& l = *top();
  l.entries.front().msg = std::move(msg);
  make_resident(l);
}

std::vector<std::pair<uint8_t, uint64_t>> ReadyList::heads_to_load(uint64_t budget, std::size_t max) {
  std::vector<std::pair<uint8_t, uint64_t>> ids;
  uint64_t planned = 0;
  for (std::size_t i = levels_.size(); i-- > 0;) {
    Level& l = levels_[i];
    // Held entries come back for free; released ones are listed, in order, up to the first
    // held one (ids must stay a contiguous run from the level's first paged entry).
    for (std::size_t k = l.resident; k < l.entries.size() && resident_cost_ + planned < budget && ids.size() < max;
         ++k) {
      const QueueEntry& e = l.entries[k];
      if (e.msg) {
        if (k != l.resident) break;
        make_resident(l);
        continue;
      }
      ids.emplace_back(static_cast<uint8_t>(i), e.store_id);
      planned += e.body_size;
    }
  }
  return ids;
}

void ReadyList::fill(uint8_t level, uint64_t store_id, MessagePtr msg) {
  Level& l = levels_[level];
  if (l.resident >= l.entries.size() || l.entries[l.resident].store_id != store_id) return;  // taken meanwhile
  l.entries[l.resident].msg = std::move(msg);
  make_resident(l);
}

void ReadyList::release(const store::Store& store) {
  for (auto& l : levels_) {
    l.released_end = std::max(l.released_end, l.resident);
    while (l.released_end < l.entries.size() && store.durable(l.entries[l.released_end].store_id)) {
      l.entries[l.released_end].msg.reset();
      ++l.released_end;
    }
  }
}

Queue::Queue(QueueDefinition def, std::string vhost, store::Store* store, QueueOwner* owner, uint64_t ram_window,
             const core::Clock& clock)
    : def_(std::move(def)),
      vhost_(std::move(vhost)),
      store_(store),
      owner_(owner),
      ready_(static_cast<uint8_t>(def_.args.max_priority.value_or(0))),
      ram_window_(def_.args.queue_mode == "lazy" ? std::min(ram_window, kLazyRamWindow) : ram_window),
      clock_(clock),
      last_used_(clock.now_ms()) {}

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
  const Message& m = *e.msg;
  auto content = [&] { return store::MessageContent{e.msg, m.exchange, m.routing_key, m.properties, m.body}; };
  if (store_ && def_.durable && m.persistent) e.store_id = store_->put_message(vhost_, def_.name, content());
  bool durable = e.store_id != 0;
  // Beyond the RAM window (or behind messages already paged out: order is kept) the
  // message is written to the store and its content dropped once the write commits.
  bool resident = !paging() || (!ready_.has_paged(e.priority) && ready_.resident_cost() + ram_cost(m) <= ram_window_);
  if (!resident && !e.store_id) e.store_id = store_->put_message(vhost_, def_.name, content(), /*transient=*/true);
  ready_.push_back(std::move(e), resident);
  if (!consumers_.empty()) dispatch();
  // drop-head: the oldest messages make room (RabbitMQ's default overflow).
  drop_head_over_limit();
  // A TTL of 0 means "deliver now or never".
  if (ttl >= 0) drop_expired_head(now);
  return {true, durable};
}

void Queue::drop_head_over_limit() {
  while (!ready_.empty() && over_limit(0, 0))
    dead_letter(take_dying_head(), DeathReason::MaxLen);
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

void Queue::restore(uint64_t store_id, uint8_t priority, uint64_t body_size) {
  QueueEntry e;
  e.store_id = store_id;
  e.priority = priority;
  e.body_size = static_cast<uint32_t>(body_size);
  e.redelivered = true;
  ready_.push_back(std::move(e), false);
}

void Queue::release_paged() {
  if (paging() && ready_.any_paged()) ready_.release(*store_);
  page_in();
}

QueueEntry Queue::take_head() {
  if (!ready_.head_ready()) {
    auto rec = store_->read_message(ready_.front().store_id);
    // A paged-out row can only be missing if the store lost it; deliver nothing rather
    // than a message without content.
    if (!rec) return ready_.pop_front();
    ready_.fill_head(message_from_record(std::move(*rec)));
  }
  return ready_.pop_front();
}

void Queue::page_in() {
  if (!paging() || loading_ || deleted_ || ready_.resident_cost() > ram_window_ / 2 || !ready_.any_paged()) return;
  auto ids = ready_.heads_to_load(ram_window_, 4096);
  if (ids.empty()) return;
  loading_ = true;
  std::vector<uint64_t> just_ids;
  just_ids.reserve(ids.size());
  for (const auto& [level, id] : ids) just_ids.push_back(id);
  store_->load_messages(std::move(just_ids), [weak = weak_from_this(), ids = std::move(ids)](
                                                 std::vector<store::MessageRecord> recs) mutable {
    auto self = weak.lock();
    if (!self) return;
    self->loading_ = false;
    std::size_t i = 0;
    for (auto& rec : recs) {
      while (i < ids.size() && ids[i].second != rec.id) ++i;
      if (i == ids.size()) break;
      self->ready_.fill(ids[i].first, rec.id, message_from_record(std::move(rec)));
    }
    self->dispatch();
  });
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
    dead_letter(take_dying_head(), DeathReason::Expired);
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
  QueueEntry e = take_head();
  page_in();
  if (!e.msg) return std::nullopt;
  return e;
}

std::size_t Queue::purge() {
  std::size_t n = ready_.size();
  ready_.for_each([this](const QueueEntry& e) { forget(e); });
  ready_.clear();
  return n;
}

void Queue::status(std::function<void(QueueError, QueueStatus)> done) {
  done({}, {message_count(), consumer_count()});
}

void Queue::fetch(std::function<void(QueueError, std::optional<QueueEntry>, std::size_t)> done) {
  auto e = get();
  done({}, std::move(e), message_count());
}

void Queue::purge(std::function<void(QueueError, std::size_t)> done) { done({}, purge()); }

void Queue::subscribe(Consumer& c, std::function<void(QueueError)> done) {
  if (has_exclusive_consumer() || (c.exclusive && !consumers_.empty()))
    return done({403, fmt::format("queue '{}' in vhost '{}' in exclusive use", def_.name, vhost_)});
  done({});
  consume(c);  // after the caller's consume-ok: deliveries must follow it
}

void Queue::consume(Consumer& c) {
  // Highest priority first, registration order within a level; a single active consumer
  // queue keeps plain registration order (the first is the active one, as RabbitMQ 3.10).
  auto at = def_.args.single_active_consumer
                ? consumers_.end()
                : std::find_if(consumers_.begin(), consumers_.end(),
                               [&](const Consumer* o) { return o->priority < c.priority; });
  consumers_.insert(at, &c);
  had_consumer_ = true;
  touch();
  dispatch();
}

bool Queue::cancel(const Consumer& c) {
  auto it = std::find(consumers_.begin(), consumers_.end(), &c);
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
    if (!ready_.head_ready()) break;  // page_in() below brings it; its completion dispatches
    Consumer* chosen = pick_consumer();
    if (!chosen) break;
    chosen->target.deliver(*chosen, ready_.pop_front());
  }
  dispatching_ = false;
  page_in();
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
  // A durable queue's rows go with its delete_queue; a transient one's paged-out rows here.
  if (paging() && !def_.durable)
    ready_.for_each([this](const QueueEntry& e) {
      if (e.store_id) store_->delete_message(e.store_id);
    });
  deleted_ = true;
  ready_.clear();
  return std::exchange(consumers_, {});
}

}  // namespace mqnode::broker
