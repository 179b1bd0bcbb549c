// A classic queue: ready messages in FIFO order, its consumers served round-robin within
// their prefetch credit. Delivery goes through the DeliveryTarget interface (a channel), so
// the queue knows nothing about sockets and can be unit-tested alone.
//
// Paging (like RabbitMQ's lazy / v2 classic queues): a queue keeps at most its RAM window
// of messages (bodies plus a per-message estimate) resident at its head; later messages are
// written to the store and only a small index entry stays in RAM. As the head drains, the
// store's reader thread loads the next ones back before they are due.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amqp/field_table.hpp"
#include "broker/message.hpp"
#include "broker/queue_args.hpp"
#include "broker/queue_handle.hpp"
#include "core/clock.hpp"
#include "store/store.hpp"

namespace mqnode::broker {

class Queue;
struct Consumer;

struct QueueEntry {
  explicit QueueEntry(MessagePtr m = {})
      : msg(std::move(m)),
        body_size(msg ? static_cast<uint32_t>(msg->body.size()) : 0),
        priority(msg ? msg->priority : 0) {}

  MessagePtr msg;            // null while paged out: the body waits in the store
  uint64_t store_id = 0;     // its row in the store; 0 = kept in memory only
  int64_t expires_at = 0;    // steady-clock ms when its TTL runs out; 0 = never
  uint32_t body_size = 0;    // msg->body.size(), known while paged out too
  uint8_t priority = 0;      // msg->priority, likewise
  bool redelivered = false;
  uint64_t home_tag = 0;     // on a node that is not the queue's home: the home's id for it
};

// What a resident message costs in RAM: its content plus an estimate of the structures
// around it (Message, shared_ptr block, index entry).
uint64_t ram_cost(const Message& m);

// Why a message leaves a queue without being consumed (the x-death "reason").
enum class DeathReason { Rejected, Expired, MaxLen };
const char* death_reason_name(DeathReason r);

// What a queue asks of the vhost that holds it.
class QueueOwner {
 public:
  virtual ~QueueOwner() = default;
  // An auto-delete queue lost its last consumer.
  virtual void queue_unused(Queue& q) = 0;
  // <e> leaves <q> for <why>: republish it through the queue's dead-letter exchange, or
  // drop it. Called after <q> has updated its own state, so it may re-enter <q>.
  virtual void dead_letter(Queue& q, QueueEntry e, DeathReason why) = 0;
};

// Ready messages in delivery order: one FIFO per priority level (x-max-priority), the
// highest level first; a queue without priorities has a single level. Each level is a
// resident prefix (content in RAM) followed by paged entries: first those whose content is
// released (only in the store), then those still held until their write is committed.
class ReadyList {
 public:
  explicit ReadyList(uint8_t max_priority = 0) : levels_(std::size_t{max_priority} + 1) {}
  // At the tail of its priority level: resident only if the level has no paged entries.
  void push_back(QueueEntry e, bool resident = true);
  void push_front(QueueEntry e);  // at the head of its level (requeue); precondition: e.msg
  QueueEntry& front();            // precondition: !empty()
  // Precondition: !empty(); the head need not be resident (a paged head leaves unread).
  QueueEntry pop_front();
  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  uint64_t bytes() const { return bytes_; }  // message bodies, resident or not
  void clear();
  template <class F>
  void for_each(F&& f) const {
    for (const auto& level : levels_)
      for (const auto& e : level.entries) f(e);
  }

  // Paging.
  bool has_paged(uint8_t priority) const;
  bool any_paged() const;
  uint64_t resident_cost() const { return resident_cost_; }
  std::size_t resident() const;
  // True when the head is resident, after promoting it if its content is still held.
  bool head_ready();
  // Gives the head its content (read back from the store) and makes it resident.
  void fill_head(MessagePtr msg);
  // Promotes held heads and lists the ids of released ones to load, highest level first,
  // until <budget> bytes or <max> ids. Each id comes with its level.
  std::vector<std::pair<uint8_t, uint64_t>> heads_to_load(uint64_t budget, std::size_t max);
  // A loaded message for <level>: resident if it is still the first paged entry there.
  void fill(uint8_t level, uint64_t store_id, MessagePtr msg);
  // Drops the content of held entries whose store write is committed.
  void release(const store::Store& store);

