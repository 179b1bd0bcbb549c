#include "mgmt/rates.hpp"

#include <charconv>

#include <fmt/format.h>

#include "broker/broker.hpp"
#include "broker/channel.hpp"
#include "broker/connection.hpp"
#include "mgmt/http_api.hpp"

namespace mqnode::mgmt {

using namespace fields;

namespace {

constexpr const char* kFieldNames[kFieldCount] = {
#define MQ_RATE_NAME(n) #n,
    MQ_MESSAGE_STATS(MQ_RATE_NAME)
#undef MQ_RATE_NAME
        "deliver_get",
    "messages", "messages_ready", "messages_unacknowledged", "recv_oct", "send_oct"};

Values message_values(const broker::MessageStats& s) {
  Values v{};
#define MQ_RATE_COPY(n) v[n] = s.n;
  MQ_MESSAGE_STATS(MQ_RATE_COPY)
#undef MQ_RATE_COPY
  v[deliver_get] = s.deliver + s.deliver_no_ack + s.get + s.get_no_ack;
  return v;
}

void set_lengths(Values& v, uint64_t ready, uint64_t unacked) {
  v[messages] = ready + unacked;
  v[messages_ready] = ready;
  v[messages_unacknowledged] = unacked;
}

// One ?<prefix>_age=&<prefix>_incr= pair.
std::optional<SampleWindow> window(const std::map<std::string, std::string>& params, const std::string& prefix) {
  auto age = params.find(prefix + "_age"), incr = params.find(prefix + "_incr");
  if (age == params.end() && incr == params.end()) return std::nullopt;
  auto seconds = [&](auto it, const std::string& name) {
    if (it == params.end()) throw ApiError(400, "bad_request", fmt::format("{} needs {}", prefix, name));
    int64_t v = 0;
    const auto& s = it->second;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || v <= 0)
      throw ApiError(400, "bad_request", fmt::format("{}: expected a positive number of seconds, got '{}'", name, s));
    return v;
  };
  SampleWindow w{seconds(age, prefix + "_age"), seconds(incr, prefix + "_incr")};
  // As many samples as RabbitMQ allows before it refuses a range as too large.
  if (w.age_s / w.incr_s > 100)
    throw ApiError(400, "bad_request", fmt::format("{}: more than 100 samples asked for", prefix));
  return w;
}

}  // namespace

Values node_values(const broker::Broker& b) {
  Values v = message_values(b.message_stats());
  uint64_t ready = 0;
  for (const auto& [name, vh] : b.vhosts())
    for (const auto& [qname, q] : vh->queues()) ready += q->message_count();
  set_lengths(v, ready, b.messages_unacked());
  return v;
}

Values queue_values(const broker::QueueHandle& handle, const broker::Queue* local) {
  Values v = message_values(handle.message_stats);
  if (local) {
    uint64_t unacked = 0;
    for (const auto* consumer : local->consumers()) unacked += consumer->unacked;
    set_lengths(v, local->message_count(), unacked);
  }
  return v;
}

Values exchange_values(const broker::Exchange& e) { return message_values(e.message_stats); }

Values channel_values(const broker::Channel& ch) { return message_values(ch.message_stats()); }

Values connection_values(const broker::Connection& c) {
  Values v{};
  v[recv_oct] = c.recv_oct();
  v[send_oct] = c.send_oct();
  return v;
}

RateQuery parse_rate_query(const std::map<std::string, std::string>& params) {
  return {window(params, "msg_rates"), window(params, "lengths"), window(params, "data_rates")};
}

std::string Rates::key(std::string_view vhost, std::string_view name) {
  std::string k(vhost);
  k.push_back('\0');
  k.append(name);
  return k;
}

std::string Rates::key(uint64_t connection, uint16_t channel) { return fmt::format("{}/{}", connection, channel); }

void Rates::record(Kind kind, std::string key, const Values& v) {
  key.insert(key.begin(), static_cast<char>(kind));
  auto it = series_.find(key);
  if (it == series_.end()) {
    if (kind != Kind::Node && v == Values{}) return;  // idle since it appeared: its rates are zero
    it = series_.emplace(std::move(key), Series{}).first;
    // It was idle (or not there) at the previous sample: that zero is the first rate's base.
    if (prev_ms_) it->second.points.push_back({prev_ms_, Values{}});
  }
  auto& s = it->second;
  s.pass = pass_;
  s.points.push_back({now_ms_, v});
  if (s.points.size() > (kind == Kind::Node ? kNodeSamples : kObjectSamples)) s.points.pop_front();
}

