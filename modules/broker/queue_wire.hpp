// The frames of queue traffic between nodes (cluster links of purpose Queues): a node that
// is not a queue's home sends publishes, subscriptions, settlements and requests; the home
// answers, delivers and confirms. Each frame is one cluster link frame (cluster/frame.hpp)
// whose payload starts with its kind. Pure codec: the link and the fuzzer drive it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "broker/message.hpp"

namespace mqnode::broker::wire {

struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- to the home ----
// <token> 0: nobody waits for the outcome (no confirm, dead-lettering).
struct Publish {
  std::string vhost, queue;
  uint64_t token = 0;
  Message msg;
};
// A consumer on the sending node. The home sends at most <window> deliveries ahead: with
// <credit_on_settle> (a consumer with a prefetch) each settlement of one of them allows one
// more, as the prefetch does; otherwise the sender grants more with Credit frames.
struct Subscribe {
  uint64_t request = 0;
  std::string vhost, queue;
  uint64_t consumer = 0;
  bool exclusive = false;
  bool no_ack = false;
  bool credit_on_settle = false;
  int64_t priority = 0;
  uint32_t window = 0;
};
struct Cancel {
  uint64_t consumer = 0;
};
struct Credit {
  uint64_t consumer = 0;
  uint32_t count = 0;
};
enum class SettleKind : uint8_t { Ack = 1, Requeue = 2, Reject = 3 };
// Deliveries (by the home's tags) settled together; a requeue keeps their order.
struct Settle {
  SettleKind kind = SettleKind::Ack;
  std::vector<uint64_t> tags;
};
enum class RequestKind : uint8_t { Status = 1, Fetch = 2, Purge = 3, Touch = 4 };
struct Request {
  RequestKind kind = RequestKind::Status;
  uint64_t request = 0;  // 0 for Touch: no reply
  std::string vhost, queue;
};

// ---- from the home ----
struct Fetched {
  uint64_t tag = 0;
  bool redelivered = false;
  Message msg;
};
// The answer to a Subscribe or a Request: code 0 or an AMQP channel error with its text;
// <count> is the purge's count or the messages left; <fetched> a basic.get's message.
struct Reply {
  uint64_t request = 0;
  uint16_t code = 0;
  std::string text;
  uint64_t messages = 0;
  uint64_t consumers = 0;
  std::optional<Fetched> fetched;
};
struct Published {
  uint64_t token = 0;
  bool ok = false;
};
struct Deliver {
  uint64_t consumer = 0;
  uint64_t tag = 0;
  bool redelivered = false;
  Message msg;
};
// The home cancelled the consumer (its queue was deleted there).
struct Cancelled {
  uint64_t consumer = 0;
};

using Frame = std::variant<Publish, Subscribe, Cancel, Credit, Settle, Request, Reply, Published, Deliver, Cancelled>;

// Appends <f>'s payload to <out>.
void encode(const Frame& f, std::vector<uint8_t>& out);
// Throws DecodeError naming what is wrong (unknown kind, short or trailing bytes).
Frame decode(std::span<const uint8_t> payload);

}  // namespace mqnode::broker::wire
