#include "store/store.hpp"

#include <sqlite3.h>

#include <asio/post.hpp>
#include <fmt/format.h>

namespace mqnode::store {

// RAII prepared statement; binds by position, loop-free helpers for the few shapes we use.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK)
      throw std::runtime_error(fmt::format("sqlite prepare failed: {} ({})", sqlite3_errmsg(db), sql));
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& text(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& blob(int i, std::span<const uint8_t> v) {
    // A zero-length blob must still be a blob, not NULL.
    sqlite3_bind_blob(s_, i, v.empty() ? "" : static_cast<const void*>(v.data()), static_cast<int>(v.size()),
                      SQLITE_STATIC);
    return *this;
  }
  Stmt& integer(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  // Runs a statement that returns no rows; returns the SQLite result code.
  int run() {
    int rc = sqlite3_step(s_);
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  bool step_row() { return sqlite3_step(s_) == SQLITE_ROW; }
  // Makes a statement that was stepped (step_row) ready to be bound and run again.
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  std::string col_text(int i) {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, i))) : std::string();
  }
  Bytes col_blob(int i) {
    auto p = static_cast<const uint8_t*>(sqlite3_column_blob(s_, i));
    return p ? Bytes(p, p + sqlite3_column_bytes(s_, i)) : Bytes();
  }
  int64_t col_int(int i) { return sqlite3_column_int64(s_, i); }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS exchanges(
  vhost TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
  auto_delete INTEGER NOT NULL, internal INTEGER NOT NULL, arguments BLOB NOT NULL,
  PRIMARY KEY(vhost, name));
CREATE TABLE IF NOT EXISTS queues(
  vhost TEXT NOT NULL, name TEXT NOT NULL, auto_delete INTEGER NOT NULL, arguments BLOB NOT NULL,
  PRIMARY KEY(vhost, name));
CREATE TABLE IF NOT EXISTS bindings(
  vhost TEXT NOT NULL, source TEXT NOT NULL, to_exchange INTEGER NOT NULL, destination TEXT NOT NULL,
  routing_key TEXT NOT NULL, arguments BLOB NOT NULL,
  PRIMARY KEY(vhost, source, to_exchange, destination, routing_key, arguments));
CREATE TABLE IF NOT EXISTS messages(
  id INTEGER PRIMARY KEY, vhost TEXT NOT NULL, queue TEXT NOT NULL, exchange TEXT NOT NULL,
  routing_key TEXT NOT NULL, properties BLOB NOT NULL, body BLOB NOT NULL,
  transient INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages(vhost, queue, id);
CREATE TABLE IF NOT EXISTS policies(
  vhost TEXT NOT NULL, name TEXT NOT NULL, pattern TEXT NOT NULL, apply_to TEXT NOT NULL,
  definition TEXT NOT NULL, priority INTEGER NOT NULL,
  PRIMARY KEY(vhost, name));
CREATE TABLE IF NOT EXISTS definitions(
  kind TEXT NOT NULL, key TEXT NOT NULL, change BLOB NOT NULL,
  PRIMARY KEY(kind, key));
)sql";

// What a queued message write keeps in RAM until it is committed: its content and the
// operation around it (the estimate matters for small messages, where it dominates).
uint64_t pending_cost(const MessageContent& c) {
  constexpr uint64_t kOpOverhead = 256;
  return c.body.size() + c.properties.size() + c.exchange.size() + c.routing_key.size() + kOpOverhead;
}

}  // namespace

void StoreStats::dump(nlohmann::json& out) const {
#define MQ_DUMP(n) out[#n] = n;
  MQ_STORE_STATS(MQ_DUMP, MQ_DUMP)
#undef MQ_DUMP
}

