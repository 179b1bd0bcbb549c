#include "broker/queue_links.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <unordered_map>

#include <asio/post.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include "broker/catalog.hpp"
#include "broker/queue_wire.hpp"
#include "broker/vhost.hpp"
#include "cluster/frame.hpp"

namespace mqnode::broker {

namespace {
constexpr std::size_t kMaxQueueFrame = 256u << 20;       // a message of RabbitMQ's 128 MiB limit and then some
constexpr std::size_t kCongested = 8u << 20;             // a home stops delivering over a link this far behind
constexpr uint32_t kWindowWithoutPrefetch = 256;         // deliveries in flight for a consumer without a prefetch
constexpr uint16_t kNotFound = 404;
constexpr std::chrono::seconds kRedialDelay{1};              // after a failed dial to a home
}  // namespace

// ---- one socket: frames in, frames out ------------------------------------------------

struct QueueLinks::Pipe : std::enable_shared_from_this<Pipe> {
  using FrameFn = std::function<void(std::span<const uint8_t>)>;
  using DownFn = std::function<void(const std::string& why)>;

  Pipe(asio::ip::tcp::socket s, FrameFn on_frame, std::function<void()> on_batch, DownFn on_down)
      : socket(std::move(s)), reader(kMaxQueueFrame), on_frame(std::move(on_frame)), on_batch(std::move(on_batch)),
        on_down(std::move(on_down)) {}

  void start() { read(); }

  void send(const wire::Frame& f) {
    scratch.clear();
    wire::encode(f, scratch);
    cluster::append_frame(pending, scratch);
    write();
  }
  std::size_t backlog() const { return pending.size() + inflight.size(); }

  void close(const std::string& why) {
    if (down) return;
    down = true;
    asio::error_code ec;
    socket.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    socket.close(ec);
    auto fn = std::move(on_down);
    on_down = nullptr;
    if (fn) fn(why);
  }

  void read() {
    socket.async_read_some(asio::buffer(in), [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
      if (self->down) return;
      if (ec) return self->close(ec == asio::error::eof ? "closed by the peer" : ec.message());
      std::span<const uint8_t> data(self->in.data(), n);
      while (!data.empty() && !self->down) {
        std::size_t used = 0;
        auto st = self->reader.feed(data, used);
        data = data.subspan(used);
        if (st == cluster::FrameReader::Status::TooLarge) return self->close("a queue frame over the size limit");
        if (st == cluster::FrameReader::Status::Frame) self->on_frame(self->reader.payload());
      }
      if (self->down) return;
      if (self->on_batch) self->on_batch();
      self->read();
    });
  }

  void write() {
    if (writing || pending.empty() || down) return;
    writing = true;
    std::swap(inflight, pending);
    asio::async_write(socket, asio::buffer(inflight), [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
      self->writing = false;
      self->inflight.clear();
      if (self->down) return;
      if (ec) return self->close(ec.message());
      self->write();
      if (self->drained && self->backlog() < kCongested / 2) self->drained();
    });
  }

  asio::ip::tcp::socket socket;
  cluster::FrameReader reader;
  FrameFn on_frame;
  std::function<void()> on_batch;
  DownFn on_down;
  std::function<void()> drained;  // the backlog fell under half the congestion mark
  std::array<uint8_t, 64 * 1024> in{};
  std::vector<uint8_t> pending, inflight, scratch;
  bool writing = false;
  bool down = false;
};

// ---- this node's side of queues homed elsewhere ----------------------------------------

class LinkedQueue;

struct QueueLinks::HomeSession : std::enable_shared_from_this<HomeSession> {
  struct Waiting {
    std::function<void(const wire::Reply&)> done;
    std::string down_text;  // the 404 the request gets if the link breaks
  };
  struct Sub {
    std::weak_ptr<Consumer> consumer;
    LinkedQueue* queue = nullptr;
    std::deque<QueueEntry> buffered;  // delivered by the home, not yet taken by the channel
    bool grant_on_delivery = false;
    uint32_t grants = 0;              // credit to send the home
  };

  HomeSession(QueueLinks& o, std::string n) : owner(o), node(std::move(n)) {}

  void send(const wire::Frame& f) {
    connect();
    if (pipe) {
      pipe->send(f);
    } else {
      scratch.clear();
      wire::encode(f, scratch);
      cluster::append_frame(backlog, scratch);
    }
  }
  uint64_t request(std::function<void(const wire::Reply&)> done, std::string down_text) {
    const uint64_t id = next_id++;
    waiting.emplace(id, Waiting{std::move(done), std::move(down_text)});
    return id;
  }

