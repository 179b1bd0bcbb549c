// How channels reach a queue: every queue operation an AMQP client can cause goes through
// this interface, so a channel does not know where the queue lives. The local
// implementation is Queue (this node is the queue's home); a queue homed on another node
// and a replicated queue implement the same operations over the cluster.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/message.hpp"
#include "broker/message_stats.hpp"

namespace mqnode::broker {

struct Consumer;
struct QueueDefinition;
struct QueueEntry;

struct EnqueueResult {
  bool accepted = true;  // false: refused by x-overflow reject-publish(-dlx)
  bool durable = false;  // queued for writing to the store: the confirm waits for it
  bool remote = false;   // sent to the queue's home node: <settled> tells how it ended
};

// A message published to every queue it routed to (Vhost::publish).
struct PublishOutcome {
  std::size_t queues = 0;  // destinations it was enqueued in
  bool durable = false;    // some queue wrote it to the store: its confirm waits
  bool refused = false;    // some queue refused it (x-overflow reject-publish): nack
  std::size_t remote = 0;  // destinations on other nodes: their <settled> calls are due
};

// How a publish sent to a queue's home ended: true once the home has it (on disk if it is
// persistent and the queue durable), false if it refused or lost it. Empty: nobody waits.
using Settled = std::function<void(bool ok)>;

// A refusal of an operation by the queue (or by its home's absence): an AMQP channel
// error code and RabbitMQ's text. code 0: no error.
struct QueueError {
  uint16_t code = 0;
  std::string text;
  explicit operator bool() const { return code != 0; }
};

// What declare-ok and delete's if-unused / if-empty need.
struct QueueStatus {
  std::size_t messages = 0;
  std::size_t consumers = 0;
};

class QueueHandle {
 public:
  virtual ~QueueHandle() = default;

  virtual const QueueDefinition& definition() const = 0;

  // What this node's channels did with the queue through this handle (publish, deliver,
  // get, ack, redeliver), for the management API's rates.
  MessageStats message_stats;

  // Publish (the channel's and dead-lettering's one path ends here). A local queue ignores
  // <settled> (its durability is the store's commit, which the channel follows); a remote
  // one calls it once when result.remote.
  virtual EnqueueResult enqueue(MessagePtr msg, const Settled& settled) = 0;

  // The operations whose answer lives at the queue's home call <done> once, on the loop:
  // at once for a local queue, when the home replies for a remote one.
  virtual void status(std::function<void(QueueError, QueueStatus)> done) = 0;
  // <c> gets deliveries while its channel gives it credit, once <done> reported no error
  // (403 when the queue is in exclusive use); credit() says the channel may take more now
  // (an ack, a larger prefetch, a drained socket).
  virtual void subscribe(Consumer& c, std::function<void(QueueError)> done) = 0;
  virtual bool cancel(const Consumer& c) = 0;  // false: it was not consuming here
  virtual void credit() = 0;
  // basic.get: the head, taken out for the caller to settle, and how many remain.
  virtual void fetch(std::function<void(QueueError, std::optional<QueueEntry>, std::size_t remaining)> done) = 0;
  virtual void purge(std::function<void(QueueError, std::size_t purged)> done) = 0;

  // Settlement of messages taken out of this queue (delivered or fetched).
  virtual void ack(const QueueEntry& e) = 0;                   // gone for good
  virtual void requeue(std::vector<QueueEntry> entries) = 0;   // back at the head, in this order
  virtual void reject(QueueEntry e) = 0;                       // to the dead-letter exchange, if any

  // A client used the queue (declare, get, consume): restarts its x-expires clock.
  virtual void touch() = 0;
};

using QueueHandlePtr = std::shared_ptr<QueueHandle>;

}  // namespace mqnode::broker
