// What is live rather than defined: connections (DELETE closes one with 320, as RabbitMQ's
// "Closed via management plugin"), channels, consumers, the aliveness test, the
// /api/health/checks family, the cluster name and nodes.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <ctime>
#include <map>

#include <asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include "amqp/reply_code.hpp"
#include "broker/broker.hpp"
#include "broker/channel.hpp"
#include "broker/connection.hpp"
#include "broker/resource_alarm.hpp"
#include "mgmt/http_api.hpp"
#include "mgmt/json_table.hpp"

namespace mqnode::mgmt {

using core::http::Request;
using core::http::Response;

namespace {

[[noreturn]] void not_found() { throw ApiError(404, "Object Not Found", "Not Found"); }

// RabbitMQ's connection name: "peer -> local".
std::string connection_name(const broker::Connection& c) {
  auto local = c.local_endpoint();
  return fmt::format("{} -> {}:{}", c.peer(), local.address().to_string(), local.port());
}

std::pair<std::string, uint16_t> split_peer(const std::string& peer) {
  auto colon = peer.rfind(':');
  if (colon == std::string::npos) return {peer, 0};
  uint16_t port = static_cast<uint16_t>(std::atoi(peer.c_str() + colon + 1));
  return {peer.substr(0, colon), port};
}

// Who may see a connection: monitoring users all, the others their own.
bool visible(const Caller& c, const broker::Connection& conn) {
  return c.control || c.monitoring() || conn.user() == c.user;
}

struct ChannelRef {
  const broker::Connection* conn;
  uint16_t number;
};

}  // namespace

namespace {

nlohmann::json connection_details(const broker::Connection& c) {
  auto [host, port] = split_peer(c.peer());
  return {{"name", connection_name(c)}, {"peer_host", host}, {"peer_port", port}};
}

}  // namespace

nlohmann::json HttpApi::node_to_api() const {
  auto r = broker::read_resources(src_.node.data_dir);
  broker::Broker* b = src_.broker ? src_.broker->broker() : nullptr;
  broker::AlarmState alarm = b ? b->alarm() : broker::AlarmState{};
  return {{"name", src_.node.name},
          {"type", "disc"},
          {"running", b != nullptr},
          {"mem_used", r.rss},
          {"mem_alarm", alarm.memory},
          {"disk_free", r.disk_free},
          {"disk_free_alarm", alarm.disk},
          {"os_pid", std::to_string(::getpid())},
          {"partitions", nlohmann::json::array()},
          {"being_drained", false}};
}

Response HttpApi::connections(const Request& req, const Caller& c) const {
  const auto rq = parse_rate_query(req.params());
  auto out = nlohmann::json::array();
  for (const auto& [id, conn] : broker().connections()) {
    if (!conn->open() || !visible(c, *conn)) continue;
    auto details = connection_details(*conn);
    auto local = conn->local_endpoint();
    out.push_back({{"name", details["name"]},
                   {"node", src_.node.name},
                   {"user", conn->user()},
                   {"vhost", conn->vhost_name()},
                   {"state", "running"},
                   {"channels", conn->channels().size()},
                   {"peer_host", details["peer_host"]},
                   {"peer_port", details["peer_port"]},
                   {"host", local.address().to_string()},
                   {"port", local.port()},
                   {"protocol", "AMQP 0-9-1"},
                   {"type", "network"},
                   {"ssl", false},
                   {"timeout", conn->heartbeat_s()},
                   {"frame_max", conn->frame_max()},
                   {"channel_max", conn->channel_max()},
                   {"user_provided_name", conn->client_name()},
                   {"client_properties", {{"connection_name", conn->client_name()}}},
                   {"messages_unacknowledged", conn->messages_unacked()}});
    add_rates(out.back(), Rates::Kind::Connection, Rates::key(id), connection_values(*conn), rq);
  }
  return list(req, std::move(out));
}

Response HttpApi::connection_get(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/connections/");
  if (seg.empty() || seg.size() > 2) not_found();
  auto all = connections(Request{}, c);
  for (const auto& conn : nlohmann::json::parse(all.body)) {
    if (conn["name"] != seg[0]) continue;
    if (seg.size() == 1) return json_response(200, conn);
    if (seg[1] != "channels") not_found();
    auto chans = nlohmann::json::parse(channels(Request{}, c).body);
    auto out = nlohmann::json::array();
    for (auto& ch : chans)
      if (ch["connection_details"]["name"] == seg[0]) out.push_back(std::move(ch));
    return list(req, std::move(out));
  }
  not_found();
}

HttpApi::ChangeRequest HttpApi::connection_delete(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/connections/");
  if (seg.size() != 1) not_found();
  for (const auto& [id, conn] : broker().connections()) {
    if (!conn->open() || connection_name(*conn) != seg[0]) continue;
    // The owner or an administrator may close it (RabbitMQ's rule).
    if (!c.administrator() && conn->user() != c.user) throw ApiError(401, "not_authorised", "Not administrator user");
    std::string reason = req.header("x-reason");
    if (reason.empty()) reason = "Closed via management plugin";
    log_.info("closing connection via management conn={} user={} reason=\"{}\"", id, c.user, reason);
    conn->close(amqp::ConnectionReplyCode::ConnectionForced, reason);
    return answer(no_content());
  }
  not_found();
}

Response HttpApi::channels(const Request& req, const Caller& c) const {
  // Consumers by the channel that holds them.
  std::map<const broker::DeliveryTarget*, std::size_t> consumers;
  const auto rq = parse_rate_query(req.params());
  for (const auto& [name, vh] : broker().vhosts())
    for (const auto& [qname, q] : vh->queues())
      for (const auto* consumer : q->consumers()) ++consumers[&consumer->target];
  auto out = nlohmann::json::array();
  for (const auto& [id, conn] : broker().connections()) {
    if (!conn->open() || !visible(c, *conn)) continue;
    auto details = connection_details(*conn);
    for (const auto& [number, ch] : conn->channels()) {
      out.push_back({{"name", fmt::format("{} ({})", details["name"].get<std::string>(), number)},
                     {"number", number},
                     {"node", src_.node.name},
                     {"user", conn->user()},
                     {"vhost", conn->vhost_name()},
                     {"state", ch->closing() ? "closing" : "running"},
                     {"connection_details", details},
                     {"messages_unacknowledged", ch->unacked_count()},
                     {"consumer_count", consumers[ch.get()]}});
      add_rates(out.back(), Rates::Kind::Channel, Rates::key(id, number), channel_values(*ch), rq);
    }
  }
  return list(req, std::move(out));
}

Response HttpApi::consumers(const Request& req, const Caller& c) const {
  std::map<const broker::DeliveryTarget*, ChannelRef> by_channel;
  for (const auto& [id, conn] : broker().connections())
    for (const auto& [number, ch] : conn->channels()) by_channel[ch.get()] = {conn.get(), number};
  auto seg = path_segments(req.path, "/api/consumers/");
  if (seg.size() > 1) not_found();
  auto out = nlohmann::json::array();
  for (const auto* vh : visible_vhosts(c)) {
    if (!seg.empty() && vh->name() != seg[0]) continue;
    for (const auto& [qname, q] : vh->queues())
      for (const auto* consumer : q->consumers()) {
        auto it = by_channel.find(&consumer->target);
        if (it == by_channel.end() || !visible(c, *it->second.conn)) continue;
        const auto& conn = *it->second.conn;
        auto details = connection_details(conn);
        out.push_back({{"consumer_tag", consumer->tag},
                       {"queue", {{"name", qname}, {"vhost", vh->name()}}},
                       {"channel_details",
                        {{"name", fmt::format("{} ({})", details["name"].get<std::string>(), it->second.number)},
                         {"number", it->second.number},
                         {"connection_name", details["name"]},
                         {"peer_host", details["peer_host"]},
                         {"peer_port", details["peer_port"]},
                         {"user", conn.user()},
                         {"node", src_.node.name}}},
                       {"ack_required", !consumer->no_ack},
                       {"exclusive", consumer->exclusive},
                       {"prefetch_count", consumer->prefetch},
                       {"arguments", table_to_json(consumer->arguments)},
                       {"active", true},
                       {"activity_status", "up"}});
      }
  }
  if (!seg.empty()) vhost_for(c, seg[0]);
  return list(req, std::move(out));
}

Response HttpApi::health_check(const Request& req, const Caller&) const {
  auto seg = path_segments(req.path, "/api/health/checks/");
  if (seg.empty()) not_found();
  broker::Broker* b = src_.broker ? src_.broker->broker() : nullptr;
  auto failed = [](nlohmann::json body) { return json_response(503, body); };
  const std::string& check = seg[0];
  if ((check == "alarms" || check == "local-alarms") && seg.size() == 1) {
    if (!b || !b->alarm().any()) return json_response(200, {{"status", "ok"}});
    auto alarms = nlohmann::json::array();
    if (b->alarm().memory) alarms.push_back({{"resource", "memory"}, {"node", src_.node.name}});
    if (b->alarm().disk) alarms.push_back({{"resource", "disk"}, {"node", src_.node.name}});
    return failed({{"status", "failed"},
                   {"reason", check == "alarms" ? "There are alarms in effect in the cluster"
                                                : "There are alarms in effect on the node"},
                   {"alarms", alarms}});
  }
  if (check == "virtual-hosts" && seg.size() == 1) {
    if (!b) return failed({{"status", "failed"}, {"reason", "the broker is not running"}});
    return json_response(200, {{"status", "ok"}});
  }
  if (check == "certificate-expiration" && seg.size() == 3) return certificate_expiration(seg[1], seg[2]);
  if (check == "node-is-quorum-critical" && seg.size() == 1)
    return json_response(200, {{"status", "ok"}, {"reason", "no quorum queues on this node"}});
  std::vector<uint16_t> ports;
  if (src_.broker)
    for (const auto& ep : src_.broker->local_endpoints()) ports.push_back(ep.port());
  if (check == "port-listener" && seg.size() == 2) {
    int port = std::atoi(seg[1].c_str());
    if (port <= 0 || port > 65535 || std::to_string(port) != seg[1])
      throw ApiError(400, "bad_request", fmt::format("Invalid port: {}", seg[1]));
    if (std::find(ports.begin(), ports.end(), port) != ports.end())
      return json_response(200, {{"status", "ok"}, {"port", port}});
    return failed({{"status", "failed"}, {"reason", "No active listener"}, {"missing", port}, {"ports", ports}});
  }
  if (check == "protocol-listener" && seg.size() == 2) {
    std::vector<std::string> protocols;
    if (!ports.empty()) protocols.push_back("amqp");
    const std::string proto = seg[1] == "amqp091" || seg[1] == "amqp0.9.1" || seg[1] == "amqp0-9-1" ? "amqp" : seg[1];
    if (std::find(protocols.begin(), protocols.end(), proto) != protocols.end())
      return json_response(200, {{"status", "ok"}, {"protocol", proto}});
    return failed(
        {{"status", "failed"}, {"reason", "No active listener"}, {"missing", seg[1]}, {"protocols", protocols}});
  }
  not_found();
}

// rabbitmq-diagnostics check_certificate_expiration over HTTP: the TLS listeners with a
// certificate (certfile or cacertfile, chains included) that expires within <within> <unit>.
Response HttpApi::certificate_expiration(const std::string& within, const std::string& unit) const {
  std::string lower = unit;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  constexpr double kDay = 86400;
  double seconds_per = lower == "days"     ? kDay
                       : lower == "weeks"  ? 7 * kDay
                       : lower == "months" ? 365 * kDay / 12
                       : lower == "years"  ? 365 * kDay
                                           : 0;
  long long count = 0;
  auto [end, ec] = std::from_chars(within.data(), within.data() + within.size(), count);
  if (ec != std::errc() || end != within.data() + within.size() || within.empty())
    throw ApiError(400, "bad_request", "Invalid expiration value.");
  if (seconds_per == 0)
    throw ApiError(400, "bad_request", "Time unit not recognised. Supported units: days, weeks, months, years.");
  std::time_t now = std::time(nullptr);
  auto deadline = now + static_cast<std::time_t>(static_cast<double>(count) * seconds_per);
  auto expiring = nlohmann::json::array();
  for (const auto& l : src_.tls_listeners ? src_.tls_listeners() : std::vector<core::tls::TlsListener>{}) {
    auto cert = core::tls::expiring_before(l.options.certfile, now, deadline);
    auto ca = core::tls::expiring_before(l.options.cacertfile, now, deadline);
    if (cert.empty() && ca.empty()) continue;
    expiring.push_back({{"node", src_.node.name},
                        {"protocol", l.protocol},
                        {"interface", l.endpoint.address().to_string()},
                        {"port", l.endpoint.port()},
                        {"certfile", l.options.certfile},
                        {"cacertfile", l.options.cacertfile},
                        {"certfile_expires_on", cert},
                        {"cacertfile_expires_on", ca}});
  }
  if (expiring.empty()) return json_response(200, {{"status", "ok"}});
  return json_response(503, {{"status", "failed"}, {"reason", "Certificates expiring"}, {"expired", expiring}});
}

Response HttpApi::cluster_name(const Request&, const Caller&) const {
  return json_response(200, {{"name", src_.node.name}});
}

Response HttpApi::nodes(const Request& req, const Caller&) const {
  if (req.path == "/api/nodes") return list(req, nlohmann::json::array({node_to_api()}));
  auto seg = path_segments(req.path, "/api/nodes/");
  if (seg.size() != 1 || seg[0] != src_.node.name) not_found();
  return json_response(200, node_to_api());
}

// The aliveness test of RabbitMQ: declare the queue "aliveness-test" in the vhost, publish
// a message to it and get it back. The coroutine only authorises, proposes and awaits (no
// co_await in a try block, no temporaries across it); the rest is aliveness_check().
asio::awaitable<Response> HttpApi::aliveness(Request req, bool require_login) const {
  Caller caller;
  if (auto refused = authorize(req, require_login, Right::Management, caller)) co_return *refused;
  std::string vhost;
  Response error;
  try {
    auto seg = path_segments(req.path, "/api/aliveness-test/");
    if (seg.size() != 1) not_found();
    vhost_for(caller, seg[0], true);
    vhost = seg[0];
  } catch (const ApiError& e) {
    error = error_response(e.status, e.error, e.what());
  }
  if (vhost.empty()) co_return error;
  broker::QueueDefinition def;
  def.name = "aliveness-test";
  broker::Change change = broker::DeclareQueue{vhost, def, {}};
  broker::Catalog& catalog = broker().catalog();
  broker::ChangeResult declared = co_await catalog.async_propose(std::move(change), asio::use_awaitable);
  co_return aliveness_check(vhost, declared);
}

Response HttpApi::aliveness_check(const std::string& vhost, const broker::ChangeResult& declared) const {
  broker::Vhost* vh = broker().find_vhost(vhost);
  auto q = vh ? vh->find_local_queue("aliveness-test") : nullptr;  // declared here: homed here
  if (!declared.ok() || !q)
    return json_response(503, {{"status", "failed"}, {"reason", declared.ok() ? "the queue went" : declared.text}});
  q->purge();
  auto msg = std::make_shared<broker::Message>();
  msg->routing_key = "aliveness-test";
  const std::string text = "test_message";
  msg->body.assign(text.begin(), text.end());
  std::vector<broker::QueueHandle*> scratch;
  vh->publish(*vh->find_exchange(""), msg, scratch);
  auto got = q->get();
  if (!got || !got->msg || got->msg->body != msg->body)
    return json_response(503, {{"status", "failed"}, {"reason", "the test message did not come back"}});
  q->ack(*got);
  return json_response(200, {{"status", "ok"}});
}

}  // namespace mqnode::mgmt
