#include "broker/vhost.hpp"

#include <algorithm>
#include <chrono>

#include "amqp/codec.hpp"
#include "broker/catalog.hpp"
#include "broker/queue_args.hpp"

namespace mqnode::broker {

namespace {
store::Bytes encode_table(const amqp::FieldTable& t) {
  store::Bytes out;
  amqp::Writer w(out);
  w.table(t);
  return out;
}

amqp::FieldTable decode_table(const store::Bytes& b) {
  amqp::Reader r(b);
  return r.table();
}
}  // namespace

Vhost::Vhost(std::string name, Catalog& catalog, const PolicySet& policies, uint64_t queue_ram_bytes)
    : name_(std::move(name)), catalog_(catalog), store_(catalog.store()), policies_(policies),
      queue_ram_bytes_(queue_ram_bytes) {
  // RabbitMQ's predeclared exchanges (AMQP 0-9-1 §3.1.3.1 plus amq.rabbitmq.trace). They
  // exist in every vhost by definition, so they are neither proposed nor stored.
  const struct {
    const char* name;
    const char* type;
    bool internal;
  } kStandard[] = {{"", "direct", false},          {"amq.direct", "direct", false},
                   {"amq.fanout", "fanout", false}, {"amq.topic", "topic", false},
                   {"amq.headers", "headers", false}, {"amq.match", "headers", false},
                   {"amq.rabbitmq.trace", "topic", true}};
  for (const auto& e : kStandard) {
    auto ex = make_exchange({e.name, e.type, true, false, e.internal, {}});
    exchanges_.emplace(e.name, std::move(ex));
  }
}

// Runs before the change is enacted: a deletion must see what it deletes.
template <class C>
void Vhost::persist(const C& change) {
  if (!catalog_.persisting()) return;
  if constexpr (std::is_same_v<C, DeclareExchange>) {
    const auto& d = change.def;
    if (d.durable) store_->put_exchange({name_, d.name, d.type, d.auto_delete, d.internal, encode_table(d.arguments)});
  } else if constexpr (std::is_same_v<C, DeleteExchange>) {
    if (const Exchange* ex = find_exchange(change.name); ex && ex->definition().durable)
      store_->delete_exchange(name_, change.name);
  } else if constexpr (std::is_same_v<C, DeclareQueue>) {
    // Exclusive queues die with their connection, so never outlive a restart.
    const auto& d = change.def;
    if (d.durable && d.exclusive_owner.empty())
      store_->put_queue({name_, d.name, d.auto_delete, encode_table(d.arguments)});
  } else if constexpr (std::is_same_v<C, DeleteQueue>) {
    if (auto queue = find_queue(change.name); queue && queue->definition().durable)
      store_->delete_queue(name_, change.name);
  } else {
    static_assert(std::is_same_v<C, Bind>);
    // As RabbitMQ: a binding is durable when both its ends are.
    const Exchange* src = find_exchange(change.source);
    bool dest_durable = false;
    if (change.to_exchange) {
      const Exchange* dest = find_exchange(change.destination);
      dest_durable = dest && dest->definition().durable;
    } else {
      auto dest = find_queue(change.destination);
      dest_durable = dest && dest->definition().durable && dest->definition().exclusive_owner.empty();
    }
    if (src && src->definition().durable && dest_durable && !change.source.empty()) {
      store::BindingRecord r{name_,          change.source, change.to_exchange, change.destination,
                             change.key,     encode_table(change.arguments)};
      if (change.add)
        store_->put_binding(std::move(r));
      else
        store_->delete_binding(std::move(r));
    }
  }
}

void Vhost::restore(const store::Snapshot& snap) {
  for (const auto& e : snap.exchanges)
    if (e.vhost == name_ && !find_exchange(e.name))
      apply(DeclareExchange{name_, {e.name, e.type, true, e.auto_delete, e.internal, decode_table(e.arguments)}});
  for (const auto& q : snap.queues) {
    if (q.vhost != name_ || find_queue(q.name)) continue;
    DeclareQueue c{name_, {}, {}};
    c.def.name = q.name;
    c.def.durable = true;
    c.def.auto_delete = q.auto_delete;
    c.def.arguments = decode_table(q.arguments);
    c.def.args = parse_queue_args(c.def.arguments, c.def.name, name_);
    apply(c);
  }
  for (const auto& b : snap.bindings)
    if (b.vhost == name_)
      apply(Bind{name_, true, b.source, b.to_exchange, b.destination, b.key, decode_table(b.arguments), {}});
  for (const auto& m : snap.messages) {
    if (m.vhost != name_) continue;
    auto q = find_local_queue(m.queue);
    if (!q) continue;
    q->restore(m.id, amqp::validate_properties(m.properties).priority, m.body_size);
  }
}

void Vhost::remove_all() {
  std::vector<std::string> queues, exchanges;
  for (const auto& [name, q] : handles_) queues.push_back(name);
  for (const auto& [name, ex] : exchanges_)
    if (!name.empty() && !name.starts_with("amq.")) exchanges.push_back(name);
  for (const auto& q : queues) apply(DeleteQueue{name_, q, DeleteReason::Client, {}});
  for (const auto& e : exchanges)
    if (find_exchange(e)) apply(DeleteExchange{name_, e, false});
}

Exchange* Vhost::find_exchange(std::string_view name) const {
  auto it = exchanges_.find(name);
  return it == exchanges_.end() ? nullptr : it->second.get();
}

QueueHandlePtr Vhost::find_queue(std::string_view name) const {
  auto it = handles_.find(name);
  return it == handles_.end() ? nullptr : it->second;
}

QueuePtr Vhost::find_local_queue(std::string_view name) const {
  auto it = queues_.find(name);
  return it == queues_.end() ? nullptr : it->second;
}

const Policy* Vhost::policy_for(const std::string& name, bool is_queue) const {
  return policies_.match(name_, name, is_queue);
}

void Vhost::apply(const DeclareExchange& c) {
  persist(c);
  auto ex = make_exchange(c.def);
  if (const Policy* p = policy_for(c.def.name, false)) ex->set_policy_alternate_exchange(p->alternate_exchange);
  exchanges_.emplace(c.def.name, std::move(ex));
}

void Vhost::apply_policies() {
  for (auto& [name, ex] : exchanges_) {
    const Policy* p = policy_for(name, false);
    ex->set_policy_alternate_exchange(p ? p->alternate_exchange : std::nullopt);
  }
  // By name: dropping messages dead-letters them, which may enqueue into other queues.
  std::vector<std::string> names;
  for (const auto& [name, q] : queues_) names.push_back(name);
  for (const auto& name : names)
    if (auto q = find_local_queue(name)) {
      // The arguments were checked when the queue was declared, so this does not throw.
      QueueArgs client = parse_queue_args(q->definition().arguments, name, name_);
      q->set_args(effective_queue_args(client, policy_for(name, true)));
    }
}

void Vhost::apply(const DeleteExchange& c) {
  persist(c);
  auto it = exchanges_.find(c.name);
  if (it == exchanges_.end()) return;
  ExchangePtr ex = std::move(it->second);
  exchanges_.erase(it);
  remove_bindings_to(BindingTarget{nullptr, ex.get()});
}

void Vhost::apply(const DeclareQueue& c) {
  persist(c);
  QueueDefinition def = c.def;
  def.args = effective_queue_args(def.args, policy_for(def.name, true));
  QueueHomes* homes = catalog_.queue_homes();
  if (homes && !def.home.empty() && def.home != catalog_.node()) {
    auto q = homes->open(name_, def);
    handles_.emplace(c.def.name, q);
    remote_queues_.emplace(c.def.name, std::move(q));
    return;
  }
  auto q = std::make_shared<Queue>(std::move(def), name_, store_, this, queue_ram_bytes_, catalog_.clock());
  if (q->definition().durable)
    for (const auto& m : catalog_.claim_stored_messages(name_, c.def.name)) q->restore(m.id, m.priority, m.body_size);
  handles_.emplace(c.def.name, q);
  queues_.emplace(c.def.name, std::move(q));
}

void Vhost::apply(const DeleteQueue& c) {
  persist(c);
  auto it = handles_.find(c.name);
  if (it == handles_.end()) return;
  QueueHandlePtr q = std::move(it->second);
  handles_.erase(it);
  remove_bindings_to(BindingTarget{q.get(), nullptr});
  std::vector<Consumer*> consumers;
  if (auto local = queues_.extract(c.name)) {
    // A replicated catalog does not persist definitions, but the messages of a queue
    // deleted for good leave the store (not when a reset rebuilds the catalog).
    if (store_ && local.mapped()->definition().durable && catalog_.replicated() && !catalog_.resetting())
      store_->delete_queue(name_, c.name);
    consumers = local.mapped()->mark_deleted();
  }
  if (auto remote = remote_queues_.extract(c.name)) consumers = remote.mapped()->mark_deleted();
  for (Consumer* consumer : consumers) consumer->target.cancelled_by_server(*consumer);
}

void Vhost::apply(const Bind& c) {
  persist(c);
  Exchange* src = find_exchange(c.source);
  if (!src) return;
  BindingTarget dest;
  QueueHandlePtr q;
  if (c.to_exchange) {
    dest.exchange = find_exchange(c.destination);
    if (!dest.exchange) return;
  } else {
    q = find_queue(c.destination);
    if (!q) return;
    dest.queue = q.get();
  }
  Binding b{dest, c.key, c.arguments};
  if (c.add) {
    src->bind(std::move(b));
  } else if (src->unbind(b)) {
    delete_if_unused_auto_delete(src);
  }
}

void Vhost::remove_bindings_to(const BindingTarget& dest) {
  // By name: a cascade may delete an exchange collected here before we reach it.
  std::vector<std::string> touched;
  for (auto& [name, ex] : exchanges_)
    if (ex->unbind_all(dest)) touched.push_back(name);
  for (const auto& name : touched)
    if (Exchange* ex = find_exchange(name)) delete_if_unused_auto_delete(ex);
}

void Vhost::delete_if_unused_auto_delete(Exchange* ex) {
  // RabbitMQ deletes an auto-delete exchange when its last binding (as source) goes.
  if (ex->definition().auto_delete && ex->bindings().empty()) apply(DeleteExchange{name_, ex->name(), false});
}

void Vhost::propose_delete(const std::string& queue, DeleteReason why) {
  catalog_.propose(DeleteQueue{name_, queue, why, {}}, [log = catalog_.log(), vhost = name_, queue](ChangeResult r) {
    if (!r.ok()) log.warn("queue not deleted vhost={} queue={} code={} reason=\"{}\"", vhost, queue, r.code, r.text);
  });
}

void Vhost::queue_unused(Queue& q) {
  propose_delete(q.name(), DeleteReason::AutoDelete);
}

void Vhost::tick(int64_t now) {
  std::vector<std::string> expired;
  for (auto& [name, q] : queues_) {
    q->expire(now);
    q->release_paged();
    if (q->unused_since(now)) expired.push_back(name);
  }
  for (const auto& name : expired) propose_delete(name, DeleteReason::Expired);
}

void Vhost::dead_letter(Queue& q, QueueEntry e, DeathReason why) {
  q.forget(e);  // the original copy leaves the store either way
  if (!q.definition().args.dead_letter_exchange || !e.msg) return;
  dead_letters_.push_back({q.name(), q.definition().args, std::move(e), why});
  if (dead_lettering_) return;
  dead_lettering_ = true;
  while (!dead_letters_.empty()) {
    DeadLetter d = std::move(dead_letters_.front());
    dead_letters_.pop_front();
    republish(d);
  }
  dead_lettering_ = false;
}

// RabbitMQ's dead-lettering: the message goes to the queue's dead-letter exchange with an
// x-death entry (count, reason, queue, time, exchange, routing-keys) at the head of the
// list, its expiration removed (kept as original-expiration), and is dropped where it
// would cycle back to a queue it died in without any client rejecting it.
void Vhost::republish(const DeadLetter& d) {
  const Exchange* dlx = find_exchange(*d.args.dead_letter_exchange);
  if (!dlx) return;
  const Message& orig = *d.entry.msg;
  amqp::BasicProperties props = orig.decode_properties();
  amqp::FieldTable headers = props.headers.value_or(amqp::FieldTable{});
  const char* reason = death_reason_name(d.why);

  amqp::FieldArray deaths;
  if (const auto* xd = headers.find("x-death"); xd && xd->as_array()) deaths = *xd->as_array();
  auto same = std::find_if(deaths.begin(), deaths.end(), [&](const amqp::FieldValue& v) {
    const auto* t = v.as_table();
    if (!t) return false;
    const auto* q = t->find("queue");
    const auto* r = t->find("reason");
    return q && r && q->as_string() && r->as_string() && *q->as_string() == d.queue && *r->as_string() == reason;
  });
  amqp::FieldTable death;
  if (same != deaths.end()) {
    death = *same->as_table();
    deaths.erase(same);
    auto count = death.find("count") ? death.find("count")->as_int().value_or(0) : 0;
    death.set("count", int64_t{count + 1});
  } else {
    death.set("count", int64_t{1});
    death.set("reason", reason);
    death.set("queue", d.queue);
    death.set("exchange", orig.exchange);
    death.set("routing-keys", amqp::FieldArray{amqp::FieldValue(orig.routing_key)});
    if (props.expiration) death.set("original-expiration", *props.expiration);
  }
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  death.set("time", amqp::Timestamp{static_cast<uint64_t>(secs.count())});
  deaths.insert(deaths.begin(), amqp::FieldValue(std::move(death)));
  if (!headers.find("x-first-death-reason")) {
    headers.set("x-first-death-exchange", orig.exchange);
    headers.set("x-first-death-queue", d.queue);
    headers.set("x-first-death-reason", reason);
  }
  bool any_rejected = false;
  std::vector<std::string> died_in;
  for (const auto& v : deaths) {
    const auto* t = v.as_table();
    if (!t) continue;
    if (const auto* r = t->find("reason"); r && r->as_string()) any_rejected |= *r->as_string() == "rejected";
    if (const auto* q = t->find("queue"); q && q->as_string()) died_in.push_back(*q->as_string());
  }
  headers.set("x-death", std::move(deaths));
  props.headers = std::move(headers);
  props.expiration.reset();

  auto msg = std::make_shared<Message>();
  msg->exchange = dlx->name();
  msg->routing_key = d.args.dead_letter_routing_key.value_or(orig.routing_key);
  amqp::encode_properties(props, msg->properties);
  msg->body = orig.body;
  msg->persistent = orig.persistent;
  msg->priority = orig.priority;

  std::vector<QueueHandle*> targets;
  publish(*dlx, msg, targets, [&](const QueueHandle& t) {
    bool cycle = std::find(died_in.begin(), died_in.end(), t.definition().name) != died_in.end();
    return !cycle || any_rejected;
  });
}

PublishOutcome Vhost::publish(const Exchange& ex, const MessagePtr& msg, std::vector<QueueHandle*>& scratch,
                              const std::function<bool(const QueueHandle&)>& admit, const Settled& settled) {
  PublishOutcome out;
  route(ex, *msg, scratch);
  ++ex.message_stats.publish_in;
  for (QueueHandle* q : scratch) {
    if (admit && !admit(*q)) continue;
    auto r = q->enqueue(msg, settled);
    ++q->message_stats.publish;
    ++out.queues;
    out.durable |= r.durable;
    out.refused |= !r.accepted;
    out.remote += r.remote;
  }
  if (out.queues) ++ex.message_stats.publish_out;
  return out;
}

bool Vhost::exchange_in_use(const Exchange& ex) const {
  // RabbitMQ: only bindings with <ex> as their source make it "used".
  return !ex.bindings().empty();
}

void Vhost::route(const Exchange& ex, const Message& msg, std::vector<QueueHandle*>& out) const {
  out.clear();
  std::vector<const Exchange*> visited;
  route_into(ex, msg, out, visited);
}

void Vhost::route_into(const Exchange& ex, const Message& msg, std::vector<QueueHandle*>& out,
                       std::vector<const Exchange*>& visited) const {
  if (std::find(visited.begin(), visited.end(), &ex) != visited.end()) return;
  visited.push_back(&ex);
  std::size_t before = out.size();
  if (ex.name().empty()) {
    auto it = handles_.find(msg.routing_key);
    if (it != handles_.end()) out.push_back(it->second.get());
  } else {
    std::vector<BindingTarget> targets;
    ex.route(msg, targets);
    for (const auto& t : targets) {
      if (t.queue) {
        if (std::find(out.begin(), out.end(), t.queue) == out.end()) out.push_back(t.queue);
      } else {
        route_into(*t.exchange, msg, out, visited);
      }
    }
  }
  if (out.size() == before) {
    auto ae = ex.alternate_exchange();
    if (!ae.empty())
      if (const Exchange* alt = find_exchange(ae)) route_into(*alt, msg, out, visited);
  }
}

}  // namespace mqnode::broker