  void connect();
  void on_frame(std::span<const uint8_t> payload);
  void flush_grants();
  void deliver(Sub& sub, QueueEntry e);
  // Fails everything that waits on the link; the next send opens a new one.
  void fail(const std::string& why);

  QueueLinks& owner;
  std::string node;
  std::shared_ptr<Pipe> pipe;
  bool connecting = false;
  std::chrono::steady_clock::time_point retry_at;  // no new dial before this
  std::string last_error;
  std::vector<uint8_t> backlog, scratch;  // frames sent before the link was up
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, Waiting> waiting;
  std::unordered_map<uint64_t, Settled> publishes;
  std::unordered_map<uint64_t, Sub> subs;
};

class LinkedQueue final : public RemoteQueue, public std::enable_shared_from_this<LinkedQueue> {
 public:
  LinkedQueue(std::weak_ptr<QueueLinks> links, std::string vhost, QueueDefinition def)
      : links_(std::move(links)), vhost_(std::move(vhost)), def_(std::move(def)) {}
  ~LinkedQueue() override {
    if (auto s = session()) forget_subs(*s);
  }

  const QueueDefinition& definition() const override { return def_; }

  std::string down_text() const {
    return fmt::format("home node '{}' of {}queue '{}' in vhost '{}' is down or inaccessible", def_.home,
                       def_.durable ? "durable " : "", def_.name, vhost_);
  }

  EnqueueResult enqueue(MessagePtr msg, const Settled& settled) override {
    auto s = session();
    if (!s || deleted_) return {false, false, false};
    uint64_t token = 0;
    if (settled) {
      token = s->next_id++;
      s->publishes.emplace(token, settled);
    }
    s->send(wire::Publish{vhost_, def_.name, token, *msg});
    return {true, false, token != 0};
  }

  void status(std::function<void(QueueError, QueueStatus)> done) override {
    ask(wire::RequestKind::Status, [done](const wire::Reply& r) {
      done({r.code, r.text}, {static_cast<std::size_t>(r.messages), static_cast<std::size_t>(r.consumers)});
    });
  }
  void fetch(std::function<void(QueueError, std::optional<QueueEntry>, std::size_t)> done) override {
    ask(wire::RequestKind::Fetch, [done](const wire::Reply& r) {
      std::optional<QueueEntry> e;
      if (r.fetched) {
        e.emplace(std::make_shared<Message>(r.fetched->msg));
        e->home_tag = r.fetched->tag;
        e->redelivered = r.fetched->redelivered;
      }
      done({r.code, r.text}, std::move(e), static_cast<std::size_t>(r.messages));
    });
  }
  void purge(std::function<void(QueueError, std::size_t)> done) override {
    ask(wire::RequestKind::Purge,
        [done](const wire::Reply& r) { done({r.code, r.text}, static_cast<std::size_t>(r.messages)); });
  }
  void touch() override {
    if (auto s = session()) s->send(wire::Request{wire::RequestKind::Touch, 0, vhost_, def_.name});
  }

  void subscribe(Consumer& c, std::function<void(QueueError)> done) override {
    auto s = session();
    if (!s || deleted_) return done({kNotFound, down_text()});
    const uint64_t id = s->next_id++;
    const bool with_prefetch = c.prefetch > 0 && !c.no_ack;
    auto& sub = s->subs[id];
    sub.consumer = c.weak_from_this();
    sub.queue = this;
    sub.grant_on_delivery = !with_prefetch;
    subs_.push_back(id);
    wire::Subscribe f;
    f.request = s->request(
        [self = shared_from_this(), id, done](const wire::Reply& r) {
          if (r.code) self->drop_sub(id);
          done({r.code, r.text});
        },
        down_text());
    f.vhost = vhost_;
    f.queue = def_.name;
    f.consumer = id;
    f.exclusive = c.exclusive;
    f.no_ack = c.no_ack;
    f.credit_on_settle = with_prefetch;
    f.priority = c.priority;
    f.window = with_prefetch ? c.prefetch : kWindowWithoutPrefetch;
    s->send(f);
  }