Store::Store(asio::io_context& io, const std::string& path, core::Logger log)
    : io_(io), path_(path), log_(std::move(log)) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string err = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error(fmt::format("cannot open the store {}: {} (is the data dir writable?)", path, err));
  }
  try {
    // FULL: a commit is on disk when it returns, which is what a publisher confirm promises.
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    exec(kSchema);
    // Stores written before paging existed lack the column.
    bool has_transient = false;
    {
      Stmt cols(db_, "SELECT name FROM pragma_table_info('messages')");
      while (cols.step_row()) has_transient |= cols.col_text(0) == "transient";
    }
    if (!has_transient) exec("ALTER TABLE messages ADD COLUMN transient INTEGER NOT NULL DEFAULT 0");
    Stmt max_id(db_, "SELECT COALESCE(MAX(id), 0) FROM messages");
    if (max_id.step_row()) next_message_id_ = static_cast<uint64_t>(max_id.col_int(0)) + 1;
    committed_below_ = next_message_id_;
    // Bodies paged out by the previous run belong to messages that did not survive it.
    exec("DELETE FROM messages WHERE transient=1");
    if (sqlite3_open_v2(path.c_str(), &read_db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK)
      throw std::runtime_error(read_db_ ? sqlite3_errmsg(read_db_) : "out of memory");
    read_message_ = std::make_unique<Stmt>(
        read_db_, "SELECT vhost, queue, exchange, routing_key, properties, body FROM messages WHERE id=?");
  } catch (const std::exception& e) {
    read_message_.reset();
    sqlite3_close(read_db_);
    sqlite3_close(db_);
    db_ = read_db_ = nullptr;
    throw std::runtime_error(fmt::format("cannot use the store {}: {} (a corrupt file? move it away to start empty)",
                                         path, e.what()));
  }
  thread_ = std::thread([this] { run(); });
  reader_ = std::thread([this] { reader(); });
}

Store::~Store() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  {
    std::lock_guard lock(load_mu_);
    reader_stopping_ = true;
  }
  load_cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  if (reader_.joinable()) reader_.join();
  read_message_.reset();
  sqlite3_close(read_db_);
  sqlite3_close(db_);
}

void Store::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw std::runtime_error(msg);
  }
}

Snapshot Store::load() {
  Snapshot snap;
  {
    Stmt s(db_, "SELECT vhost, name, type, auto_delete, internal, arguments FROM exchanges");
    while (s.step_row())
      snap.exchanges.push_back({s.col_text(0), s.col_text(1), s.col_text(2), s.col_int(3) != 0, s.col_int(4) != 0,
                                s.col_blob(5)});
  }
  {
    Stmt s(db_, "SELECT vhost, name, auto_delete, arguments FROM queues");
    while (s.step_row()) snap.queues.push_back({s.col_text(0), s.col_text(1), s.col_int(2) != 0, s.col_blob(3)});
  }
  {
    Stmt s(db_, "SELECT vhost, source, to_exchange, destination, routing_key, arguments FROM bindings");
    while (s.step_row())
      snap.bindings.push_back(
          {s.col_text(0), s.col_text(1), s.col_int(2) != 0, s.col_text(3), s.col_text(4), s.col_blob(5)});
  }
  {
    Stmt s(db_, "SELECT id, vhost, queue, properties, length(body) FROM messages ORDER BY id");
    while (s.step_row()) {
      MessageRecord m;
      m.id = static_cast<uint64_t>(s.col_int(0));
      m.vhost = s.col_text(1);
      m.queue = s.col_text(2);
      m.properties = s.col_blob(3);
      m.body_size = static_cast<uint64_t>(s.col_int(4));
      snap.messages.push_back(std::move(m));
    }
  }
  {
    Stmt s(db_, "SELECT vhost, name, pattern, apply_to, definition, priority FROM policies");
    while (s.step_row())
      snap.policies.push_back({s.col_text(0), s.col_text(1), s.col_text(2), s.col_text(3), s.col_text(4), s.col_int(5)});
  }
  {
    Stmt s(db_, "SELECT kind, key, change FROM definitions");
    while (s.step_row()) snap.definitions.push_back({s.col_text(0), s.col_text(1), s.col_blob(2)});
  }
  return snap;
}