 private:
  struct Level {
    std::deque<QueueEntry> entries;
    std::size_t resident = 0;      // entries [0, resident) have their content in RAM
    std::size_t released_end = 0;  // entries [resident, released_end) have none
  };
  Level& level_of(uint8_t priority);
  Level* top();  // the highest non-empty level
  void make_resident(Level& l);  // promotes entries[l.resident]; precondition: it has msg
  std::vector<Level> levels_;    // index = priority
  std::size_t size_ = 0;
  uint64_t bytes_ = 0;
  uint64_t resident_cost_ = 0;
};

// Implemented by Channel: whether a consumer may take one more message now, and the
// delivery itself.
class DeliveryTarget {
 public:
  virtual ~DeliveryTarget() = default;
  virtual bool can_deliver(const Consumer& c) const = 0;
  virtual void deliver(Consumer& c, QueueEntry entry) = 0;
  // The queue went away under the consumer (deleted): basic.cancel to the client.
  virtual void cancelled_by_server(Consumer& c) = 0;
};

struct Consumer : std::enable_shared_from_this<Consumer> {
  Consumer(DeliveryTarget& t, std::string tag_, QueueHandlePtr q)
      : target(t), tag(std::move(tag_)), queue(std::move(q)) {}
  DeliveryTarget& target;
  std::string tag;
  QueueHandlePtr queue;
  bool no_ack = false;
  bool exclusive = false;
  uint32_t prefetch = 0;  // per-consumer limit (basic.qos global=false); 0 = none
  uint32_t unacked = 0;
  int64_t priority = 0;   // x-priority: higher goes first while it has credit
  amqp::FieldTable arguments;
};
using ConsumerPtr = std::shared_ptr<Consumer>;

// An exclusive queue's owner: one connection of one node, so the name means the same on
// every node of a cluster. Empty: the queue is not exclusive.
struct ExclusiveOwner {
  std::string node;
  uint64_t connection = 0;
  bool empty() const { return connection == 0; }
  bool operator==(const ExclusiveOwner&) const = default;
};

struct QueueDefinition {
  std::string name;
  bool durable = false;
  bool auto_delete = false;
  ExclusiveOwner exclusive_owner;
  amqp::FieldTable arguments;
  QueueArgs args;  // <arguments> parsed
  // The node that holds the queue's messages (RabbitMQ's queue leader); the others reach
  // it over the cluster. Empty: the node that applies the definition (a single node).
  std::string home;
};

// The local queue: this node is its home.
class Queue final : public QueueHandle, public std::enable_shared_from_this<Queue> {
 public:
  // <owner>: auto-delete and dead-lettering (nullptr: neither). <store>: where persistent
  // messages of a durable queue are written and where messages beyond <ram_window> bytes
  // are paged out (nullptr: memory only, no paging).
  // <clock>: what TTLs and x-expires count with.
  Queue(QueueDefinition def, std::string vhost, store::Store* store, QueueOwner* owner,
        uint64_t ram_window = kDefaultRamWindow, const core::Clock& clock = core::Clock::steady());
  static constexpr uint64_t kDefaultRamWindow = 64ull << 20;
  // x-queue-mode=lazy: RabbitMQ's "keep as little as possible in RAM".
  static constexpr uint64_t kLazyRamWindow = 256ull << 10;

  const QueueDefinition& definition() const override { return def_; }
  const std::string& name() const { return def_.name; }
  bool deleted() const { return deleted_; }

  // Appends and delivers at once when a consumer has credit, applying the queue's TTL and
  // length limits (x-message-ttl, x-max-length(-bytes), x-overflow).
  EnqueueResult enqueue(MessagePtr msg);
  EnqueueResult enqueue(MessagePtr msg, const Settled&) override { return enqueue(std::move(msg)); }
  // Puts back a message recovered from the store at start, paged out (it is loaded when
  // due) and flagged redelivered (it may have been delivered before the restart).
  void restore(uint64_t store_id, uint8_t priority, uint64_t body_size);
  // Visits the ready messages that are in the store and would be restored from it at start
  // (persistent, or paged out).
  template <class F>
  void for_each_stored(F&& f) const {
    ready_.for_each([&](const QueueEntry& e) {
      if (e.store_id && (!e.msg || e.msg->persistent)) f(e);
    });
  }
  // The message left the queue for good (acked, dropped, or delivered without ack):
  // removes its stored copy.
  void forget(const QueueEntry& e);
  // Puts messages back at the head in the given order, flagged redelivered (RabbitMQ puts
  // requeued messages back in their original order ahead of newer ones).
  void requeue(std::vector<QueueEntry> entries) override;
  std::optional<QueueEntry> get();
  std::size_t purge();
  void status(std::function<void(QueueError, QueueStatus)> done) override;
  void fetch(std::function<void(QueueError, std::optional<QueueEntry>, std::size_t)> done) override;
  void purge(std::function<void(QueueError, std::size_t)> done) override;
  void ack(const QueueEntry& e) override { forget(e); }
  void reject(QueueEntry e) override { dead_letter(std::move(e), DeathReason::Rejected); }

