// One AMQP channel: the exchange/queue/basic/confirm/tx methods, the publish
// method → header → body* assembly, consumers with RabbitMQ's prefetch semantics,
// outstanding deliveries (delivery tags), publisher confirms and transactions.
// Handlers throw amqp::ChannelError / ConnectionError; the connection turns them into
// channel.close / connection.close.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "amqp/frame.hpp"
#include "amqp/methods.hpp"
#include "broker/auth.hpp"
#include "broker/change.hpp"
#include "broker/channel_host.hpp"
#include "broker/queue.hpp"

namespace mqnode::broker {

class Exchange;

class Channel final : public DeliveryTarget {
 public:
  Channel(ChannelHost& conn, uint16_t id);
  ~Channel() override;

  uint16_t id() const { return id_; }
  // After this channel sent channel.close it ignores everything until close-ok.
  bool closing() const { return closing_; }
  void set_closing() { closing_ = true; }
  bool expecting_content() const { return publish_.has_value(); }

  // True while a method of this channel waits for its proposal's outcome; the connection
  // stashes the channel's later frames meanwhile and hands them back in order.
  bool waiting() const { return waiting_; }
  struct StashedFrame {
    amqp::FrameType type;
    std::vector<uint8_t> payload;
  };
  void stash(const amqp::FrameView& f) { stash_.push_back({f.type, {f.payload.begin(), f.payload.end()}}); }
  std::optional<StashedFrame> unstash();

  void handle_method(amqp::Method& m);
  void handle_header(const amqp::ContentHeader& h);
  void handle_body(std::span<const uint8_t> data);

  // Returns unacked messages to their queues, cancels consumers, drops tx state.
  // Idempotent; called on channel.close, channel errors and connection end.
  void release();
  // Sends the publisher confirms accumulated while processing a batch of frames.
  void flush_confirms();
  // The socket drained: let queues deliver to this channel's consumers again.
  void resume_deliveries();

  // DeliveryTarget
  bool can_deliver(const Consumer& c) const override;
  void deliver(Consumer& c, QueueEntry entry) override;
  void cancelled_by_server(Consumer& c) override;

  std::size_t unacked_count() const { return unacked_.size(); }
  // This channel's message_stats (the management API's channel rates).
  const MessageStats& message_stats() const { return message_stats_; }

  // Direct reply-to delivery into this channel's reply consumer.
  void deliver_reply(const MessagePtr& msg);

 private:
  struct PendingPublish {
    amqp::BasicPublish method;
    uint64_t body_size = 0;
    bool have_header = false;
    std::shared_ptr<Message> msg;
  };
  struct Unacked {
    uint64_t tag = 0;
    QueueHandlePtr queue;
    ConsumerPtr consumer;  // null for basic.get
    QueueEntry entry;
    bool settled = false;
  };
  enum class Settle { Ack, Requeue, Drop };
  struct TxAck {
    uint64_t tag;
    bool multiple;
    Settle how;
  };
  struct TxPublish {
    MessagePtr msg;
    bool mandatory;
  };

  template <class M>
  void send(const M& m);
  template <class M>
  void on(const M& m);  // methods a client must not send: 503 COMMAND_INVALID

  void on(const amqp::ChannelFlow& m);
  void on(const amqp::ChannelFlowOk& m);
  void on(const amqp::ExchangeDeclare& m);
  void on(const amqp::ExchangeDelete& m);
  void on(const amqp::ExchangeBind& m);
  void on(const amqp::ExchangeUnbind& m);
  void on(const amqp::QueueDeclare& m);
  void on(const amqp::QueueBind& m);
  void on(const amqp::QueueUnbind& m);
  void on(const amqp::QueuePurge& m);
  void on(const amqp::QueueDelete& m);
  void on(const amqp::BasicQos& m);
  void on(const amqp::BasicConsume& m);
  void on(const amqp::BasicCancel& m);
  void on(amqp::BasicPublish& m);  // takes the method's strings (no copy per message)
  void on(const amqp::BasicGet& m);
  void on(const amqp::BasicAck& m);
  void on(const amqp::BasicReject& m);
  void on(const amqp::BasicNack& m);
  void on(const amqp::BasicRecoverAsync& m);
  void on(const amqp::BasicRecover& m);
  void on(const amqp::ConfirmSelect& m);
  void on(const amqp::TxSelect& m);
  void on(const amqp::TxCommit& m);
  void on(const amqp::TxRollback& m);

  // Proposes <change> for method <M>; <then> runs on this channel with the outcome once it
  // is applied (at once on a single node), unless the channel is gone. A refusal becomes
  // the channel or connection exception it names, for <M>.
  template <class M>
  void propose(Change change, std::function<void(Channel&, const ChangeResult&)> then);
  // The callback for an answer to method <M> that this channel waits for (a proposal's
  // outcome, a queue's reply from its home): it runs <then>(channel, answer...) guarded,
  // unless the channel is gone or closing, then replays the frames stashed meanwhile.
  template <class M, class F>
  auto when_answered(F then);
  // A queue's refusal as the channel error it is, for method <M>.
  template <class M>
  static void check_answer(const QueueError& e);
  // The requesting connection, as exclusive queues name their owner.
  ExclusiveOwner owner() const;