  bool cancel(const Consumer& c) override {
    auto s = session();
    if (!s) return false;
    for (auto id : subs_) {
      auto it = s->subs.find(id);
      if (it == s->subs.end() || it->second.consumer.lock().get() != &c) continue;
      drop_sub(id);
      return true;
    }
    return false;
  }

  void credit() override {
    auto s = session();
    if (!s) return;
    for (auto id : std::vector<uint64_t>(subs_)) {
      auto it = s->subs.find(id);
      if (it == s->subs.end()) continue;
      auto& sub = it->second;
      auto c = sub.consumer.lock();
      while (c && !sub.buffered.empty() && c->target.can_deliver(*c)) {
        QueueEntry e = std::move(sub.buffered.front());
        sub.buffered.pop_front();
        if (sub.grant_on_delivery) ++sub.grants;
        c->target.deliver(*c, std::move(e));
        it = s->subs.find(id);  // a delivery may cancel the consumer
        if (it == s->subs.end()) break;
      }
    }
    s->flush_grants();
  }

  void ack(const QueueEntry& e) override { settle(wire::SettleKind::Ack, {e.home_tag}); }
  void reject(QueueEntry e) override { settle(wire::SettleKind::Reject, {e.home_tag}); }
  void requeue(std::vector<QueueEntry> entries) override {
    std::vector<uint64_t> tags;
    for (const auto& e : entries) tags.push_back(e.home_tag);
    settle(wire::SettleKind::Requeue, std::move(tags));
  }

  std::vector<Consumer*> mark_deleted() override {
    deleted_ = true;
    std::vector<Consumer*> out;
    auto s = session();
    if (!s) return out;
    for (auto id : subs_)
      if (auto it = s->subs.find(id); it != s->subs.end())
        if (auto c = it->second.consumer.lock()) out.push_back(c.get());
    forget_subs(*s);
    return out;
  }

  // The link broke: the subscription is gone (the home requeued what it had sent).
  void lost_sub(uint64_t id) { std::erase(subs_, id); }

 private:
  std::shared_ptr<QueueLinks::HomeSession> session() {
    auto links = links_.lock();
    if (!links || links->closed_) return nullptr;
    return links->session(def_.home);
  }

  void ask(wire::RequestKind kind, std::function<void(const wire::Reply&)> done) {
    auto s = session();
    if (!s || deleted_) {
      wire::Reply r;
      r.code = kNotFound;
      r.text = down_text();
      return done(r);
    }
    s->send(wire::Request{kind, s->request(std::move(done), down_text()), vhost_, def_.name});
  }

  void settle(wire::SettleKind kind, std::vector<uint64_t> tags) {
    std::erase(tags, 0);  // not from a live link
    if (tags.empty()) return;
    if (auto s = session()) s->send(wire::Settle{kind, std::move(tags)});
  }

  // Cancels subscription <id> at the home and gives back what it delivered that the
  // channel never took.
  void drop_sub(uint64_t id) {
    std::erase(subs_, id);
    auto s = session();
    if (!s) return;
    auto it = s->subs.find(id);
    if (it == s->subs.end()) return;
    std::vector<uint64_t> unused;
    for (const auto& e : it->second.buffered) unused.push_back(e.home_tag);
    s->subs.erase(it);
    s->send(wire::Cancel{id});
    if (!unused.empty()) s->send(wire::Settle{wire::SettleKind::Requeue, std::move(unused)});
  }
  void forget_subs(QueueLinks::HomeSession&) {
    for (auto id : std::vector<uint64_t>(subs_)) drop_sub(id);
  }