  // The queue refers to its consumers without owning them (their channel does), so
  // queue and consumer never keep each other alive.
  void consume(Consumer& c);
  // consume() unless the queue is in exclusive use (403, RabbitMQ's text).
  void subscribe(Consumer& c, std::function<void(QueueError)> done) override;
  bool cancel(const Consumer& c) override;
  void credit() override { dispatch(); }
  const std::vector<Consumer*>& consumers() const { return consumers_; }
  bool has_exclusive_consumer() const;

  std::size_t message_count() const { return ready_.size(); }
  uint64_t message_bytes() const { return ready_.bytes(); }
  // Ready messages with their content in RAM, and what they cost there.
  std::size_t messages_resident() const { return ready_.resident(); }
  uint64_t resident_cost() const { return ready_.resident_cost(); }
  // Housekeeping: drops the RAM copy of paged-out messages whose write is committed.
  void release_paged();

  // Dead-letters ready messages at the head whose TTL ran out by <now_ms>, and reports
  // whether the queue itself expired (x-expires: unused that long).
  void expire(int64_t now_ms);
  bool unused_since(int64_t now_ms) const;
  // A client used the queue (declare, get, consume): restarts its x-expires clock.
  void touch() override { last_used_ = now_ms(); }
  int64_t now_ms() const { return clock_.now_ms(); }
  std::size_t consumer_count() const { return consumers_.size(); }

  // Delivers ready messages while some consumer has credit. Cheap when nothing can move.
  void dispatch();
  // Sends <e> (taken off this queue) to the dead-letter path.
  void dead_letter(QueueEntry e, DeathReason why);
  // Marks the queue gone: later enqueues/requeues are dropped, consumers are detached.
  std::vector<Consumer*> mark_deleted();
  // A policy change gave the queue new effective arguments (RabbitMQ re-applies policies
  // to live queues): a lower length limit drops the oldest messages at once under
  // drop-head; a TTL applies to messages enqueued from now on, as RabbitMQ stamps expiry at
  // enqueue; a new x-expires counts from now. x-max-priority stays as declared: the
  // priority levels are fixed at creation.
  void set_args(QueueArgs args);

 private:
  // The consumer the next message goes to: the single active one (x-single-active-
  // consumer), else round-robin among the highest-priority consumers with credit.
  Consumer* pick_consumer();
  bool over_limit(uint64_t extra_messages, uint64_t extra_bytes) const;
  // Dead-letters the oldest ready messages while the queue is over its length limits.
  void drop_head_over_limit();
  // Drops expired entries at the head; true if the head is now live (or none).
  void drop_expired_head(int64_t now);
  // Takes the head off for good, with its content (read from the store now if paged out:
  // only for paths that cannot wait, e.g. basic.get).
  QueueEntry take_head();
  // Asks the store's reader for the next paged-out messages when the resident part is
  // below half the window.
  void page_in();
  bool paging() const { return store_ != nullptr; }
  // The head, leaving to be dead-lettered: read back if paged out only when a dead-letter
  // exchange will republish it (otherwise it dies unread).
  QueueEntry take_dying_head() {
    return owner_ && def_.args.dead_letter_exchange ? take_head() : ready_.pop_front();
  }

  QueueDefinition def_;
  std::string vhost_;
  store::Store* store_;
  QueueOwner* owner_;
  ReadyList ready_;
  uint64_t ram_window_;
  bool loading_ = false;  // a page-in request is with the store's reader
  const core::Clock& clock_;
  int64_t last_used_;
  std::vector<Consumer*> consumers_;
  std::size_t round_robin_ = 0;
  bool deleted_ = false;
  bool dispatching_ = false;
  bool had_consumer_ = false;
};

using QueuePtr = std::shared_ptr<Queue>;

}  // namespace mqnode::broker
