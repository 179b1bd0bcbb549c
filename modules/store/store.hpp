// Durable state in one SQLite file (WAL, synchronous=FULL) in the node's data dir: durable
// exchanges, queues and bindings, runtime policies, persistent messages on durable queues,
// and the bodies that queues page out of RAM (transient rows, dropped at the next start).
// The loop queues writes; a thread of the store's own commits whatever has accumulated in
// one transaction (group commit) and posts completions back to the loop, so the loop never
// waits on the disk and one fsync covers many publishes. A second thread with its own read
// connection loads paged-out bodies back for the queues.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "core/log.hpp"

struct sqlite3;

namespace mqnode::store {

class Stmt;  // a prepared SQLite statement (store.cpp)

using Bytes = std::vector<uint8_t>;

struct ExchangeRecord {
  std::string vhost, name, type;
  bool auto_delete = false, internal = false;
  Bytes arguments;  // AMQP field table, encoded
};
struct QueueRecord {
  std::string vhost, name;
  bool auto_delete = false;
  Bytes arguments;
};
struct BindingRecord {
  std::string vhost, source;
  bool to_exchange = false;
  std::string destination, key;
  Bytes arguments;
};
// A runtime policy (rabbitmqctl set_policy); <definition> is its JSON text.
struct PolicyRecord {
  std::string vhost, name, pattern, apply_to, definition;
  int64_t priority = 0;
};
// A user, vhost, permission or runtime parameter created at run time: <change> is the
// broker's encoded change that made it, <key> names it within its <kind>.
struct DefinitionRecord {
  std::string kind, key;
  Bytes change;
};
struct MessageRecord {
  uint64_t id = 0;
  std::string vhost, queue, exchange, routing_key;
  Bytes properties, body;
  uint64_t body_size = 0;  // the body's length (load() leaves <body> itself on disk)
};

// Everything on disk, read once at start (messages in publish order, without their bodies
// and exchange/routing key: queues load those when they page the messages in).
struct Snapshot {
  std::vector<ExchangeRecord> exchanges;
  std::vector<QueueRecord> queues;
  std::vector<BindingRecord> bindings;
  std::vector<MessageRecord> messages;
  std::vector<PolicyRecord> policies;
  std::vector<DefinitionRecord> definitions;
};

// A message's content, kept alive by <owner> until the store thread has written it.
struct MessageContent {
  std::shared_ptr<const void> owner;
  std::string_view exchange, routing_key;
  std::span<const uint8_t> properties, body;
};

#define MQ_STORE_STATS(C, G)                                                                        \
  C(commits) C(commit_failures) C(messages_written) C(messages_deleted) C(metadata_writes)           \
  C(messages_loaded) G(pending_ops) G(pending_bytes) /* RAM held by queued message writes */

struct StoreStats {
#define MQ_COUNTER(n) uint64_t n = 0;
  MQ_STORE_STATS(MQ_COUNTER, MQ_COUNTER)
#undef MQ_COUNTER
  void dump(nlohmann::json& out) const;
};

class Store {
 public:
  // Opens (creating if needed) <path>; throws std::runtime_error naming the file and
  // what to do when it cannot be opened, is not a database or is not writable.
  // Precondition: the process holds its data dir's DataDirLock: opening drops the previous
  // run's paged-out rows, which in a live node's store are that node's messages.
  Store(asio::io_context& io, const std::string& path, core::Logger log);
  ~Store();  // commits what is queued, then stops the thread
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Reads everything; call once, before serving (it runs on the caller's thread).
  Snapshot load();

  void put_exchange(ExchangeRecord r);
  void delete_exchange(std::string vhost, std::string name);
  void put_queue(QueueRecord r);
  // Also deletes the queue's messages and bindings.
  void delete_queue(std::string vhost, std::string name);
  void put_binding(BindingRecord r);
  void delete_binding(BindingRecord r);
  void put_policy(PolicyRecord r);
  void delete_policy(std::string vhost, std::string name);
  void put_definition(DefinitionRecord r);
  void delete_definition(std::string kind, std::string key);
  // Returns the id under which the message is stored (assigned at once, in order).
  // <transient>: a body paged out of RAM, not a persistent message: not restored at start.
  uint64_t put_message(std::string_view vhost, std::string_view queue, MessageContent content,
                       bool transient = false);
  void delete_message(uint64_t id);
  // True once message <id> is committed (readable by load_messages/read_message). A message
  // whose write failed never becomes durable.
  bool durable(uint64_t id) const;

  // Reads committed messages <ids> on the reader thread; <done> gets the records found
  // (in <ids> order; a deleted one is missing) on the loop.
  void load_messages(std::vector<uint64_t> ids, std::function<void(std::vector<MessageRecord>)> done);
  // The same for one message, on the caller's thread: for the rare paths that cannot wait
  // (basic.get or dead-lettering reaching a paged-out head). Committed data only.
  std::optional<MessageRecord> read_message(uint64_t id);

  // <listener> runs on the loop after every commit (flow control watches pending_bytes).
  void on_commit(std::function<void()> listener) { commit_listener_ = std::move(listener); }

  // <done>(ok) runs on the loop once every write queued before this call is committed.
  // ok=false when a message stored since id <since_message> (the caller's previous call:
  // see next_message_id()) failed to be written (disk full, I/O error), even if a later
  // commit succeeded.
  void after_commit(std::function<void(bool ok)> done, uint64_t since_message = 0);
  // The id the next stored message will get.
  uint64_t next_message_id() const { return next_message_id_; }
  // How many writes were queued since open: a caller compares two readings to learn
  // whether something it did wrote to the store (and so must wait for after_commit).
  uint64_t writes_queued() const { return writes_queued_; }

  const StoreStats& stats() const { return stats_; }
  const std::string& path() const { return path_; }

 private:
  struct PutMessage {
    uint64_t id;
    std::string vhost, queue;
    MessageContent content;
    bool transient;
  };
  struct DeleteMessage {
    uint64_t id;
  };
  struct DeleteExchange {
    std::string vhost, name;
  };
  struct DeleteQueue {
    std::string vhost, name;
  };
  struct DeleteBinding {
    BindingRecord r;
  };
  struct DeletePolicy {
    std::string vhost, name;
  };
  struct DeleteDefinition {
    std::string kind, key;
  };
  struct Completion {
    std::function<void(bool)> done;
    uint64_t since = 0, upto = 0;  // the message ids it vouches for: [since, upto)
    bool ok = false;               // decided on the store thread
  };
  using Op = std::variant<PutMessage, DeleteMessage, ExchangeRecord, DeleteExchange, QueueRecord, DeleteQueue,
                          BindingRecord, DeleteBinding, PolicyRecord, DeletePolicy, DefinitionRecord,
                          DeleteDefinition, Completion>;

  struct LoadRequest {
    std::vector<uint64_t> ids;
    std::function<void(std::vector<MessageRecord>)> done;
  };

  void enqueue(Op op);
  void run();     // the store thread
  void reader();  // the reader thread
  std::optional<MessageRecord> read_locked(uint64_t id);
  bool commit(std::vector<Op>& ops, std::string& error);
  void exec(const char* sql);

  asio::io_context& io_;
  std::string path_;
  core::Logger log_;
  sqlite3* db_ = nullptr;
  uint64_t next_message_id_ = 1;
  uint64_t writes_queued_ = 0;
  StoreStats stats_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Op> queue_;
  // Id ranges of messages whose commit failed (store thread only).
  std::vector<std::pair<uint64_t, uint64_t>> failed_;
  bool stopping_ = false;
  std::thread thread_;

  // Loop side: what is known committed, for durable().
  uint64_t committed_below_ = 1;
  std::vector<std::pair<uint64_t, uint64_t>> failed_loop_;
  std::function<void()> commit_listener_;

  // The reader: its own connection (WAL readers never wait for the writer); read_message()
  // on the loop shares it under <read_mu_>.
  sqlite3* read_db_ = nullptr;
  std::unique_ptr<Stmt> read_message_;  // prepared once, used under <read_mu_>
  std::mutex read_mu_;
  std::mutex load_mu_;
  std::condition_variable load_cv_;
  std::vector<LoadRequest> loads_;
  bool reader_stopping_ = false;
  std::thread reader_;
};

}  // namespace mqnode::store