void Store::enqueue(Op op) {
  ++stats_.pending_ops;
  if (!std::holds_alternative<Completion>(op)) ++writes_queued_;
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
}

void Store::put_exchange(ExchangeRecord r) { enqueue(std::move(r)); }
void Store::delete_exchange(std::string vhost, std::string name) {
  enqueue(DeleteExchange{std::move(vhost), std::move(name)});
}
void Store::put_queue(QueueRecord r) { enqueue(std::move(r)); }
void Store::delete_queue(std::string vhost, std::string name) { enqueue(DeleteQueue{std::move(vhost), std::move(name)}); }
void Store::put_binding(BindingRecord r) { enqueue(std::move(r)); }
void Store::delete_binding(BindingRecord r) { enqueue(DeleteBinding{std::move(r)}); }
void Store::put_policy(PolicyRecord r) { enqueue(std::move(r)); }
void Store::delete_policy(std::string vhost, std::string name) {
  enqueue(DeletePolicy{std::move(vhost), std::move(name)});
}
void Store::put_definition(DefinitionRecord r) { enqueue(std::move(r)); }
void Store::delete_definition(std::string kind, std::string key) {
  enqueue(DeleteDefinition{std::move(kind), std::move(key)});
}

uint64_t Store::put_message(std::string_view vhost, std::string_view queue, MessageContent content, bool transient) {
  uint64_t id = next_message_id_++;
  stats_.pending_bytes += pending_cost(content);
  enqueue(PutMessage{id, std::string(vhost), std::string(queue), std::move(content), transient});
  return id;
}

void Store::delete_message(uint64_t id) { enqueue(DeleteMessage{id}); }

bool Store::durable(uint64_t id) const {
  if (id >= committed_below_) return false;
  for (const auto& [lo, hi] : failed_loop_)
    if (id >= lo && id <= hi) return false;
  return true;
}

void Store::load_messages(std::vector<uint64_t> ids, std::function<void(std::vector<MessageRecord>)> done) {
  {
    std::lock_guard lock(load_mu_);
    loads_.push_back({std::move(ids), std::move(done)});
  }
  load_cv_.notify_one();
}

std::optional<MessageRecord> Store::read_message(uint64_t id) {
  std::lock_guard lock(read_mu_);
  return read_locked(id);
}

std::optional<MessageRecord> Store::read_locked(uint64_t id) {
  Stmt& s = *read_message_;
  s.integer(1, static_cast<int64_t>(id));
  std::optional<MessageRecord> m;
  if (s.step_row()) {
    m = MessageRecord{id, s.col_text(0), s.col_text(1), s.col_text(2), s.col_text(3), s.col_blob(4), s.col_blob(5)};
    m->body_size = m->body.size();
  }
  s.reset();
  return m;
}

void Store::reader() {
  for (;;) {
    std::vector<LoadRequest> work;
    {
      std::unique_lock lock(load_mu_);
      load_cv_.wait(lock, [&] { return !loads_.empty() || reader_stopping_; });
      if (loads_.empty()) break;
      work.swap(loads_);
    }
    for (auto& req : work) {
      std::vector<MessageRecord> found;
      found.reserve(req.ids.size());
      {
        // One read transaction for the whole request: one snapshot, one lock round.
        std::lock_guard lock(read_mu_);
        sqlite3_exec(read_db_, "BEGIN", nullptr, nullptr, nullptr);
        for (uint64_t id : req.ids)
          if (auto m = read_locked(id)) found.push_back(std::move(*m));
        sqlite3_exec(read_db_, "COMMIT", nullptr, nullptr, nullptr);
      }
      asio::post(io_, [this, done = std::move(req.done), found = std::move(found)]() mutable {
        stats_.messages_loaded += found.size();
        done(std::move(found));
      });
    }
  }
}

void Store::after_commit(std::function<void(bool)> done, uint64_t since_message) {
  enqueue(Completion{std::move(done), since_message, next_message_id_});
}

