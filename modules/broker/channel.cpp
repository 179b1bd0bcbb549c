#include "broker/channel.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "amqp/codec.hpp"
#include "amqp/reply_code.hpp"
#include "broker/broker.hpp"
#include "broker/exchange/exchange.hpp"
#include "broker/queue_args.hpp"
#include "broker/routing.hpp"
#include "broker/vhost.hpp"

namespace mqnode::broker {

using amqp::ChannelError;
using amqp::ChannelReplyCode;
using amqp::ConnectionError;
using amqp::ConnectionReplyCode;

namespace {
constexpr std::string_view kReplyQueue = "amq.rabbitmq.reply-to";
constexpr std::string_view kReplyPrefix = "amq.rabbitmq.reply-to.";

// Property flag bits (spec §4.2.6.1, basic class property order).
constexpr uint16_t kFlagReplyTo = 1u << 9;
constexpr uint16_t kFlagUserId = 1u << 4;

uint16_t property_flags(const std::vector<uint8_t>& raw) {
  return raw.size() >= 2 ? static_cast<uint16_t>(raw[0] << 8 | raw[1]) : 0;
}

[[noreturn]] void precondition(const std::string& text) {
  throw ChannelError(ChannelReplyCode::PreconditionFailed, text);
}
}  // namespace

Channel::Channel(ChannelHost& conn, uint16_t id)
    : conn_(conn),
      id_(id),
      store_since_(conn.broker().store() ? conn.broker().store()->next_message_id() : 0),
      alive_(std::make_shared<Channel*>(this)) {
  ++conn_.broker().stats().channels;
}

Channel::~Channel() {
  *alive_ = nullptr;
  release();
  --conn_.broker().stats().channels;
}

void Channel::after_store_commit(std::function<void(Channel&, bool)> fn) {
  auto* store = conn_.broker().store();
  store->after_commit(
      [alive = std::weak_ptr<Channel*>(alive_), fn = std::move(fn)](bool ok) {
        auto token = alive.lock();
        if (token && *token && !(*token)->closing()) fn(**token, ok);
      },
      store_since_);
  store_since_ = store->next_message_id();
}

template <class M, class F>
auto Channel::when_answered(F then) {
  waiting_ = true;
  return [alive = std::weak_ptr<Channel*>(alive_), then = std::move(then)](auto&&... answer) mutable {
    auto token = alive.lock();
    if (!token || !*token) return;
    Channel& ch = **token;
    ch.waiting_ = false;
    if (ch.closing_) return;
    // A refusal may end the connection and with it this channel: only the host and the
    // channel's number are used after <then>.
    ChannelHost& host = ch.conn_;
    const uint16_t id = ch.id_;
    host.run_guarded(id, [&] { then(ch, std::forward<decltype(answer)>(answer)...); });
    if (*token) host.resume_channel(id);
  };
}

template <class M>
void Channel::propose(Change change, std::function<void(Channel&, const ChangeResult&)> then) {
  conn_.broker().catalog().propose(std::move(change),
                                   when_answered<M>([then = std::move(then)](Channel& ch, const ChangeResult& r) {
                                     if (r.code >= 500)
                                       throw ConnectionError(static_cast<ConnectionReplyCode>(r.code), r.text,
                                                             M::kClassId, M::kMethodId);
                                     if (!r.ok())
                                       throw ChannelError(static_cast<ChannelReplyCode>(r.code), r.text, M::kClassId,
                                                          M::kMethodId);
                                     then(ch, r);
                                   }));
}

template <class M>
void Channel::check_answer(const QueueError& e) {
  if (e) throw ChannelError(static_cast<ChannelReplyCode>(e.code), e.text, M::kClassId, M::kMethodId);
}

ExclusiveOwner Channel::owner() const { return {conn_.broker().catalog().node(), conn_.id()}; }

std::optional<Channel::StashedFrame> Channel::unstash() {
  if (stash_.empty()) return std::nullopt;
  StashedFrame f = std::move(stash_.front());
  stash_.pop_front();
  return f;
}

template <class M>
void Channel::send(const M& m) {
  amqp::append_method_frame(conn_.out(), id_, m);
  conn_.flush();
}

template <class M>
void Channel::on(const M&) {
  throw ConnectionError(ConnectionReplyCode::CommandInvalid, "unimplemented method", M::kClassId, M::kMethodId);
}

void Channel::handle_method(amqp::Method& m) {
  if (publish_)
    throw ConnectionError(ConnectionReplyCode::UnexpectedFrame,
                          publish_->have_header ? "expected content body, got non content body frame instead"
                                                : "expected content header for class 60, got non content header frame instead",
                          amqp::BasicPublish::kClassId, amqp::BasicPublish::kMethodId);
  std::visit(
      [this](auto& method) {
        using M = std::decay_t<decltype(method)>;
        try {
          on(method);
        } catch (ChannelError& e) {
          if (!e.class_id) {
            e.class_id = M::kClassId;
            e.method_id = M::kMethodId;
          }
          throw;
        } catch (ConnectionError& e) {
          if (!e.class_id) {
            e.class_id = M::kClassId;
            e.method_id = M::kMethodId;
          }
          throw;
        }
      },
      m);
}

// ---- channel class -------------------------------------------------------------------

void Channel::on(const amqp::ChannelFlow& m) {
  // RabbitMQ 3.x does not let clients stop deliveries with flow (prefetch does that).
  if (!m.active) throw ConnectionError(ConnectionReplyCode::NotImplemented, "active=false");
  amqp::ChannelFlowOk ok;
  ok.active = true;
  send(ok);
}

void Channel::on(const amqp::ChannelFlowOk&) {}

// ---- lookups and checks --------------------------------------------------------------

Exchange& Channel::exchange_or_404(const std::string& name) {
  Exchange* ex = conn_.vhost().find_exchange(name);
  if (!ex)
    throw ChannelError(ChannelReplyCode::NotFound,
                       fmt::format("no exchange '{}' in vhost '{}'", name, conn_.vhost().name()));
  return *ex;
}

QueueHandlePtr Channel::queue_or_404(const std::string& name) {
  QueueHandlePtr q = conn_.vhost().find_queue(name);
  if (!q)
    throw ChannelError(ChannelReplyCode::NotFound,
                       fmt::format("no queue '{}' in vhost '{}'", name, conn_.vhost().name()));
  return q;
}

void Channel::check_exclusive(const QueueHandle& q) {
  const auto& owner = q.definition().exclusive_owner;
  if (!owner.empty() && owner != this->owner()) throw_locked(q.definition().name);
}

void Channel::throw_locked(const std::string& queue) {
  throw ChannelError(ChannelReplyCode::ResourceLocked,
                       fmt::format("cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be "
                                   "originally declared on another connection or the exclusive property value does "
                                   "not match that of the original declaration.",
                                   queue, conn_.vhost().name()));
}

void Channel::check_permission(Permission what, std::string_view kind, const std::string& name) {
  const auto& vh = conn_.vhost().name();
  if (!conn_.broker().access().permitted(conn_.user(), vh, what, name)) {
    throw ChannelError(ChannelReplyCode::AccessRefused,
                       fmt::format("access to {} '{}' in vhost '{}' refused for user '{}'", kind,
                                   name.empty() ? "amq.default" : name, vh, conn_.user()));
  }
}

void Channel::check_not_default(const std::string& exchange) {
  if (exchange.empty())
    throw ChannelError(ChannelReplyCode::AccessRefused, "operation not permitted on the default exchange");
}

std::string Channel::resolve_queue_name(const std::string& name) const {
  return name.empty() ? last_queue_ : name;
}

// ---- exchange class ------------------------------------------------------------------

void Channel::on(const amqp::ExchangeDeclare& m) {
  check_not_default(m.exchange);
  if (m.passive) {
    exchange_or_404(m.exchange);
    if (!m.nowait) send(amqp::ExchangeDeclareOk{});
    return;
  }
  if (!is_exchange_type(m.type))
    throw ConnectionError(ConnectionReplyCode::CommandInvalid, fmt::format("unknown exchange type '{}'", m.type));
  check_permission(Permission::Configure, "exchange", m.exchange);
  propose<amqp::ExchangeDeclare>(
      DeclareExchange{conn_.vhost().name(), {m.exchange, m.type, m.durable, m.auto_delete, m.internal, m.arguments}},
      [nowait = m.nowait](Channel& ch, const ChangeResult&) {
        if (!nowait) ch.send(amqp::ExchangeDeclareOk{});
      });
}

void Channel::on(const amqp::ExchangeDelete& m) {
  // Name rules before permissions, as RabbitMQ checks them.
  if (auto refused = refuse_exchange_deletion(m.exchange, conn_.vhost().name()); !refused.ok())
    throw ChannelError(static_cast<ChannelReplyCode>(refused.code), refused.text);
  check_permission(Permission::Configure, "exchange", m.exchange);
  propose<amqp::ExchangeDelete>(DeleteExchange{conn_.vhost().name(), m.exchange, m.if_unused},
                                [nowait = m.nowait](Channel& ch, const ChangeResult&) {
                                  if (!nowait) ch.send(amqp::ExchangeDeleteOk{});
                                });
}

template <class M, class Ok>
void Channel::bind_or_unbind(const M& m, bool add, bool to_exchange, const std::string& source,
                             const std::string& destination, const std::string& key, const amqp::FieldTable& args) {
  check_not_default(source);
  if (to_exchange) check_not_default(destination);
  check_permission(Permission::Write, to_exchange ? "exchange" : "queue", destination);
  check_permission(Permission::Read, "exchange", source);
  // queue.unbind has no nowait field: its ok always goes out.
  bool nowait = false;
  if constexpr (requires { m.nowait; }) nowait = m.nowait;
  propose<M>(Bind{conn_.vhost().name(), add, source, to_exchange, destination, key, args, owner()},
             [nowait](Channel& ch, const ChangeResult&) {
               if (!nowait) ch.send(Ok{});
             });
}

void Channel::on(const amqp::ExchangeBind& m) {
  bind_or_unbind<amqp::ExchangeBind, amqp::ExchangeBindOk>(m, true, true, m.source, m.destination, m.routing_key, m.arguments);
}

void Channel::on(const amqp::ExchangeUnbind& m) {
  bind_or_unbind<amqp::ExchangeUnbind, amqp::ExchangeUnbindOk>(m, false, true, m.source, m.destination, m.routing_key, m.arguments);
}

// ---- queue class ---------------------------------------------------------------------

void Channel::on(const amqp::QueueDeclare& m) {
  std::string name = m.queue;
  // declare-ok carries the counts, which live at the queue's home.
  auto declare_ok = [nowait = m.nowait](Channel& ch, const QueueHandlePtr& q) {
    ch.last_queue_ = q->definition().name;
    q->touch();  // any declare, passive too, counts as use for x-expires (as RabbitMQ)
    if (nowait) return;
    q->status(ch.when_answered<amqp::QueueDeclare>([q](Channel& ch, const QueueError& e, QueueStatus s) {
      check_answer<amqp::QueueDeclare>(e);
      amqp::QueueDeclareOk ok;
      ok.queue = q->definition().name;
      ok.message_count = static_cast<uint32_t>(s.messages);
      ok.consumer_count = static_cast<uint32_t>(s.consumers);
      ch.send(ok);
    }));
  };
  if (name == kReplyQueue && m.passive) {  // RabbitMQ answers for the pseudo-queue
    amqp::QueueDeclareOk ok;
    ok.queue = name;
    if (!m.nowait) send(ok);
    return;
  }
  if (m.passive) {
    QueueHandlePtr q = queue_or_404(resolve_queue_name(name));
    check_exclusive(*q);
    declare_ok(*this, q);
    return;
  }
  if (name.empty()) name = conn_.broker().random_name("amq.gen-");
  else if (name.starts_with("amq."))
    throw ChannelError(ChannelReplyCode::AccessRefused,
                       fmt::format("queue name '{}' contains reserved prefix 'amq.*'", name));
  check_permission(Permission::Configure, "queue", name);
  check_queue_limit(name);
  DeclareQueue change{conn_.vhost().name(), {}, owner()};
  change.def.name = name;
  change.def.durable = m.durable;
  change.def.auto_delete = m.auto_delete;
  if (m.exclusive) change.def.exclusive_owner = owner();
  change.def.arguments = m.arguments;
  propose<amqp::QueueDeclare>(std::move(change), [name, exclusive = m.exclusive, declare_ok](Channel& ch,
                                                                                         const ChangeResult& r) {
    if (r.created && exclusive) ch.conn_.own_exclusive_queue(name);
    declare_ok(ch, ch.queue_or_404(name));  // deleted again before the outcome arrived: 404
  });
}

void Channel::check_queue_limit(const std::string& name) const {
  const auto& limits = conn_.broker().config().vhost_limits;
  auto lim = limits.find(conn_.vhost().name());
  if (lim == limits.end() || lim->second.max_queues < 0) return;
  const auto& queues = conn_.vhost().queues();
  if (queues.count(name) || static_cast<int64_t>(queues.size()) < lim->second.max_queues) return;
  throw ChannelError(ChannelReplyCode::PreconditionFailed,
                     fmt::format("cannot declare queue '{}': queue limit in vhost '{}' ({}) is reached", name,
                                 conn_.vhost().name(), lim->second.max_queues),
                     amqp::QueueDeclare::kClassId, amqp::QueueDeclare::kMethodId);
}

void Channel::on(const amqp::QueueBind& m) {
  bind_or_unbind<amqp::QueueBind, amqp::QueueBindOk>(m, true, false, m.exchange, resolve_queue_name(m.queue), m.routing_key, m.arguments);
}

void Channel::on(const amqp::QueueUnbind& m) {
  bind_or_unbind<amqp::QueueUnbind, amqp::QueueUnbindOk>(m, false, false, m.exchange, resolve_queue_name(m.queue), m.routing_key, m.arguments);
}

void Channel::on(const amqp::QueuePurge& m) {
  auto name = resolve_queue_name(m.queue);
  check_permission(Permission::Read, "queue", name);
  QueueHandlePtr q = queue_or_404(name);
  check_exclusive(*q);
  q->purge(when_answered<amqp::QueuePurge>([nowait = m.nowait](Channel& ch, const QueueError& e, std::size_t n) {
    check_answer<amqp::QueuePurge>(e);
    amqp::QueuePurgeOk ok;
    ok.message_count = static_cast<uint32_t>(n);
    if (!nowait) ch.send(ok);
  }));
}

void Channel::on(const amqp::QueueDelete& m) {
  Vhost& vh = conn_.vhost();
  auto name = resolve_queue_name(m.queue);
  check_permission(Permission::Configure, "queue", name);
  auto remove = [name, nowait = m.nowait](Channel& ch, uint32_t count) {
    ch.propose<amqp::QueueDelete>(DeleteQueue{ch.conn_.vhost().name(), name, DeleteReason::Client, ch.owner()},
                                  [count, nowait](Channel& ch, const ChangeResult&) {
                                    amqp::QueueDeleteOk ok;
                                    ok.message_count = count;
                                    if (!nowait) ch.send(ok);
                                  });
  };
  // Deleting a queue that does not exist succeeds with a count of 0 (RabbitMQ ≥ 3.2).
  QueueHandlePtr q = vh.find_queue(name);
  if (!q) return remove(*this, 0);
  check_exclusive(*q);
  // if-unused and if-empty are the queue's own state, asked of its home.
  q->status(when_answered<amqp::QueueDelete>(
      [name, remove, if_unused = m.if_unused, if_empty = m.if_empty](Channel& ch, const QueueError& e, QueueStatus s) {
        const auto& vhost = ch.conn_.vhost().name();
        check_answer<amqp::QueueDelete>(e);
        if (if_unused && s.consumers > 0) precondition(fmt::format("queue '{}' in vhost '{}' in use", name, vhost));
        if (if_empty && s.messages > 0) precondition(fmt::format("queue '{}' in vhost '{}' not empty", name, vhost));
        remove(ch, static_cast<uint32_t>(s.messages));
      }));
}

// ---- basic class: consumers ----------------------------------------------------------

void Channel::on(const amqp::BasicQos& m) {
  if (m.prefetch_size != 0)
    throw ConnectionError(ConnectionReplyCode::NotImplemented, fmt::format("prefetch_size!=0 ({})", m.prefetch_size));
  // RabbitMQ's reinterpretation: global=false limits each consumer created afterwards,
  // global=true limits the channel as a whole.
  if (m.global)
    prefetch_per_channel_ = m.prefetch_count;
  else
    prefetch_per_consumer_ = m.prefetch_count;
  send(amqp::BasicQosOk{});
  resume_deliveries();
}

void Channel::on(const amqp::BasicConsume& m) {
  std::string tag = m.consumer_tag.empty() ? conn_.broker().random_name("amq.ctag-") : m.consumer_tag;
  if (consumers_.count(tag) || (reply_token_ && reply_consumer_tag_ == tag))
    throw ConnectionError(ConnectionReplyCode::NotAllowed,
                          fmt::format("attempt to reuse consumer tag '{}'", tag));
  if (m.queue == kReplyQueue) {
    if (!m.no_ack) precondition("reply consumer cannot acknowledge");
    if (reply_token_) precondition("reply consumer already set");
    reply_token_ = conn_.broker().register_reply_channel(this);
    reply_consumer_tag_ = tag;
    if (!m.nowait) {
      amqp::BasicConsumeOk ok;
      ok.consumer_tag = tag;
      send(ok);
    }
    return;
  }
  auto name = resolve_queue_name(m.queue);
  check_permission(Permission::Read, "queue", name);
  QueueHandlePtr q = queue_or_404(name);
  check_exclusive(*q);
  auto c = std::make_shared<Consumer>(*this, tag, q);
  c->no_ack = m.no_ack;
  c->exclusive = m.exclusive;
  c->prefetch = prefetch_per_consumer_;
  c->arguments = m.arguments;
  if (const auto* prio = m.arguments.find("x-priority")) {
    auto p = prio->as_bool() ? std::nullopt : prio->as_int();
    if (!p) precondition(fmt::format("invalid arg 'x-priority' for consumer of queue '{}': expected an integer", name));
    c->priority = *p;
  }
  // The queue answers before its first delivery, so consume-ok goes out ahead of them.
  q->subscribe(*c, when_answered<amqp::BasicConsume>([c, nowait = m.nowait](Channel& ch, const QueueError& e) {
    check_answer<amqp::BasicConsume>(e);
    ch.consumers_.emplace(c->tag, c);
    ++ch.conn_.broker().stats().consumers;
    if (!nowait) {
      amqp::BasicConsumeOk ok;
      ok.consumer_tag = c->tag;
      ch.send(ok);
    }
  }));
}

void Channel::cancel_consumer(const std::string& tag) {
  auto it = consumers_.find(tag);
  if (it == consumers_.end()) return;
  ConsumerPtr c = std::move(it->second);
  consumers_.erase(it);
  --conn_.broker().stats().consumers;
  c->queue->cancel(*c);
}

void Channel::on(const amqp::BasicCancel& m) {
  if (reply_token_ && m.consumer_tag == reply_consumer_tag_) {
    conn_.broker().unregister_reply_channel(*reply_token_);
    reply_token_.reset();
  } else {
    cancel_consumer(m.consumer_tag);  // unknown tags are not an error (spec §1.8.3.5)
  }
  if (!m.nowait) {
    amqp::BasicCancelOk ok;
    ok.consumer_tag = m.consumer_tag;
    send(ok);
  }
}

void Channel::cancelled_by_server(Consumer& c) {
  std::string tag = c.tag;
  auto it = consumers_.find(tag);
  if (it == consumers_.end()) return;
  consumers_.erase(it);
  --conn_.broker().stats().consumers;
  if (conn_.capabilities().consumer_cancel_notify && !closing_) {
    amqp::BasicCancel cancel;
    cancel.consumer_tag = tag;
    cancel.nowait = true;
    send(cancel);
  }
}

bool Channel::can_deliver(const Consumer& c) const {
  if (closing_) return false;
  if (!c.no_ack) {
    if (c.prefetch && c.unacked >= c.prefetch) return false;
    if (prefetch_per_channel_ && unacked_by_consumers_ >= prefetch_per_channel_) return false;
  }
  return !conn_.output_congested();
}

void Channel::write_delivery(std::string_view consumer_tag, uint64_t tag, bool redelivered, const Message& msg) {
  auto& out = conn_.out();
  // basic.deliver written from views: an amqp::BasicDeliver would copy three strings per
  // delivery. None can exceed a shortstr: each arrived as one.
  const std::size_t size_at = amqp::begin_frame(out, amqp::FrameType::Method, id_);
  amqp::Writer w(out);
  w.u16(amqp::BasicDeliver::kClassId);
  w.u16(amqp::BasicDeliver::kMethodId);
  w.shortstr(consumer_tag);
  w.u64(tag);
  w.u8(redelivered ? 1 : 0);
  w.shortstr(msg.exchange);
  w.shortstr(msg.routing_key);
  amqp::finish_frame(out, size_at);
  amqp::append_content(out, id_, amqp::BasicPublish::kClassId, msg.properties, msg.body, conn_.frame_max());
  conn_.flush();
}

void Channel::deliver(Consumer& c, QueueEntry entry) {
  uint64_t tag = next_delivery_tag_++;
  write_delivery(c.tag, tag, entry.redelivered, *entry.msg);
  auto& stats = conn_.broker().stats();
  ++stats.messages_delivered;
  if (entry.redelivered) ++stats.messages_redelivered;
  count(c.no_ack ? &MessageStats::deliver_no_ack : &MessageStats::deliver, c.queue.get());
  if (entry.redelivered) count(&MessageStats::redeliver, c.queue.get());
  if (c.no_ack) {
    c.queue->ack(entry);
  } else {
    ++c.unacked;
    ++unacked_by_consumers_;
    unacked_.push_back({tag, c.queue, c.shared_from_this(), std::move(entry), false});
  }
}

void Channel::deliver_reply(const MessagePtr& msg) {
  write_delivery(reply_consumer_tag_, next_delivery_tag_++, false, *msg);
  ++conn_.broker().stats().messages_delivered;
  count(&MessageStats::deliver_no_ack);
}

void Channel::count(uint64_t MessageStats::*field, QueueHandle* q, uint64_t n) {
  message_stats_.*field += n;
  conn_.broker().message_stats().*field += n;
  if (q) q->message_stats.*field += n;
}

void Channel::resume_deliveries() {
  // Copy: a dispatch may cancel consumers.
  std::vector<QueueHandlePtr> queues;
  for (const auto& [tag, c] : consumers_) queues.push_back(c->queue);
  for (const auto& q : queues) q->credit();
}

// ---- basic class: get, ack, reject, recover ------------------------------------------

void Channel::on(const amqp::BasicGet& m) {
  auto name = resolve_queue_name(m.queue);
  check_permission(Permission::Read, "queue", name);
  QueueHandlePtr q = queue_or_404(name);
  check_exclusive(*q);
  q->fetch(when_answered<amqp::BasicGet>([q, no_ack = m.no_ack](Channel& ch, const QueueError& e,
                                                                 std::optional<QueueEntry> entry, std::size_t remaining) {
    check_answer<amqp::BasicGet>(e);
    if (!entry) {
      ch.send(amqp::BasicGetEmpty{});
      return;
    }
    uint64_t tag = ch.next_delivery_tag_++;
    amqp::BasicGetOk ok;
    ok.delivery_tag = tag;
    ok.redelivered = entry->redelivered;
    ok.exchange = entry->msg->exchange;
    ok.routing_key = entry->msg->routing_key;
    ok.message_count = static_cast<uint32_t>(remaining);
    auto& out = ch.conn_.out();
    amqp::append_method_frame(out, ch.id_, ok);
    amqp::append_content(out, ch.id_, amqp::BasicPublish::kClassId, entry->msg->properties, entry->msg->body,
                         ch.conn_.frame_max());
    ch.conn_.flush();
    ++ch.conn_.broker().stats().messages_delivered;
    ch.count(no_ack ? &MessageStats::get_no_ack : &MessageStats::get, q.get());
    if (entry->redelivered) ch.count(&MessageStats::redeliver, q.get());
    if (no_ack)
      q->ack(*entry);
    else
      ch.unacked_.push_back({tag, q, nullptr, std::move(*entry), false});
  }));
}

void Channel::check_tag(uint64_t tag, bool multiple) const {
  if (multiple && tag == 0) return;  // "everything outstanding"
  auto it = std::lower_bound(unacked_.begin(), unacked_.end(), tag,
                             [](const Unacked& u, uint64_t t) { return u.tag < t; });
  bool known = multiple ? (!unacked_.empty() && unacked_.front().tag <= tag)
                        : (it != unacked_.end() && it->tag == tag && !it->settled);
  if (!known) precondition(fmt::format("unknown delivery tag {}", tag));
}

void Channel::settle(uint64_t tag, bool multiple, Settle how) {
  check_tag(tag, multiple);
  // A single tag touches one queue: no list (and no allocation) for the common
  // per-message ack.
  QueueHandlePtr single;
  std::vector<QueueHandlePtr> touched;
  std::vector<std::pair<QueueHandlePtr, std::vector<QueueEntry>>> requeue;
  auto settle_one = [&](Unacked& u) {
    if (u.settled) return;
    u.settled = true;
    if (u.consumer) {
      --u.consumer->unacked;
      --unacked_by_consumers_;
    }
    if (!multiple) single = u.queue;
    else if (std::find(touched.begin(), touched.end(), u.queue) == touched.end()) touched.push_back(u.queue);
    if (how == Settle::Requeue) {
      auto it = std::find_if(requeue.begin(), requeue.end(), [&](const auto& p) { return p.first == u.queue; });
      if (it == requeue.end()) it = requeue.insert(requeue.end(), {u.queue, {}});
      it->second.push_back(std::move(u.entry));
    } else if (how == Settle::Ack) {
      ++conn_.broker().stats().messages_acked;
      count(&MessageStats::ack, u.queue.get());
      u.queue->ack(u.entry);
      u.entry.msg.reset();
    } else {  // rejected without requeue: to the dead-letter exchange, if any
      u.queue->reject(std::move(u.entry));
    }
  };
  if (multiple) {
    for (auto& u : unacked_) {
      if (tag != 0 && u.tag > tag) break;
      settle_one(u);
    }
  } else {
    auto it = std::lower_bound(unacked_.begin(), unacked_.end(), tag,
                               [](const Unacked& u, uint64_t t) { return u.tag < t; });
    settle_one(*it);
  }
  while (!unacked_.empty() && unacked_.front().settled) unacked_.pop_front();
  for (auto& [q, entries] : requeue) q->requeue(std::move(entries));
  if (single) single->credit();
  for (auto& q : touched) q->credit();
}

void Channel::on(const amqp::BasicAck& m) {
  if (tx_) {
    check_tag(m.delivery_tag, m.multiple);
    tx_ops_.emplace_back(TxAck{m.delivery_tag, m.multiple, Settle::Ack});
    return;
  }
  settle(m.delivery_tag, m.multiple, Settle::Ack);
}

void Channel::on(const amqp::BasicReject& m) {
  Settle how = m.requeue ? Settle::Requeue : Settle::Drop;
  if (tx_) {
    check_tag(m.delivery_tag, false);
    tx_ops_.emplace_back(TxAck{m.delivery_tag, false, how});
    return;
  }
  settle(m.delivery_tag, false, how);
}

void Channel::on(const amqp::BasicNack& m) {
  Settle how = m.requeue ? Settle::Requeue : Settle::Drop;
  if (tx_) {
    check_tag(m.delivery_tag, m.multiple);
    tx_ops_.emplace_back(TxAck{m.delivery_tag, m.multiple, how});
    return;
  }
  settle(m.delivery_tag, m.multiple, how);
}

void Channel::requeue_all_unacked() {
  if (!unacked_.empty()) settle(0, true, Settle::Requeue);
}

void Channel::on(const amqp::BasicRecoverAsync& m) {
  if (!m.requeue) throw ConnectionError(ConnectionReplyCode::NotImplemented, "requeue=false");
  requeue_all_unacked();
}

void Channel::on(const amqp::BasicRecover& m) {
  if (!m.requeue) throw ConnectionError(ConnectionReplyCode::NotImplemented, "requeue=false");
  requeue_all_unacked();
  send(amqp::BasicRecoverOk{});
}

// ---- basic class: publish ------------------------------------------------------------

void Channel::on(amqp::BasicPublish& m) {
  if (m.immediate) throw ConnectionError(ConnectionReplyCode::NotImplemented, "immediate=true");
  auto cached = write_allowed_.find(m.exchange);
  if (cached == write_allowed_.end()) {
    check_permission(Permission::Write, "exchange", m.exchange);
    write_allowed_.emplace(m.exchange, true);
  }
  Exchange& ex = exchange_or_404(m.exchange);
  if (ex.definition().internal)
    throw ChannelError(ChannelReplyCode::AccessRefused,
                       fmt::format("cannot publish to internal exchange '{}' in vhost '{}'", m.exchange,
                                   conn_.vhost().name()));
  publish_.emplace();
  publish_->method = std::move(m);
}

void Channel::handle_header(const amqp::ContentHeader& h) {
  if (!publish_)
    throw ConnectionError(ConnectionReplyCode::UnexpectedFrame, "expected method frame, got non method frame instead");
  if (publish_->have_header)
    throw ConnectionError(ConnectionReplyCode::UnexpectedFrame, "expected content body, got non content body frame instead",
                          amqp::BasicPublish::kClassId, amqp::BasicPublish::kMethodId);
  if (h.class_id != amqp::BasicPublish::kClassId)
    throw ConnectionError(ConnectionReplyCode::UnexpectedFrame,
                          fmt::format("expected content header for class 60, got one for class {} instead", h.class_id),
                          amqp::BasicPublish::kClassId, amqp::BasicPublish::kMethodId);
  auto max = conn_.broker().config().max_message_size;
  if (h.body_size > max) {
    publish_.reset();
    throw ChannelError(ChannelReplyCode::PreconditionFailed,
                       fmt::format("message size {} is larger than configured max size {}", h.body_size, max),
                       amqp::BasicPublish::kClassId, amqp::BasicPublish::kMethodId);
  }
  // Reject undecodable properties now, before anything routes on them.
  amqp::PropertySummary summary;
  try {
    summary = amqp::validate_properties(h.raw_properties);
  } catch (const amqp::DecodeError& e) {
    throw ConnectionError(ConnectionReplyCode::FrameError, fmt::format("malformed content header: {}", e.what()));
  }
  auto& p = *publish_;
  p.have_header = true;
  p.body_size = h.body_size;
  p.msg = std::make_shared<Message>();
  // Only <mandatory> of the method is read after this.
  p.msg->exchange = std::move(p.method.exchange);
  p.msg->routing_key = std::move(p.method.routing_key);
  p.msg->properties.assign(h.raw_properties.begin(), h.raw_properties.end());
  p.msg->persistent = summary.delivery_mode == 2;
  p.msg->priority = summary.priority;
  if (summary.has_expiration) {
    // Per-message TTL: a non-negative integer of milliseconds, as RabbitMQ requires.
    int64_t ttl = 0;
    auto& e = summary.expiration;
    auto [end, ec] = std::from_chars(e.data(), e.data() + e.size(), ttl);
    if (e.empty() || ec != std::errc() || end != e.data() + e.size() || ttl < 0) {
      publish_.reset();
      throw ChannelError(ChannelReplyCode::PreconditionFailed, fmt::format("invalid expiration '{}'", e),
                         amqp::BasicPublish::kClassId, amqp::BasicPublish::kMethodId);
    }
    p.msg->ttl_ms = ttl;
  }
  p.msg->body.reserve(h.body_size);
  if (h.body_size == 0) publish_complete();
}

void Channel::handle_body(std::span<const uint8_t> data) {
  if (!publish_)
    throw ConnectionError(ConnectionReplyCode::UnexpectedFrame, "expected method frame, got non method frame instead");
  if (!publish_->have_header)
    throw ConnectionError(ConnectionReplyCode::UnexpectedFrame,
                          "expected content header for class 60, got non content header frame instead",
                          amqp::BasicPublish::kClassId, amqp::BasicPublish::kMethodId);
  auto& body = publish_->msg->body;
  if (body.size() + data.size() > publish_->body_size)
    throw ConnectionError(ConnectionReplyCode::FrameError,
                          fmt::format("content body exceeds the declared size {} on channel {}", publish_->body_size, id_));
  body.insert(body.end(), data.begin(), data.end());
  if (body.size() == publish_->body_size) publish_complete();
}

void Channel::publish_complete() {
  PendingPublish p = std::move(*publish_);
  publish_.reset();
  Message& msg = *p.msg;
  auto flags = property_flags(msg.properties);
  if (flags & (kFlagUserId | kFlagReplyTo)) {
    auto props = msg.decode_properties();
    if (props.user_id && *props.user_id != conn_.user())
      throw ChannelError(ChannelReplyCode::PreconditionFailed,
                         fmt::format("user_id property set to '{}' but authenticated user was '{}'", *props.user_id,
                                     conn_.user()),
                         amqp::BasicPublish::kClassId, amqp::BasicPublish::kMethodId);
    if (props.reply_to && *props.reply_to == kReplyQueue) {
      if (!reply_token_)
        throw ChannelError(ChannelReplyCode::PreconditionFailed, "fast reply consumer does not exist",
                           amqp::BasicPublish::kClassId, amqp::BasicPublish::kMethodId);
      props.reply_to = std::string(kReplyPrefix) + *reply_token_;
      msg.properties.clear();
      amqp::encode_properties(props, msg.properties);
    }
  }
  ++conn_.broker().stats().messages_published;
  count(&MessageStats::publish);
  conn_.note_publish();
  MessagePtr shared = std::move(p.msg);
  if (tx_) {
    tx_ops_.emplace_back(TxPublish{std::move(shared), p.method.mandatory});
    return;
  }
  if (!confirm_) {
    route_and_enqueue(shared, p.method.mandatory, {});
    return;
  }
  const uint64_t seq = ++publish_seq_;
  auto routed = route_and_enqueue(shared, p.method.mandatory, remote_settled(seq));
  // A queue that refused the message (x-overflow reject-publish) makes it a nack.
  confirms_.push_back({seq, routed.durable, static_cast<uint32_t>(routed.remote), routed.refused});
  durable_unregistered_ |= routed.durable;
}

Settled Channel::remote_settled(uint64_t seq) {
  // Only a cluster has queues homed elsewhere; a single node saves the allocation.
  if (!conn_.broker().catalog().queue_homes()) return {};
  return [alive = std::weak_ptr<Channel*>(alive_), seq](bool ok) {
    auto token = alive.lock();
    if (!token || !*token || (*token)->closing()) return;
    Channel& ch = **token;
    auto it = std::lower_bound(ch.confirms_.begin(), ch.confirms_.end(), seq,
                               [](const PendingConfirm& c, uint64_t s) { return c.seq < s; });
    if (it == ch.confirms_.end() || it->seq != seq || it->remote == 0) return;
    --it->remote;
    it->nack |= !ok;
    ch.emit_confirms();
  };
}

PublishOutcome Channel::route_and_enqueue(const MessagePtr& msg, bool mandatory, const Settled& settled) {
  auto& stats = conn_.broker().stats();
  if (msg->exchange.empty() && msg->routing_key.starts_with(kReplyPrefix)) {
    Channel* target = conn_.broker().find_reply_channel(std::string_view(msg->routing_key).substr(kReplyPrefix.size()));
    if (target) {
      target->deliver_reply(msg);
      ++stats.messages_routed;
    } else {
      ++stats.messages_unroutable;
      if (mandatory) basic_return(*msg, 312, "NO_ROUTE");
    }
    return {};
  }
  Exchange* ex = conn_.vhost().find_exchange(msg->exchange);
  PublishOutcome out;
  if (ex) out = conn_.vhost().publish(*ex, msg, route_scratch_, {}, settled);
  if (out.queues == 0) {
    ++stats.messages_unroutable;
    if (mandatory) basic_return(*msg, 312, "NO_ROUTE");
    return {};
  }
  ++stats.messages_routed;
  return out;
}

void Channel::basic_return(const Message& msg, uint16_t code, const char* text) {
  amqp::BasicReturn r;
  r.reply_code = code;
  r.reply_text = text;
  r.exchange = msg.exchange;
  r.routing_key = msg.routing_key;
  auto& out = conn_.out();
  amqp::append_method_frame(out, id_, r);
  amqp::append_content(out, id_, amqp::BasicPublish::kClassId, msg.properties, msg.body, conn_.frame_max());
  conn_.flush();
  ++conn_.broker().stats().messages_returned;
  count(&MessageStats::return_unroutable);
}

void Channel::flush_confirms() {
  if (!confirm_) return;
  if (durable_unregistered_) {
    // One store callback per batch of frames covers every durable publish in it.
    durable_unregistered_ = false;
    durable_registered_upto_ = publish_seq_;
    after_store_commit([upto = publish_seq_](Channel& ch, bool ok) { ch.durable_committed(upto, ok); });
  }
  emit_confirms();
}

void Channel::durable_committed(uint64_t upto, bool ok) {
  for (auto& c : confirms_) {
    if (c.seq > upto) break;
    if (!c.durable) continue;
    c.durable = false;
    c.nack |= !ok;
  }
  emit_confirms();
}

void Channel::emit_confirms() {
  auto settled = [](const PendingConfirm& c) { return !c.durable && c.remote == 0; };
  while (!confirms_.empty() && settled(confirms_.front())) {
    if (confirms_.front().nack) {
      amqp::BasicNack nack;
      nack.delivery_tag = confirms_.front().seq;
      confirms_.pop_front();
      send(nack);
      continue;
    }
    // A run of acks goes out as one basic.ack with multiple=true.
    uint64_t first = confirms_.front().seq, last = first;
    while (!confirms_.empty() && settled(confirms_.front()) && !confirms_.front().nack) {
      last = confirms_.front().seq;
      confirms_.pop_front();
    }
    amqp::BasicAck ack;
    ack.delivery_tag = last;
    ack.multiple = last > first;
    send(ack);
    count(&MessageStats::confirm, nullptr, last - first + 1);
  }
}

// ---- confirm and tx ------------------------------------------------------------------

void Channel::on(const amqp::ConfirmSelect& m) {
  if (tx_) precondition("cannot switch from tx to confirm mode");
  confirm_ = true;
  if (!m.nowait) send(amqp::ConfirmSelectOk{});
}

void Channel::on(const amqp::TxSelect&) {
  if (confirm_) precondition("cannot switch from confirm to tx mode");
  tx_ = true;
  send(amqp::TxSelectOk{});
}

void Channel::on(const amqp::TxCommit&) {
  if (!tx_) precondition("channel is not transactional");
  auto ops = std::move(tx_ops_);
  tx_ops_.clear();
  // commit-ok promises the transaction's messages are safe: persistent ones on disk here,
  // and every one handed to its queue's home. Until then the channel waits.
  auto wait = std::make_shared<TxCommitWait>();
  Settled settled;
  if (conn_.broker().catalog().queue_homes())
    settled = [wait](bool ok) {
      wait->ok &= ok;
      --wait->remote;
      tx_commit_progress(wait);
    };
  for (auto& op : ops) {
    if (auto* p = std::get_if<TxPublish>(&op)) {
      auto routed = route_and_enqueue(p->msg, p->mandatory, settled);
      wait->store |= routed.durable;
      wait->remote += routed.remote;
    } else {
      auto& a = std::get<TxAck>(op);
      settle(a.tag, a.multiple, a.how);
    }
  }
  wait->done = when_answered<amqp::TxCommit>([](Channel& ch, bool ok) {
    if (!ok)
      throw ChannelError(ChannelReplyCode::PreconditionFailed,
                         "store write failed or a queue's home node did not take a message; transaction not "
                         "committed (see the broker log)",
                         amqp::TxCommit::kClassId, amqp::TxCommit::kMethodId);
    ch.send(amqp::TxCommitOk{});
  });
  if (wait->store)
    after_store_commit([wait](Channel&, bool ok) {
      wait->ok &= ok;
      wait->store = false;
      tx_commit_progress(wait);
    });
  tx_commit_progress(wait);
}

void Channel::tx_commit_progress(const std::shared_ptr<TxCommitWait>& wait) {
  if (wait->store || wait->remote > 0 || !wait->done) return;
  auto done = std::move(wait->done);
  wait->done = nullptr;
  done(wait->ok);
}

void Channel::on(const amqp::TxRollback&) {
  if (!tx_) precondition("channel is not transactional");
  tx_ops_.clear();
  send(amqp::TxRollbackOk{});
}

// ---- teardown ------------------------------------------------------------------------

void Channel::release() {
  if (released_) return;
  released_ = true;
  closing_ = true;
  publish_.reset();
  tx_ops_.clear();
  if (reply_token_) {
    conn_.broker().unregister_reply_channel(*reply_token_);
    reply_token_.reset();
  }
  auto consumers = std::move(consumers_);
  consumers_.clear();
  for (auto& [tag, c] : consumers) {
    --conn_.broker().stats().consumers;
    c->queue->cancel(*c);
  }
  // Requeue after the consumers are gone, so the messages go to other consumers.
  requeue_all_unacked();
}

}  // namespace mqnode::broker