void Rates::sample(const broker::Broker& b, int64_t now_ms) {
  prev_ms_ = now_ms_;
  now_ms_ = now_ms;
  ++pass_;
  record(Kind::Node, "", node_values(b));
  for (const auto& [vname, vh] : b.vhosts()) {
    for (const auto& [qname, q] : vh->all_queues()) {
      auto local = vh->find_local_queue(qname);
      record(Kind::Queue, key(vname, qname), queue_values(*q, local.get()));
    }
    for (const auto& [ename, e] : vh->exchanges()) record(Kind::Exchange, key(vname, ename), exchange_values(*e));
  }
  for (const auto& [id, conn] : b.connections()) {
    record(Kind::Connection, key(id), connection_values(*conn));
    for (const auto& [number, ch] : conn->channels()) record(Kind::Channel, key(id, number), channel_values(*ch));
  }
  std::erase_if(series_, [&](const auto& kv) { return kv.second.pass != pass_; });
}

nlohmann::json Rates::details(const Series* s, Field f, const std::optional<SampleWindow>& w) const {
  double rate = 0;
  if (s && s->points.size() >= 2) {
    const auto& last = s->points.back();
    const auto& prev = s->points[s->points.size() - 2];
    // Lengths fall as well as rise: a signed difference.
    auto diff = static_cast<double>(static_cast<int64_t>(last.v[f] - prev.v[f]));
    if (last.ts > prev.ts) rate = diff * 1000.0 / static_cast<double>(last.ts - prev.ts);
  }
  nlohmann::json d{{"rate", rate}};
  if (!w) return d;
  // RabbitMQ's samples: newest first, on multiples of the increment, each the value then.
  const int64_t incr_ms = w->incr_s * 1000;
  const int64_t newest = s && !s->points.empty() ? s->points.back().ts : now_ms_;
  const int64_t start = newest / incr_ms * incr_ms;
  auto samples = nlohmann::json::array();
  double sum = 0;
  auto point = s ? s->points.rbegin() : std::deque<Point>::const_reverse_iterator{};
  for (int64_t t = start; t >= start - w->age_s * 1000; t -= incr_ms) {
    uint64_t value = 0;
    if (s) {
      while (point != s->points.rend() && point->ts > t) ++point;
      if (point == s->points.rend()) break;  // older than what is kept
      value = point->v[f];
    }
    samples.push_back({{"sample", value}, {"timestamp", t}});
    sum += static_cast<double>(value);
  }
  double avg_rate = 0;
  if (samples.size() >= 2) {
    const auto& first = samples.front();
    const auto& last = samples.back();
    auto diff = static_cast<double>(first["sample"].get<int64_t>() - last["sample"].get<int64_t>());
    avg_rate = diff * 1000.0 / static_cast<double>(first["timestamp"].get<int64_t>() - last["timestamp"].get<int64_t>());
  }
  d["avg"] = samples.empty() ? 0.0 : sum / static_cast<double>(samples.size());
  d["avg_rate"] = avg_rate;
  d["samples"] = std::move(samples);
  return d;
}

void Rates::add_fields(nlohmann::json& out, const Series* s, const Values& live, std::initializer_list<Field> fields,
                       bool always, const std::optional<SampleWindow>& w) const {
  for (Field f : fields) {
    if (!always && live[f] == 0) continue;  // RabbitMQ leaves out what never happened
    out[kFieldNames[f]] = live[f];
    out[std::string(kFieldNames[f]) + "_details"] = details(s, f, w);
  }
}

void Rates::annotate(nlohmann::json& obj, Kind kind, const std::string& key, const Values& live,
                     const RateQuery& q) const {
  std::string k = key;
  k.insert(k.begin(), static_cast<char>(kind));
  auto it = series_.find(k);
  const Series* s = it == series_.end() ? nullptr : &it->second;
  auto stats = [&obj]() -> nlohmann::json& { return obj["message_stats"] = nlohmann::json::object(); };
  switch (kind) {
    case Kind::Node:
      add_fields(stats(), s, live,
                 {publish, confirm, deliver, deliver_no_ack, get, get_no_ack, deliver_get, ack, redeliver,
                  return_unroutable},
                 true, q.msg_rates);
      add_fields(obj["queue_totals"], s, live, {messages, messages_ready, messages_unacknowledged}, true, q.lengths);
      break;
    case Kind::Queue:
      add_fields(stats(), s, live, {publish, deliver, deliver_no_ack, get, get_no_ack, deliver_get, ack, redeliver},
                 false, q.msg_rates);
      add_fields(obj, s, live, {messages, messages_ready, messages_unacknowledged}, true, q.lengths);
      break;
    case Kind::Exchange:
      add_fields(stats(), s, live, {publish_in, publish_out}, false, q.msg_rates);
      break;
    case Kind::Channel:
      add_fields(stats(), s, live,
                 {publish, confirm, deliver, deliver_no_ack, get, get_no_ack, deliver_get, ack, redeliver,
                  return_unroutable},
                 false, q.msg_rates);
      break;
    case Kind::Connection:
      add_fields(obj, s, live, {recv_oct, send_oct}, true, q.data_rates);
      break;
  }
}

}  // namespace mqnode::mgmt