  // Lookups that throw the RabbitMQ channel errors.
  Exchange& exchange_or_404(const std::string& name);
  QueueHandlePtr queue_or_404(const std::string& name);
  void check_exclusive(const QueueHandle& q);
  [[noreturn]] void throw_locked(const std::string& queue);
  void check_permission(Permission what, std::string_view kind, const std::string& name);
  // /broker/limits max-queues: a new queue beyond it is 406 PRECONDITION_FAILED (RabbitMQ's text).
  void check_queue_limit(const std::string& name) const;
  void check_not_default(const std::string& exchange);
  std::string resolve_queue_name(const std::string& name) const;  // "" → last declared
  template <class M, class Ok>
  void bind_or_unbind(const M& m, bool add, bool to_exchange, const std::string& source,
                      const std::string& destination, const std::string& key, const amqp::FieldTable& args);

  void publish_complete();
  PublishOutcome route_and_enqueue(const MessagePtr& msg, bool mandatory, const Settled& settled);
  // What a queue homed elsewhere calls when it has (or lost) publish <seq>.
  Settled remote_settled(uint64_t seq);
  struct TxCommitWait {
    bool store = false;       // persistent messages not yet committed here
    std::size_t remote = 0;   // messages not yet taken by their queue's home
    bool ok = true;
    std::function<void(bool ok)> done;  // sends commit-ok (or the error), once
  };
  static void tx_commit_progress(const std::shared_ptr<TxCommitWait>& wait);
  void basic_return(const Message& msg, uint16_t code, const char* text);
  // The store committed (or failed) everything up to publish sequence number <upto>.
  void durable_committed(uint64_t upto, bool ok);
  // Sends the acks/nacks that are settled, oldest first, stopping at the first pending.
  void emit_confirms();
  // Runs <fn> on this channel after the store's next commit, unless the channel is gone;
  // ok covers every message this channel stored since its previous call.
  void after_store_commit(std::function<void(Channel&, bool ok)> fn);

  // Counts <n> of <field> for this channel and the node, and for <q> when given.
  void count(uint64_t MessageStats::*field, QueueHandle* q = nullptr, uint64_t n = 1);
  void write_delivery(std::string_view consumer_tag, uint64_t tag, bool redelivered, const Message& msg);
  // Validates <tag>/<multiple> against outstanding deliveries (406 if unknown).
  void check_tag(uint64_t tag, bool multiple) const;
  void settle(uint64_t tag, bool multiple, Settle how);
  void requeue_all_unacked();
  void cancel_consumer(const std::string& tag);

  ChannelHost& conn_;
  uint16_t id_;
  bool closing_ = false;
  bool released_ = false;
  bool waiting_ = false;
  std::deque<StashedFrame> stash_;
  MessageStats message_stats_;

  std::optional<PendingPublish> publish_;

  std::unordered_map<std::string, ConsumerPtr> consumers_;
  std::deque<Unacked> unacked_;
  uint64_t next_delivery_tag_ = 1;
  uint32_t unacked_by_consumers_ = 0;
  uint16_t prefetch_per_consumer_ = 0;  // basic.qos global=false: for consumers created later
  uint16_t prefetch_per_channel_ = 0;   // basic.qos global=true: shared by all consumers
  std::string last_queue_;              // "the queue last declared on this channel" (§1.8.3.7)

  std::optional<std::string> reply_token_;  // direct reply-to consumer
  std::string reply_consumer_tag_;

  bool confirm_ = false;
  uint64_t publish_seq_ = 0;
  // A publish awaiting its confirm: acked once neither the store nor a remote home owes
  // an answer, nacked if any refused.
  struct PendingConfirm {
    uint64_t seq = 0;
    bool durable = false;  // waits for the store's commit
    uint32_t remote = 0;   // answers due from queues homed on other nodes
    bool nack = false;
  };
  std::deque<PendingConfirm> confirms_;  // oldest first
  uint64_t durable_registered_upto_ = 0;  // covered by an after_store_commit callback
  bool durable_unregistered_ = false;     // a pending confirm not yet covered
  uint64_t store_since_ = 0;              // first store message id not yet vouched for

  // Store completions hold a weak_ptr to this; it dies with the channel.
  std::shared_ptr<Channel*> alive_;

  bool tx_ = false;
  std::vector<std::variant<TxPublish, TxAck>> tx_ops_;

  std::vector<QueueHandle*> route_scratch_;
  std::unordered_map<std::string, bool> write_allowed_;  // per exchange, permission cache
};

}  // namespace mqnode::broker