  std::weak_ptr<QueueLinks> links_;
  std::string vhost_;
  QueueDefinition def_;
  std::vector<uint64_t> subs_;  // this queue's subscriptions in its home session
  bool deleted_ = false;
};

void QueueLinks::HomeSession::connect() {
  if (pipe || connecting) return;
  connecting = true;
  auto self = shared_from_this();
  auto refuse = [&](std::string why) {
    asio::post(owner.io_, [self, why = std::move(why)] {
      self->connecting = false;
      self->fail(why);
    });
  };
  // A home that could not be reached a moment ago is not dialled again at once: what
  // waits on it fails fast instead of piling up behind one connect attempt after another.
  if (std::chrono::steady_clock::now() < retry_at) return refuse(last_error);
  const std::string address = owner.resolve_(node);
  if (address.empty()) return refuse("its address is unknown (not a member of this cluster?)");
  owner.links_->connect(address, cluster::Purpose::Queues, [self](std::optional<cluster::Link> link, std::string error) {
    self->connecting = false;
    if (!link) {
      self->retry_at = std::chrono::steady_clock::now() + kRedialDelay;
      self->last_error = error;
      return self->fail(error);
    }
    std::weak_ptr<HomeSession> weak = self;
    self->pipe = std::make_shared<Pipe>(
        std::move(link->socket),
        [weak](std::span<const uint8_t> p) {
          if (auto s = weak.lock()) s->on_frame(p);
        },
        [weak] {
          if (auto s = weak.lock()) s->flush_grants();
        },
        [weak](const std::string& why) {
          if (auto s = weak.lock()) s->fail(why);
        });
    self->pipe->start();
    if (!self->backlog.empty()) {
      self->pipe->pending = std::move(self->backlog);
      self->backlog.clear();
      self->pipe->write();
    }
  });
}

void QueueLinks::HomeSession::fail(const std::string& why) {
  if (!waiting.empty() || !publishes.empty() || !subs.empty())
    owner.log_.warn("queue link to node {} down: {}; {} requests fail, {} publishes nacked, {} consumers cancelled",
                    node, why, waiting.size(), publishes.size(), subs.size());
  auto p = std::move(pipe);
  pipe.reset();
  if (p) p->close(why);
  backlog.clear();
  auto w = std::move(waiting);
  auto pubs = std::move(publishes);
  auto ss = std::move(subs);
  waiting.clear();
  publishes.clear();
  subs.clear();
  for (auto& [id, req] : w) {
    wire::Reply r;
    r.request = id;
    r.code = kNotFound;
    r.text = req.down_text;
    req.done(r);
  }
  for (auto& [token, settled] : pubs) settled(false);
  for (auto& [id, sub] : ss) {
    if (sub.queue) sub.queue->lost_sub(id);
    if (auto c = sub.consumer.lock()) c->target.cancelled_by_server(*c);
  }
}

void QueueLinks::HomeSession::deliver(Sub& sub, QueueEntry e) {
  auto c = sub.consumer.lock();
  if (!c) {  // its channel went without cancelling it: the message goes back
    if (pipe && e.home_tag) pipe->send(wire::Settle{wire::SettleKind::Requeue, {e.home_tag}});
    return;
  }
  if (sub.buffered.empty() && c->target.can_deliver(*c)) {
    if (sub.grant_on_delivery) ++sub.grants;
    c->target.deliver(*c, std::move(e));
  } else {
    sub.buffered.push_back(std::move(e));
  }
}

void QueueLinks::HomeSession::flush_grants() {
  if (!pipe) return;
  for (auto& [id, sub] : subs)
    if (sub.grants) {
      pipe->send(wire::Credit{id, sub.grants});
      sub.grants = 0;
    }
}

void QueueLinks::HomeSession::on_frame(std::span<const uint8_t> payload) {
  wire::Frame f;
  try {
    f = wire::decode(payload);
  } catch (const wire::DecodeError& e) {
    return fail(e.what());
  }
  auto self = shared_from_this();  // a callback below may drop the last other reference
  if (auto* r = std::get_if<wire::Reply>(&f)) {
    auto it = waiting.find(r->request);
    if (it == waiting.end()) return;
    auto done = std::move(it->second.done);
    waiting.erase(it);
    done(*r);
  } else if (auto* p = std::get_if<wire::Published>(&f)) {
    auto it = publishes.find(p->token);
    if (it == publishes.end()) return;
    auto settled = std::move(it->second);
    publishes.erase(it);
    settled(p->ok);
  } else if (auto* d = std::get_if<wire::Deliver>(&f)) {
    auto it = subs.find(d->consumer);
    if (it == subs.end()) {  // cancelled meanwhile: it goes back
      if (pipe) pipe->send(wire::Settle{wire::SettleKind::Requeue, {d->tag}});
      return;
    }
    QueueEntry e(std::make_shared<Message>(std::move(d->msg)));
    e.home_tag = d->tag;
    e.redelivered = d->redelivered;
    deliver(it->second, std::move(e));
  } else if (auto* c = std::get_if<wire::Cancelled>(&f)) {
    auto it = subs.find(c->consumer);
    if (it == subs.end()) return;
    Sub sub = std::move(it->second);
    subs.erase(it);
    if (sub.queue) sub.queue->lost_sub(c->consumer);
    if (auto consumer = sub.consumer.lock()) consumer->target.cancelled_by_server(*consumer);
  } else {
    fail("the home sent a frame only a home receives");
  }
}

// ---- the home's side -------------------------------------------------------------------

struct QueueLinks::ServedSession : std::enable_shared_from_this<ServedSession> {
  // A consumer of another node, on a local queue.
  struct Proxy final : DeliveryTarget {
    ServedSession& session;
    uint64_t id;
    QueuePtr queue;
    ConsumerPtr consumer;
    uint32_t credit;
    bool credit_on_settle;