void Store::run() {
  Stmt put_msg(db_,
               "INSERT INTO messages(id, vhost, queue, exchange, routing_key, properties, body, transient) "
               "VALUES(?,?,?,?,?,?,?,?)");
  Stmt del_msg(db_, "DELETE FROM messages WHERE id=?");
  Stmt put_ex(db_, "INSERT OR REPLACE INTO exchanges VALUES(?,?,?,?,?,?)");
  Stmt del_ex(db_, "DELETE FROM exchanges WHERE vhost=? AND name=?");
  Stmt del_ex_bind(db_, "DELETE FROM bindings WHERE vhost=?1 AND (source=?2 OR (to_exchange=1 AND destination=?2))");
  Stmt put_q(db_, "INSERT OR REPLACE INTO queues VALUES(?,?,?,?)");
  Stmt del_q(db_, "DELETE FROM queues WHERE vhost=? AND name=?");
  Stmt del_q_msgs(db_, "DELETE FROM messages WHERE vhost=? AND queue=?");
  Stmt del_q_bind(db_, "DELETE FROM bindings WHERE vhost=? AND to_exchange=0 AND destination=?");
  Stmt put_b(db_, "INSERT OR REPLACE INTO bindings VALUES(?,?,?,?,?,?)");
  Stmt del_b(db_,
             "DELETE FROM bindings WHERE vhost=? AND source=? AND to_exchange=? AND destination=? AND routing_key=? "
             "AND arguments=?");
  Stmt put_pol(db_, "INSERT OR REPLACE INTO policies VALUES(?,?,?,?,?,?)");
  Stmt del_pol(db_, "DELETE FROM policies WHERE vhost=? AND name=?");
  Stmt put_def(db_, "INSERT OR REPLACE INTO definitions VALUES(?,?,?)");
  Stmt del_def(db_, "DELETE FROM definitions WHERE kind=? AND key=?");

  std::vector<Op> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) break;
      batch.swap(queue_);
    }
    // One transaction for everything that accumulated while the previous one committed.
    uint64_t written = 0, deleted = 0, metadata = 0;
    std::string error;
    auto transaction = [&](bool skip_messages) {
      written = deleted = metadata = 0;
      int rc = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
      for (auto& op : batch) {
        if (rc != SQLITE_OK) break;
        if (auto* p = std::get_if<PutMessage>(&op)) {
          if (skip_messages) continue;
          rc = put_msg.integer(1, static_cast<int64_t>(p->id))
                   .text(2, p->vhost)
                   .text(3, p->queue)
                   .text(4, p->content.exchange)
                   .text(5, p->content.routing_key)
                   .blob(6, p->content.properties)
                   .blob(7, p->content.body)
                   .integer(8, p->transient)
                   .run();
          ++written;
        } else if (auto* d = std::get_if<DeleteMessage>(&op)) {
          rc = del_msg.integer(1, static_cast<int64_t>(d->id)).run();
          ++deleted;
        } else if (auto* e = std::get_if<ExchangeRecord>(&op)) {
          rc = put_ex.text(1, e->vhost).text(2, e->name).text(3, e->type).integer(4, e->auto_delete)
                   .integer(5, e->internal).blob(6, e->arguments).run();
          ++metadata;
        } else if (auto* de = std::get_if<DeleteExchange>(&op)) {
          rc = del_ex.text(1, de->vhost).text(2, de->name).run();
          if (rc == SQLITE_OK) rc = del_ex_bind.text(1, de->vhost).text(2, de->name).run();
          ++metadata;
        } else if (auto* q = std::get_if<QueueRecord>(&op)) {
          rc = put_q.text(1, q->vhost).text(2, q->name).integer(3, q->auto_delete).blob(4, q->arguments).run();
          ++metadata;
        } else if (auto* dq = std::get_if<DeleteQueue>(&op)) {
          rc = del_q.text(1, dq->vhost).text(2, dq->name).run();
          if (rc == SQLITE_OK) rc = del_q_msgs.text(1, dq->vhost).text(2, dq->name).run();
          if (rc == SQLITE_OK) rc = del_q_bind.text(1, dq->vhost).text(2, dq->name).run();
          ++metadata;
        } else if (auto* b = std::get_if<BindingRecord>(&op)) {
          rc = put_b.text(1, b->vhost).text(2, b->source).integer(3, b->to_exchange).text(4, b->destination)
                   .text(5, b->key).blob(6, b->arguments).run();
          ++metadata;
        } else if (auto* db = std::get_if<DeleteBinding>(&op)) {
          rc = del_b.text(1, db->r.vhost).text(2, db->r.source).integer(3, db->r.to_exchange).text(4, db->r.destination)
                   .text(5, db->r.key).blob(6, db->r.arguments).run();
          ++metadata;
        } else if (auto* pp = std::get_if<PolicyRecord>(&op)) {
          rc = put_pol.text(1, pp->vhost).text(2, pp->name).text(3, pp->pattern).text(4, pp->apply_to)
                   .text(5, pp->definition).integer(6, pp->priority).run();
          ++metadata;
        } else if (auto* dp = std::get_if<DeletePolicy>(&op)) {
          rc = del_pol.text(1, dp->vhost).text(2, dp->name).run();
          ++metadata;
        } else if (auto* pd = std::get_if<DefinitionRecord>(&op)) {
          rc = put_def.text(1, pd->kind).text(2, pd->key).blob(3, pd->change).run();
          ++metadata;
        } else if (auto* dd = std::get_if<DeleteDefinition>(&op)) {
          rc = del_def.text(1, dd->kind).text(2, dd->key).run();
          ++metadata;
        }
      }
      if (rc == SQLITE_OK) rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
      if (rc != SQLITE_OK) {
        error = sqlite3_errmsg(db_);
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      }
      return rc;
    };
    int rc = transaction(false);
    uint64_t lo = UINT64_MAX, hi = 0, bytes = 0;
    for (const auto& op : batch)
      if (const auto* p = std::get_if<PutMessage>(&op)) {
        lo = std::min(lo, p->id);
        hi = std::max(hi, p->id);
        bytes += pending_cost(p->content);
      }
    // A full disk fails the batch; acks and definitions free or take little space, so they
    // are retried without the new messages (whose publishers get nacks).
    if (rc != SQLITE_OK) {
      if (hi) failed_.emplace_back(lo, hi);
      transaction(true);
    }
    // A completion vouches for every message since its caller's previous one, including
    // those in earlier batches: a failure there makes it a failure too.
    for (auto& op : batch)
      if (auto* c = std::get_if<Completion>(&op)) {
        c->ok = rc == SQLITE_OK;
        for (const auto& [lo, hi] : failed_)
          if (lo < c->upto && hi >= c->since) c->ok = false;
      }
    bool ok = rc == SQLITE_OK;
    // Completions and counters go back to the loop thread; message content is released
    // there too (its owner is a loop-side object).
    auto n = batch.size();
    asio::post(io_, [this, ok, error, n, written, deleted, metadata, lo, hi, bytes, done = std::move(batch)]() mutable {
      stats_.pending_ops -= n;
      stats_.pending_bytes -= bytes;
      if (hi && !ok) failed_loop_.emplace_back(lo, hi);
      if (hi) committed_below_ = std::max(committed_below_, hi + 1);
      if (ok) {
        ++stats_.commits;
        stats_.messages_written += written;
        stats_.messages_deleted += deleted;
        stats_.metadata_writes += metadata;
      } else {
        ++stats_.commit_failures;
        log_.error("store commit failed file={} error=\"{}\" ops={}: publishers get nacks until it succeeds; "
                   "free disk space or fix the data dir",
                   path_, error, n);
      }
      for (auto& op : done)
        if (auto* c = std::get_if<Completion>(&op)) c->done(c->ok);
      if (commit_listener_) commit_listener_();
    });
    batch = {};
  }
}

}  // namespace mqnode::store
