// How channels reach a queue: every queue operation an AMQP client can cause goes through
// this interface, so a channel does not know where the queue lives. The local
// implementation is Queue (this node is the queue's home); a queue homed on another node
// and a replicated queue implement the same operations over the cluster.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/message.hpp"

namespace mqnode::broker {

struct Consumer;
struct QueueDefinition;
struct QueueEntry;

struct EnqueueResult {
  bool accepted = true;  // false: refused by x-overflow reject-publish(-dlx)
  bool durable = false;  // queued for writing to the store: the confirm waits for it
};

// A message published to every queue it routed to (Vhost::publish).
struct PublishOutcome {
  std::size_t queues = 0;  // destinations it was enqueued in
  bool durable = false;    // some queue wrote it to the store: its confirm waits
  bool refused = false;    // some queue refused it (x-overflow reject-publish): nack
};

class QueueHandle {
 public:
  virtual ~QueueHandle() = default;

  virtual const QueueDefinition& definition() const = 0;

  // Publish (the channel's and dead-lettering's one path ends here).
  virtual EnqueueResult enqueue(MessagePtr msg) = 0;

  // Consumers: <c> gets deliveries while its channel gives it credit; credit() says the
  // channel may take more now (an ack, a larger prefetch, a drained socket).
  virtual void consume(Consumer& c) = 0;
  virtual bool cancel(const Consumer& c) = 0;  // false: it was not consuming here
  virtual void credit() = 0;

  // basic.get: the head, taken out for the caller to settle.
  virtual std::optional<QueueEntry> get() = 0;

  // Settlement of messages taken out of this queue (delivered or got).
  virtual void ack(const QueueEntry& e) = 0;                   // gone for good
  virtual void requeue(std::vector<QueueEntry> entries) = 0;   // back at the head, in this order
  virtual void reject(QueueEntry e) = 0;                       // to the dead-letter exchange, if any

  virtual std::size_t purge() = 0;

  // What declare-ok, delete's if-unused/if-empty and consume's exclusivity need.
  virtual std::size_t message_count() const = 0;
  virtual std::size_t consumer_count() const = 0;
  virtual bool has_exclusive_consumer() const = 0;
  // A client used the queue (declare, get, consume): restarts its x-expires clock.
  virtual void touch() = 0;
};

using QueueHandlePtr = std::shared_ptr<QueueHandle>;

}  // namespace mqnode::broker