    Proxy(ServedSession& s, const wire::Subscribe& f, QueuePtr q)
        : session(s), id(f.consumer), queue(std::move(q)), credit(f.window), credit_on_settle(f.credit_on_settle) {
      consumer = std::make_shared<Consumer>(*this, fmt::format("{}:{}", s.peer, f.consumer), queue);
      consumer->exclusive = f.exclusive;
      consumer->no_ack = f.no_ack;
      consumer->priority = f.priority;
    }
    bool can_deliver(const Consumer&) const override {
      return credit > 0 && session.pipe && !session.pipe->down && session.pipe->backlog() < kCongested;
    }
    void deliver(Consumer& c, QueueEntry entry) override {
      --credit;
      // Without acks the message is gone once sent: tag 0, nothing to settle.
      const uint64_t tag = c.no_ack ? 0 : session.owner.next_tag_++;
      session.pipe->send(wire::Deliver{id, tag, entry.redelivered, *entry.msg});
      if (c.no_ack)
        queue->ack(entry);
      else
        session.outstanding.emplace(tag, Outstanding{queue, id, std::move(entry)});
    }
    void cancelled_by_server(Consumer&) override {
      session.pipe->send(wire::Cancelled{id});
      // Not here: the queue is iterating its consumers. The proxy goes after this turn.
      asio::post(session.owner.io_, [s = session.shared_from_this(), id = id] { s->proxies.erase(id); });
    }
  };
  struct Outstanding {
    QueuePtr queue;
    uint64_t proxy = 0;  // 0: a basic.get
    QueueEntry entry;
  };

  ServedSession(QueueLinks& o, std::string p) : owner(o), peer(std::move(p)) {}

  // Messages going back to their queues, gathered per queue so each keeps their order.
  struct Requeues {
    std::vector<std::pair<QueuePtr, std::vector<QueueEntry>>> by_queue;
    void add(const QueuePtr& q, QueueEntry e) {
      auto at = std::find_if(by_queue.begin(), by_queue.end(), [&](const auto& r) { return r.first == q; });
      if (at == by_queue.end()) at = by_queue.insert(by_queue.end(), {q, {}});
      at->second.push_back(std::move(e));
    }
    void flush() {
      for (auto& [q, entries] : by_queue) q->requeue(std::move(entries));
    }
  };

  QueuePtr find(const std::string& vhost, const std::string& queue) const {
    Vhost* vh = owner.catalog_.find_vhost(vhost);
    return vh ? vh->find_local_queue(queue) : nullptr;
  }
  static std::string not_found(const std::string& vhost, const std::string& queue) {
    return fmt::format("no queue '{}' in vhost '{}'", queue, vhost);
  }
  void reply(const wire::Reply& r) { pipe->send(r); }
  void reply(uint64_t request, uint16_t code, std::string text) {
    wire::Reply r;
    r.request = request;
    r.code = code;
    r.text = std::move(text);
    reply(r);
  }

  void on_frame(std::span<const uint8_t> payload);
  void on(wire::Publish& f);
  void on(const wire::Subscribe& f);
  void on(const wire::Cancel& f);
  void on(const wire::Credit& f);
  void on(const wire::Settle& f);
  void on(const wire::Request& f);
  // After a batch of frames: one store commit answers every durable publish in it.
  void confirm_durable();
  // The link is gone: consumers leave their queues, what they held goes back.
  void end();

