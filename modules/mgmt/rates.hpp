// Message, length and data rates as RabbitMQ's management API reports them: the counters
// the broker keeps (broker/message_stats.hpp, queue lengths, socket bytes) are sampled on
// a timer (RabbitMQ's collect_statistics_interval, 5 s) and turned into "*_details"
// objects: {"rate"} always, and "samples", "avg", "avg_rate" for the window a request asks
// for with msg_rates_age/msg_rates_incr, lengths_age/lengths_incr, data_rates_age/
// data_rates_incr. Loop thread only.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "broker/message_stats.hpp"

namespace mqnode::broker {
class Broker;
class Channel;
class Connection;
class Exchange;
class QueueHandle;
class Queue;
}  // namespace mqnode::broker

namespace mqnode::mgmt {

// What one sample holds: the message counters (and RabbitMQ's derived deliver_get), the
// queue lengths and the socket bytes. Each object kind uses the part that applies to it.
// (In a namespace of their own: "get", "publish" and "messages" are common names.)
namespace fields {
enum Field : uint8_t {
#define MQ_RATE_FIELD(n) n,
  MQ_MESSAGE_STATS(MQ_RATE_FIELD)
#undef MQ_RATE_FIELD
  deliver_get,
  messages,
  messages_ready,
  messages_unacknowledged,
  recv_oct,
  send_oct,
  kFieldCount
};
}  // namespace fields
using fields::Field;
using Values = std::array<uint64_t, fields::kFieldCount>;

// The live values of each kind of object (what a sample records and a response counts).
Values node_values(const broker::Broker& b);
Values queue_values(const broker::QueueHandle& handle, const broker::Queue* local);
Values exchange_values(const broker::Exchange& e);
Values channel_values(const broker::Channel& ch);
Values connection_values(const broker::Connection& c);

// The samples a request asks for: ?<prefix>_age=S&<prefix>_incr=S, in seconds.
struct SampleWindow {
  int64_t age_s = 0;
  int64_t incr_s = 0;
};
struct RateQuery {
  std::optional<SampleWindow> msg_rates, lengths, data_rates;
};
// The windows in <params>; ApiError 400 for a bad or half-given pair.
RateQuery parse_rate_query(const std::map<std::string, std::string>& params);

class Rates {
 public:
  enum class Kind : uint8_t { Node, Queue, Exchange, Channel, Connection };

  // Records every object of <b> at <now_ms> (wall clock, as RabbitMQ's timestamps) and
  // forgets the objects that are gone. An object that never counted anything is not kept
  // (a zero at the previous sample's time starts its samples when it first counts).
  void sample(const broker::Broker& b, int64_t now_ms);

  // Adds RabbitMQ's fields for <kind> to <obj>, from <live> and the samples of <key>:
  // "message_stats" with counts and "*_details" (the node's also "queue_totals" details),
  // a queue's "messages*_details", a connection's "recv_oct", "send_oct" and their details.
  void annotate(nlohmann::json& obj, Kind kind, const std::string& key, const Values& live,
                const RateQuery& q) const;

  // The key of a vhost's queue or exchange, of a connection and of one of its channels.
  static std::string key(std::string_view vhost, std::string_view name);
  static std::string key(uint64_t connection, uint16_t channel = 0);

  // Samples kept: the node's cover ten minutes at 5 s (RabbitMQ's global retention); each
  // other object's one minute, so 10,000 busy queues cost a few MB.
  static constexpr std::size_t kNodeSamples = 121;
  static constexpr std::size_t kObjectSamples = 13;

 private:
  struct Point {
    int64_t ts;
    Values v;
  };
  struct Series {
    std::deque<Point> points;
    uint64_t pass = 0;  // the sample pass that last saw the object
  };
  void record(Kind kind, std::string key, const Values& v);
  nlohmann::json details(const Series* s, Field f, const std::optional<SampleWindow>& w) const;
  void add_fields(nlohmann::json& out, const Series* s, const Values& live, std::initializer_list<Field> fields,
                  bool always, const std::optional<SampleWindow>& w) const;

  int64_t now_ms_ = 0;   // the last sample's time
  int64_t prev_ms_ = 0;  // the one before (0: none)
  uint64_t pass_ = 0;
  std::unordered_map<std::string, Series> series_;  // by kind byte + key
};

}  // namespace mqnode::mgmt
