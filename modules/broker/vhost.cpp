#include "broker/vhost.hpp"

#include <algorithm>

#include "amqp/codec.hpp"
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

Vhost::Vhost(std::string name, store::Store* store) : name_(std::move(name)), store_(store) {
  // RabbitMQ's predeclared exchanges (AMQP 0-9-1 §3.1.3.1 plus amq.rabbitmq.trace).
  const struct {
    const char* name;
    const char* type;
    bool internal;
  } kStandard[] = {{"", "direct", false},          {"amq.direct", "direct", false},
                   {"amq.fanout", "fanout", false}, {"amq.topic", "topic", false},
                   {"amq.headers", "headers", false}, {"amq.match", "headers", false},
                   {"amq.rabbitmq.trace", "topic", true}};
  for (const auto& e : kStandard) apply(ExchangeDeclared{{e.name, e.type, true, false, e.internal, {}}});
}

void Vhost::commit(const MetadataChange& change) {
  if (store_ && !restoring_) persist(change);  // before apply: a deletion must see what it deletes
  std::visit([this](const auto& c) { apply(c); }, change);
}

void Vhost::persist(const MetadataChange& change) {
  if (const auto* e = std::get_if<ExchangeDeclared>(&change)) {
    const auto& d = e->def;
    if (d.durable) store_->put_exchange({name_, d.name, d.type, d.auto_delete, d.internal, encode_table(d.arguments)});
  } else if (const auto* de = std::get_if<ExchangeDeleted>(&change)) {
    if (const Exchange* ex = find_exchange(de->name); ex && ex->definition().durable) store_->delete_exchange(name_, de->name);
  } else if (const auto* q = std::get_if<QueueDeclared>(&change)) {
    // Exclusive queues die with their connection, so never outlive a restart.
    const auto& d = q->def;
    if (d.durable && !d.exclusive_owner) store_->put_queue({name_, d.name, d.auto_delete, encode_table(d.arguments)});
  } else if (const auto* dq = std::get_if<QueueDeleted>(&change)) {
    if (auto queue = find_queue(dq->name); queue && queue->definition().durable) store_->delete_queue(name_, dq->name);
  } else if (const auto* b = std::get_if<BindingChange>(&change)) {
    // As RabbitMQ: a binding is durable when both its ends are.
    const Exchange* src = find_exchange(b->source);
    bool dest_durable = false;
    if (b->to_exchange) {
      const Exchange* dest = find_exchange(b->destination);
      dest_durable = dest && dest->definition().durable;
    } else {
      auto dest = find_queue(b->destination);
      dest_durable = dest && dest->definition().durable && !dest->definition().exclusive_owner;
    }
    if (src && src->definition().durable && dest_durable && !b->source.empty()) {
      store::BindingRecord r{name_, b->source, b->to_exchange, b->destination, b->key, encode_table(b->arguments)};
      if (b->add)
        store_->put_binding(std::move(r));
      else
        store_->delete_binding(std::move(r));
    }
  }
}

void Vhost::restore(const store::Snapshot& snap) {
  restoring_ = true;
  for (const auto& e : snap.exchanges)
    if (e.vhost == name_ && !find_exchange(e.name))
      commit(ExchangeDeclared{{e.name, e.type, true, e.auto_delete, e.internal, decode_table(e.arguments)}});
  for (const auto& q : snap.queues) {
    if (q.vhost != name_ || find_queue(q.name)) continue;
    QueueDefinition def;
    def.name = q.name;
    def.durable = true;
    def.auto_delete = q.auto_delete;
    def.arguments = decode_table(q.arguments);
    def.args = parse_queue_args(def.arguments, def.name, name_);
    commit(QueueDeclared{std::move(def)});
  }
  for (const auto& b : snap.bindings)
    if (b.vhost == name_)
      commit(BindingChange{true, b.source, b.to_exchange, b.destination, b.key, decode_table(b.arguments)});
  for (const auto& m : snap.messages) {
    if (m.vhost != name_) continue;
    auto q = find_queue(m.queue);
    if (!q) continue;
    auto msg = std::make_shared<Message>();
    msg->exchange = m.exchange;
    msg->routing_key = m.routing_key;
    msg->properties = m.properties;
    msg->body = m.body;
    msg->persistent = true;
    q->restore(std::move(msg), m.id);
  }
  restoring_ = false;
}

Exchange* Vhost::find_exchange(std::string_view name) const {
  auto it = exchanges_.find(name);
  return it == exchanges_.end() ? nullptr : it->second.get();
}

QueuePtr Vhost::find_queue(std::string_view name) const {
  auto it = queues_.find(name);
  return it == queues_.end() ? nullptr : it->second;
}

void Vhost::apply(const ExchangeDeclared& c) {
  exchanges_.emplace(c.def.name, make_exchange(c.def));
}

void Vhost::apply(const ExchangeDeleted& c) {
  auto it = exchanges_.find(c.name);
  if (it == exchanges_.end()) return;
  ExchangePtr ex = std::move(it->second);
  exchanges_.erase(it);
  remove_bindings_to(BindingTarget{nullptr, ex.get()});
}

void Vhost::apply(const QueueDeclared& c) {
  auto q = std::make_shared<Queue>(c.def, name_, store_, [this](Queue& q) { commit(QueueDeleted{q.name()}); });
  queues_.emplace(c.def.name, std::move(q));
}

void Vhost::apply(const QueueDeleted& c) {
  auto it = queues_.find(c.name);
  if (it == queues_.end()) return;
  QueuePtr q = std::move(it->second);
  queues_.erase(it);
  remove_bindings_to(BindingTarget{q.get(), nullptr});
  for (Consumer* consumer : q->mark_deleted()) consumer->target.cancelled_by_server(*consumer);
}

void Vhost::apply(const BindingChange& c) {
  Exchange* src = find_exchange(c.source);
  if (!src) return;
  BindingTarget dest;
  QueuePtr q;
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
  if (ex->definition().auto_delete && ex->bindings().empty()) commit(ExchangeDeleted{ex->name()});
}

bool Vhost::exchange_in_use(const Exchange& ex) const {
  // RabbitMQ: only bindings with <ex> as their source make it "used".
  return !ex.bindings().empty();
}

void Vhost::route(const Exchange& ex, const Message& msg, std::vector<Queue*>& out) const {
  out.clear();
  std::vector<const Exchange*> visited;
  route_into(ex, msg, out, visited);
}

void Vhost::route_into(const Exchange& ex, const Message& msg, std::vector<Queue*>& out,
                       std::vector<const Exchange*>& visited) const {
  if (std::find(visited.begin(), visited.end(), &ex) != visited.end()) return;
  visited.push_back(&ex);
  std::size_t before = out.size();
  if (ex.name().empty()) {
    auto it = queues_.find(msg.routing_key);
    if (it != queues_.end()) out.push_back(it->second.get());
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