  QueueLinks& owner;
  std::string peer;
  std::shared_ptr<Pipe> pipe;
  std::unordered_map<uint64_t, std::unique_ptr<Proxy>> proxies;
  std::map<uint64_t, Outstanding> outstanding;  // by tag: requeued in delivery order
  std::vector<uint64_t> durable_tokens;
  uint64_t store_since = 0;
};

void QueueLinks::ServedSession::on_frame(std::span<const uint8_t> payload) {
  wire::Frame f;
  try {
    f = wire::decode(payload);
  } catch (const wire::DecodeError& e) {
    owner.log_.warn("queue link from {} closed: {}", peer, e.what());
    return pipe->close(e.what());
  }
  std::visit(
      [this](auto& frame) {
        using T = std::decay_t<decltype(frame)>;
        if constexpr (std::is_same_v<T, wire::Publish> || std::is_same_v<T, wire::Subscribe> ||
                      std::is_same_v<T, wire::Cancel> || std::is_same_v<T, wire::Credit> ||
                      std::is_same_v<T, wire::Settle> || std::is_same_v<T, wire::Request>) {
          on(frame);
        } else {
          owner.log_.warn("queue link from {} closed: it sent a frame only a home sends", peer);
          pipe->close("a frame only a home sends");
        }
      },
      f);
}

void QueueLinks::ServedSession::on(wire::Publish& f) {
  QueuePtr q = find(f.vhost, f.queue);
  if (!q) {
    if (f.token) pipe->send(wire::Published{f.token, false});
    return;
  }
  auto r = q->enqueue(std::make_shared<const Message>(std::move(f.msg)));
  if (!f.token) return;
  if (r.accepted && r.durable)
    durable_tokens.push_back(f.token);
  else
    pipe->send(wire::Published{f.token, r.accepted});
}

void QueueLinks::ServedSession::confirm_durable() {
  if (durable_tokens.empty()) return;
  store::Store* store = owner.catalog_.store();
  store->after_commit(
      [weak = weak_from_this(), tokens = std::move(durable_tokens)](bool ok) {
        auto s = weak.lock();
        if (!s || !s->pipe || s->pipe->down) return;
        for (auto t : tokens) s->pipe->send(wire::Published{t, ok});
      },
      store_since);
  durable_tokens.clear();
  store_since = store->next_message_id();
}

void QueueLinks::ServedSession::on(const wire::Subscribe& f) {
  QueuePtr q = find(f.vhost, f.queue);
  if (!q) return reply(f.request, kNotFound, not_found(f.vhost, f.queue));
  if (proxies.count(f.consumer)) {
    owner.log_.warn("queue link from {} closed: consumer id {} reused", peer, f.consumer);
    return pipe->close("a consumer id reused");
  }
  auto& proxy = proxies[f.consumer];
  proxy = std::make_unique<Proxy>(*this, f, q);
  q->subscribe(*proxy->consumer, [this, &f](QueueError e) {
    reply(f.request, e.code, e.text);
    if (e) proxies.erase(f.consumer);
  });
}

void QueueLinks::ServedSession::on(const wire::Cancel& f) {
  auto it = proxies.find(f.consumer);
  if (it == proxies.end()) return;
  auto proxy = std::move(it->second);
  proxies.erase(it);
  proxy->queue->cancel(*proxy->consumer);
}

void QueueLinks::ServedSession::on(const wire::Credit& f) {
  auto it = proxies.find(f.consumer);
  if (it == proxies.end()) return;
  it->second->credit += f.count;
  it->second->queue->credit();
}

void QueueLinks::ServedSession::on(const wire::Settle& f) {
  Requeues requeue;
  std::vector<QueuePtr> touched;
  for (auto tag : f.tags) {
    auto it = outstanding.find(tag);
    if (it == outstanding.end()) continue;  // from an earlier link, or settled already
    Outstanding o = std::move(it->second);
    outstanding.erase(it);
    if (auto p = proxies.find(o.proxy); p != proxies.end() && p->second->credit_on_settle) ++p->second->credit;
    if (std::find(touched.begin(), touched.end(), o.queue) == touched.end()) touched.push_back(o.queue);
    switch (f.kind) {
      case wire::SettleKind::Ack:
        o.queue->ack(o.entry);
        break;
      case wire::SettleKind::Reject:
        o.queue->reject(std::move(o.entry));
        break;
      case wire::SettleKind::Requeue:
        requeue.add(o.queue, std::move(o.entry));
        break;
    }
  }
  requeue.flush();
  for (auto& q : touched) q->credit();
}

void QueueLinks::ServedSession::on(const wire::Request& f) {
  QueuePtr q = find(f.vhost, f.queue);
  if (f.kind == wire::RequestKind::Touch) {
    if (q) q->touch();
    return;
  }
  if (!q) return reply(f.request, kNotFound, not_found(f.vhost, f.queue));
  wire::Reply r;
  r.request = f.request;
  switch (f.kind) {
    case wire::RequestKind::Status:
      r.messages = q->message_count();
      r.consumers = q->consumer_count();
      break;
    case wire::RequestKind::Purge:
      r.messages = q->purge();
      break;
    case wire::RequestKind::Fetch:
      if (auto e = q->get()) {
        const uint64_t tag = owner.next_tag_++;
        r.fetched = wire::Fetched{tag, e->redelivered, *e->msg};
        outstanding.emplace(tag, Outstanding{q, 0, std::move(*e)});
      }
      r.messages = q->message_count();
      break;
    case wire::RequestKind::Touch:
      break;
  }
  reply(r);
}

void QueueLinks::ServedSession::end() {
  auto ps = std::move(proxies);
  proxies.clear();
  for (auto& [id, p] : ps) p->queue->cancel(*p->consumer);
  Requeues requeue;
  for (auto& [tag, o] : outstanding) requeue.add(o.queue, std::move(o.entry));
  outstanding.clear();
  requeue.flush();
}

// ---- QueueLinks ------------------------------------------------------------------------

std::shared_ptr<QueueLinks> QueueLinks::create(asio::io_context& io, Catalog& catalog,
                                               std::shared_ptr<cluster::Links> links, Resolve resolve,
                                               core::Logger log) {
  return std::shared_ptr<QueueLinks>(new QueueLinks(io, catalog, std::move(links), std::move(resolve), std::move(log)));
}

QueueLinks::QueueLinks(asio::io_context& io, Catalog& catalog, std::shared_ptr<cluster::Links> links, Resolve resolve,
                       core::Logger log)
    : io_(io), catalog_(catalog), links_(std::move(links)), resolve_(std::move(resolve)), log_(std::move(log)) {}

QueueLinks::~QueueLinks() { close(); }

std::shared_ptr<RemoteQueue> QueueLinks::open(const std::string& vhost, const QueueDefinition& def) {
  return std::make_shared<LinkedQueue>(weak_from_this(), vhost, def);
}

std::shared_ptr<QueueLinks::HomeSession> QueueLinks::session(const std::string& node) {
  auto& s = homes_[node];
  if (!s) s = std::make_shared<HomeSession>(*this, node);
  return s;
}

void QueueLinks::serve(cluster::Link link) {
  if (closed_) return;
  auto s = std::make_shared<ServedSession>(*this, link.peer.name);
  std::weak_ptr<ServedSession> weak = s;
  s->store_since = catalog_.store() ? catalog_.store()->next_message_id() : 0;
  s->pipe = std::make_shared<Pipe>(
      std::move(link.socket),
      [weak](std::span<const uint8_t> p) {
        if (auto s = weak.lock()) s->on_frame(p);
      },
      [weak] {
        if (auto s = weak.lock()) s->confirm_durable();
      },
      [this, weak](const std::string& why) {
        auto s = weak.lock();
        if (!s) return;
        log_.info("queue link from {} ended: {}", s->peer, why);
        s->end();
        served_.erase(s.get());
      });
  s->pipe->drained = [weak] {
    auto s = weak.lock();
    if (!s) return;
    std::vector<QueuePtr> queues;
    for (auto& [id, p] : s->proxies) queues.push_back(p->queue);
    for (auto& q : queues) q->credit();
  };
  served_.emplace(s.get(), s);
  s->pipe->start();
}

void QueueLinks::close() {
  if (closed_) return;
  closed_ = true;
  auto homes = std::move(homes_);
  homes_.clear();
  for (auto& [node, s] : homes) s->fail("this node's broker is stopping");
  auto served = std::move(served_);
  served_.clear();
  for (auto& [ptr, s] : served) s->pipe->close("this node's broker is stopping");
}

void QueueLinks::dump(nlohmann::json& out) const {
  auto& homes = out["homes"];
  homes = nlohmann::json::object();
  for (const auto& [node, s] : homes_)
    homes[node] = {{"up", s->pipe != nullptr},
                   {"requests", s->waiting.size()},
                   {"publishes_unconfirmed", s->publishes.size()},
                   {"consumers", s->subs.size()}};
  out["served_links"] = served_.size();
}

}  // namespace mqnode::broker
