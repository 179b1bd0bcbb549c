// Queue traffic between the nodes of a cluster, over cluster links of purpose Queues: the
// handles of queues homed on other nodes (RemoteQueue), one link to each home, multiplexed
// by every channel of this node and kept in order; and the home side, which serves the
// links other nodes open to it with this node's local queues. Loop thread only.
//
// A link that breaks fails what waits on it: requests get RabbitMQ's 404 "home node …
// is down or inaccessible", unconfirmed publishes are nacked, consumers are cancelled
// (basic.cancel). On the home, its deliveries that were not settled go back to their
// queues. The next use of a queue homed there opens a new link.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "broker/remote_queue.hpp"
#include "cluster/link.hpp"
#include "core/log.hpp"

namespace mqnode::broker {

class Catalog;

class QueueLinks final : public QueueHomes, public std::enable_shared_from_this<QueueLinks> {
 public:
  // A node's cluster address ("host:port") by its name; empty when unknown.
  using Resolve = std::function<std::string(const std::string& node)>;

  static std::shared_ptr<QueueLinks> create(asio::io_context& io, Catalog& catalog,
                                            std::shared_ptr<cluster::Links> links, Resolve resolve, core::Logger log);
  ~QueueLinks() override;

  std::shared_ptr<RemoteQueue> open(const std::string& vhost, const QueueDefinition& def) override;
  // An authenticated link another node opened: this node is the home of what it names.
  void serve(cluster::Link link);
  // Closes every link, both ways, failing and requeueing as a broken link does.
  void close();

  void dump(nlohmann::json& out) const;

  struct Pipe;
  struct HomeSession;
  struct ServedSession;

 private:
  friend class LinkedQueue;
  QueueLinks(asio::io_context& io, Catalog& catalog, std::shared_ptr<cluster::Links> links, Resolve resolve,
             core::Logger log);
  // The link to <node>, opened on first use.
  std::shared_ptr<HomeSession> session(const std::string& node);

  asio::io_context& io_;
  Catalog& catalog_;
  std::shared_ptr<cluster::Links> links_;
  Resolve resolve_;
  core::Logger log_;
  std::map<std::string, std::shared_ptr<HomeSession>> homes_;
  std::map<ServedSession*, std::shared_ptr<ServedSession>> served_;
  uint64_t next_tag_ = 1;  // delivery tags of this home, unique across its links
  bool closed_ = false;
};

}  // namespace mqnode::broker
