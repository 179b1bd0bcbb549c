// A queue homed on another node of the cluster, as this node's vhost holds it: a handle
// whose operations travel to the home (QueueLinks implements both over the cluster links).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "broker/queue.hpp"

namespace mqnode::broker {

class RemoteQueue : public QueueHandle {
 public:
  // The queue was deleted: its consumers on this node are detached and returned, for the
  // vhost to cancel (basic.cancel to their clients).
  virtual std::vector<Consumer*> mark_deleted() = 0;
};

// Where the handles of queues homed elsewhere come from. Without one (a single node) every
// queue is local.
class QueueHomes {
 public:
  virtual ~QueueHomes() = default;
  virtual std::shared_ptr<RemoteQueue> open(const std::string& vhost, const QueueDefinition& def) = 0;
};

}  // namespace mqnode::broker
