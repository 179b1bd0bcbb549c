// Exchanges, queues and bindings: RabbitMQ 3.10's /api/exchanges, /api/queues and
// /api/bindings, with publish, get and purge. Declarations, deletions and bindings are
// catalog changes; publish, get and purge act on the queues as a channel would, under the
// caller's permissions as AMQP checks them.
#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "amqp/codec.hpp"
#include "broker/broker.hpp"
#include "mgmt/http_api.hpp"
#include "mgmt/json_table.hpp"

namespace mqnode::mgmt {

using broker::Permission;
using core::http::Request;
using core::http::Response;

namespace {

[[noreturn]] void not_found() { throw ApiError(404, "Object Not Found", "Not Found"); }

// The default exchange is "amq.default" in URLs.
std::string exchange_name(const std::string& url_name) { return url_name == "amq.default" ? std::string() : url_name; }

bool flag(const nlohmann::json& body, const char* key, bool dflt) {
  if (!body.contains(key)) return dflt;
  const auto& v = body[key];
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string() && (v == "true" || v == "false")) return v == "true";  // rabbitmqadmin's form
  throw ApiError(400, "bad_request", fmt::format("{}: expected true or false, got {}", key, v.dump()));
}

amqp::FieldTable arguments_of(const nlohmann::json& body, const char* key = "arguments") {
  if (!body.contains(key)) return {};
  try {
    return json_to_table(body[key], key);
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, "bad_request", e.what());
  }
}

// RabbitMQ's "[{key_missing,a},{key_missing,b}]" when <body> lacks some of <keys>.
void require_keys(const nlohmann::json& body, std::initializer_list<const char*> keys) {
  std::vector<std::string> missing;
  for (const char* k : keys)
    if (!body.contains(k)) missing.push_back(fmt::format("{{key_missing,{}}}", k));
  if (!missing.empty()) throw ApiError(400, "bad_request", fmt::format("[{}]", fmt::join(missing, ",")));
}

nlohmann::json binding_to_api(const std::string& vhost, const std::string& source, bool to_exchange,
                              const std::string& destination, const std::string& key, const amqp::FieldTable& args) {
  return {{"source", source},
          {"vhost", vhost},
          {"destination", destination},
          {"destination_type", to_exchange ? "exchange" : "queue"},
          {"routing_key", key},
          {"arguments", table_to_json(args)},
          {"properties_key", binding_props_key(key, args)}};
}

const std::string& destination_name(const broker::Binding& b) {
  return b.destination.exchange ? b.destination.exchange->name() : b.destination.queue->definition().name;
}

}  // namespace

// ---- exchanges -------------------------------------------------------------------------

nlohmann::json HttpApi::exchange_to_api(const broker::Vhost& vh, const broker::Exchange& e,
                                        const RateQuery& rq) const {
  const auto& d = e.definition();
  const auto* policy = broker().catalog().policies().match(vh.name(), d.name, false);
  nlohmann::json out{{"name", d.name},
          {"vhost", vh.name()},
          {"type", d.type},
          {"durable", d.durable},
          {"auto_delete", d.auto_delete},
          {"internal", d.internal},
          {"arguments", table_to_json(d.arguments)},
          {"policy", policy ? nlohmann::json(policy->name) : nlohmann::json(nullptr)},
          {"user_who_performed_action", ""}};
  add_rates(out, Rates::Kind::Exchange, Rates::key(vh.name(), d.name), exchange_values(e), rq);
  return out;
}

Response HttpApi::exchanges(const Request& req, const Caller& c) const {
  const auto rq = parse_rate_query(req.params());
  auto out = nlohmann::json::array();
  for (const auto* vh : visible_vhosts(c))
    for (const auto& [name, e] : vh->exchanges()) out.push_back(exchange_to_api(*vh, *e, rq));
  return list(req, std::move(out));
}

Response HttpApi::exchange_get(const Request& req, const Caller& c) const {
  const auto rq = parse_rate_query(req.params());
  auto seg = path_segments(req.path, "/api/exchanges/");
  if (seg.empty() || seg.size() == 3 || seg.size() > 4) not_found();
  auto& vh = vhost_for(c, seg[0]);
  if (seg.size() == 1) {
    auto out = nlohmann::json::array();
    for (const auto& [name, e] : vh.exchanges()) out.push_back(exchange_to_api(vh, *e, rq));
    return list(req, std::move(out));
  }
  const auto name = exchange_name(seg[1]);
  const auto* ex = vh.find_exchange(name);
  if (!ex) not_found();
  if (seg.size() == 2) return json_response(200, exchange_to_api(vh, *ex, rq));
  if (seg[2] != "bindings" || (seg[3] != "source" && seg[3] != "destination")) not_found();
  const bool as_source = seg[3] == "source";
  return list(req, bindings_of(vh, [&](const nlohmann::json& b) {
                return as_source ? b["source"] == name
                                 : b["destination_type"] == "exchange" && b["destination"] == name;
              }));
}

HttpApi::ChangeRequest HttpApi::exchange_put(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/exchanges/");
  if (seg.size() != 2 || seg[1].empty()) not_found();
  auto& vh = vhost_for(c, seg[0], true);
  auto body = parse_object_body(req.body);
  broker::ExchangeDefinition def;
  def.name = exchange_name(seg[1]);
  if (def.name.empty()) throw ApiError(401, "not_authorised", "Access refused.");
  def.type = "direct";
  if (body.contains("type")) {
    if (!body["type"].is_string()) throw ApiError(400, "bad_request", "type: expected a string");
    def.type = body["type"].get<std::string>();
  }
  if (!broker::is_exchange_type(def.type))
    throw ApiError(400, "bad_request", fmt::format("invalid exchange type '{}' (direct, fanout, topic, headers)", def.type));
  def.durable = flag(body, "durable", false);
  def.auto_delete = flag(body, "auto_delete", false);
  def.internal = flag(body, "internal", false);
  def.arguments = arguments_of(body);
  check_permission(c, vh.name(), Permission::Configure, def.name);
  const bool exists = vh.find_exchange(def.name) != nullptr;
  return one(broker::DeclareExchange{vh.name(), std::move(def)}, exists ? 204 : 201);
}

HttpApi::ChangeRequest HttpApi::exchange_delete(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/exchanges/");
  if (seg.size() != 2) not_found();
  auto& vh = vhost_for(c, seg[0], true);
  const auto name = exchange_name(seg[1]);
  if (!vh.find_exchange(name)) not_found();
  check_permission(c, vh.name(), Permission::Configure, name);
  if (auto refused = broker::refuse_exchange_deletion(name, vh.name()); !refused.ok())
    throw ApiError(401, "not_authorised", "Access refused.");
  const auto params = req.params();
  auto it = params.find("if-unused");
  return one(broker::DeleteExchange{vh.name(), name, it != params.end() && it->second == "true"}, 204);
}

Response HttpApi::exchange_publish(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/exchanges/");
  if (seg.size() != 3 || seg[2] != "publish") not_found();
  auto& vh = vhost_for(c, seg[0], true);
  const auto name = exchange_name(seg[1]);
  const auto* ex = vh.find_exchange(name);
  if (!ex) not_found();
  auto body = parse_object_body(req.body);
  require_keys(body, {"routing_key", "payload", "payload_encoding"});
  if (!body["routing_key"].is_string() || !body["payload"].is_string())
    throw ApiError(400, "bad_request", "routing_key and payload: expected strings");
  check_permission(c, vh.name(), Permission::Write, name.empty() ? "amq.default" : name);
  auto msg = std::make_shared<broker::Message>();
  msg->exchange = name;
  msg->routing_key = body["routing_key"].get<std::string>();
  const auto& payload = body["payload"].get_ref<const std::string&>();
  const auto encoding = body["payload_encoding"];
  if (encoding == "string") {
    msg->body.assign(payload.begin(), payload.end());
  } else if (encoding == "base64") {
    auto decoded = core::http::base64_decode(payload);
    if (!decoded) throw ApiError(400, "bad_request", "payload: not valid base64");
    msg->body.assign(decoded->begin(), decoded->end());
  } else {
    throw ApiError(400, "bad_request", fmt::format("payload_encoding: expected \"string\" or \"base64\", got {}",
                                                   encoding.dump()));
  }
  amqp::BasicProperties props;
  try {
    props = json_to_properties(body.value("properties", nlohmann::json::object()));
    amqp::encode_properties(props, msg->properties);
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, "bad_request", e.what());
  } catch (const amqp::EncodeError& e) {
    throw ApiError(400, "bad_request", fmt::format("properties: {}", e.what()));
  }
  msg->persistent = props.delivery_mode.value_or(0) == 2;
  msg->priority = props.priority.value_or(0);
  if (props.expiration) {
    const auto& e = *props.expiration;
    int64_t ttl = -1;
    auto [end, ec] = std::from_chars(e.data(), e.data() + e.size(), ttl);
    if (e.empty() || ec != std::errc() || end != e.data() + e.size() || ttl < 0)
      throw ApiError(400, "bad_request", fmt::format("properties.expiration: invalid expiration '{}'", e));
    msg->ttl_ms = ttl;
  }
  auto& stats = broker().stats();
  ++stats.messages_published;
  ++broker().message_stats().publish;  // as RabbitMQ's, whose API publishes on a channel
  std::vector<broker::QueueHandle*> scratch;
  auto outcome = vh.publish(*ex, msg, scratch);
  ++(outcome.queues > 0 ? stats.messages_routed : stats.messages_unroutable);
  return json_response(200, {{"routed", outcome.queues > 0}});
}

// ---- queues ----------------------------------------------------------------------------

nlohmann::json HttpApi::queue_to_api(const broker::Vhost& vh, const broker::QueueHandle& handle,
                                     const RateQuery& rq) const {
  const auto& d = handle.definition();
  const auto* policy = broker().catalog().policies().match(vh.name(), d.name, true);
  nlohmann::json out{{"name", d.name},
                     {"vhost", vh.name()},
                     {"durable", d.durable},
                     {"auto_delete", d.auto_delete},
                     {"exclusive", !d.exclusive_owner.empty()},
                     {"arguments", table_to_json(d.arguments)},
                     {"node", d.home.empty() ? src_.node.name : d.home},
                     {"type", d.args.queue_type},
                     {"state", "running"},
                     {"policy", policy ? nlohmann::json(policy->name) : nlohmann::json(nullptr)},
                     {"effective_policy_definition", policy ? policy->definition : nlohmann::json::object()},
                     {"exclusive_consumer_tag", nullptr},
                     {"single_active_consumer_tag", nullptr}};
  // The counts live on the queue's home node; its own API reports them.
  auto q = vh.find_local_queue(d.name);
  if (!q) return out;
  add_rates(out, Rates::Kind::Queue, Rates::key(vh.name(), d.name), queue_values(handle, q.get()), rq);
  out.update({{"message_bytes", q->message_bytes()},
              {"message_bytes_ready", q->message_bytes()},
              {"messages_ram", q->messages_resident()},
              {"consumers", q->consumer_count()}});
  return out;
}

broker::QueuePtr HttpApi::local_queue(const broker::Vhost& vh, const broker::QueueHandle& q) const {
  auto local = vh.find_local_queue(q.definition().name);
  if (!local)
    throw ApiError(400, "bad_request",
                   fmt::format("queue '{}' in vhost '{}' lives on node '{}': use that node's management API for its "
                               "messages",
                               q.definition().name, vh.name(), q.definition().home));
  return local;
}

Response HttpApi::queues(const Request& req, const Caller& c) const {
  const auto rq = parse_rate_query(req.params());
  auto out = nlohmann::json::array();
  for (const auto* vh : visible_vhosts(c))
    for (const auto& [name, q] : vh->all_queues()) out.push_back(queue_to_api(*vh, *q, rq));
  return list(req, std::move(out));
}

Response HttpApi::queue_get(const Request& req, const Caller& c) const {
  const auto rq = parse_rate_query(req.params());
  auto seg = path_segments(req.path, "/api/queues/");
  if (seg.empty() || seg.size() > 3) not_found();
  auto& vh = vhost_for(c, seg[0]);
  if (seg.size() == 1) {
    auto out = nlohmann::json::array();
    for (const auto& [name, q] : vh.all_queues()) out.push_back(queue_to_api(vh, *q, rq));
    return list(req, std::move(out));
  }
  auto q = vh.find_queue(seg[1]);
  if (!q) not_found();
  if (seg.size() == 2) return json_response(200, queue_to_api(vh, *q, rq));
  if (seg[2] != "bindings") not_found();
  return list(req, bindings_of(vh, [&](const nlohmann::json& b) {
                return b["destination_type"] == "queue" && b["destination"] == seg[1];
              }));
}

HttpApi::ChangeRequest HttpApi::queue_put(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/queues/");
  if (seg.size() != 2 || seg[1].empty()) not_found();
  auto& vh = vhost_for(c, seg[0], true);
  auto body = parse_object_body(req.body);
  broker::QueueDefinition def;
  def.name = seg[1];
  def.durable = flag(body, "durable", false);
  def.auto_delete = flag(body, "auto_delete", false);
  def.arguments = arguments_of(body);
  check_permission(c, vh.name(), Permission::Configure, def.name);
  const bool exists = vh.find_queue(def.name) != nullptr;
  return one(broker::DeclareQueue{vh.name(), std::move(def), {}}, exists ? 204 : 201);
}

HttpApi::ChangeRequest HttpApi::queue_delete(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/queues/");
  if (seg.size() != 2 && !(seg.size() == 3 && seg[2] == "contents")) not_found();
  auto& vh = vhost_for(c, seg[0], true);
  auto q = vh.find_queue(seg[1]);
  if (!q) not_found();
  const bool purge = seg.size() == 3;
  check_permission(c, vh.name(), purge ? Permission::Read : Permission::Configure, seg[1]);
  if (purge) {
    if (!q->definition().exclusive_owner.empty())
      throw ApiError(400, "bad_request",
                     fmt::format("cannot obtain exclusive access to locked queue '{}' in vhost '{}'", seg[1], vh.name()));
    local_queue(vh, *q)->purge();
    return answer(no_content());
  }
  const auto params = req.params();
  auto set = [&params](const char* key) {
    auto it = params.find(key);
    return it != params.end() && it->second == "true";
  };
  if (set("if-unused") && local_queue(vh, *q)->consumer_count() > 0)
    throw ApiError(400, "bad_request", fmt::format("queue '{}' in vhost '{}' in use", seg[1], vh.name()));
  if (set("if-empty") && local_queue(vh, *q)->message_count() > 0)
    throw ApiError(400, "bad_request", fmt::format("queue '{}' in vhost '{}' not empty", seg[1], vh.name()));
  // The management API may delete another connection's exclusive queue, as RabbitMQ's.
  return one(broker::DeleteQueue{vh.name(), seg[1], broker::DeleteReason::Client, q->definition().exclusive_owner},
             204);
}

HttpApi::ChangeRequest HttpApi::queue_post(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/queues/");
  if (seg.size() != 3 || (seg[2] != "get" && seg[2] != "actions")) not_found();
  auto& vh = vhost_for(c, seg[0], true);
  auto q = vh.find_queue(seg[1]);
  if (!q) not_found();
  auto body = parse_object_body(req.body);
  if (seg[2] == "actions") {
    // Classic queues here are not mirrored: "sync" and "cancel_sync" have nothing to do.
    require_keys(body, {"action"});
    if (body["action"] != "sync" && body["action"] != "cancel_sync")
      throw ApiError(400, "bad_request", fmt::format("unknown action {}", body["action"].dump()));
    return answer(no_content());
  }
  require_keys(body, {"count", "ackmode", "encoding"});
  check_permission(c, vh.name(), Permission::Read, seg[1]);
  if (!q->definition().exclusive_owner.empty())
    throw ApiError(400, "bad_request",
                   fmt::format("cannot obtain exclusive access to locked queue '{}' in vhost '{}'", seg[1], vh.name()));
  broker::QueuePtr local = local_queue(vh, *q);
  const auto& count_j = body["count"];
  int64_t count = count_j.is_number_integer() ? count_j.get<int64_t>()
                  : count_j.is_string()       ? std::atoll(count_j.get<std::string>().c_str())
                                              : -1;
  if (count < 1) throw ApiError(400, "bad_request", fmt::format("count: expected a positive integer, got {}", count_j.dump()));
  const std::string ackmode = body["ackmode"].is_string() ? body["ackmode"].get<std::string>() : "";
  if (ackmode != "ack_requeue_true" && ackmode != "ack_requeue_false" && ackmode != "reject_requeue_true" &&
      ackmode != "reject_requeue_false")
    throw ApiError(400, "bad_request",
                   fmt::format("ackmode: expected ack_requeue_true, ack_requeue_false, reject_requeue_true or "
                               "reject_requeue_false, got {}",
                               body["ackmode"].dump()));
  const auto encoding = body["encoding"];
  if (encoding != "auto" && encoding != "base64")
    throw ApiError(400, "bad_request", fmt::format("encoding: expected \"auto\" or \"base64\", got {}", encoding.dump()));
  int64_t truncate = -1;
  if (body.contains("truncate") && body["truncate"].is_number_integer()) truncate = body["truncate"].get<int64_t>();

  std::vector<broker::QueueEntry> taken;
  auto out = nlohmann::json::array();
  for (int64_t i = 0; i < count; ++i) {
    auto entry = local->get();
    if (!entry) break;
    const auto& m = *entry->msg;
    std::string payload(m.body.begin(), m.body.end());
    if (truncate >= 0 && payload.size() > static_cast<std::size_t>(truncate)) payload.resize(truncate);
    const bool as_string = encoding == "auto" && valid_utf8(payload);
    nlohmann::json props = properties_to_json(m.decode_properties());
    out.push_back({{"payload_bytes", m.body.size()},
                   {"redelivered", entry->redelivered},
                   {"exchange", m.exchange},
                   {"routing_key", m.routing_key},
                   {"message_count", local->message_count()},
                   // RabbitMQ shows no properties as an empty list.
                   {"properties", props.empty() ? nlohmann::json::array() : props},
                   {"payload", as_string ? payload : base64_encode(payload)},
                   {"payload_encoding", as_string ? "string" : "base64"}});
    ++broker().stats().messages_delivered;
    taken.push_back(std::move(*entry));
  }
  if (ackmode.ends_with("requeue_true")) {
    local->requeue(std::move(taken));
  } else {
    for (auto& e : taken) {
      if (ackmode.starts_with("reject")) local->reject(std::move(e));
      else local->ack(e);
    }
  }
  return answer(json_response(200, out));
}

// ---- bindings --------------------------------------------------------------------------

nlohmann::json HttpApi::bindings_of(const broker::Vhost& vh,
                                    const std::function<bool(const nlohmann::json&)>& keep) const {
  auto out = nlohmann::json::array();
  auto add = [&](nlohmann::json b) {
    if (!keep || keep(b)) out.push_back(std::move(b));
  };
  // The default exchange's implicit binding of every queue by its name.
  for (const auto& [name, q] : vh.all_queues()) add(binding_to_api(vh.name(), "", false, name, name, {}));
  std::vector<nlohmann::json> explicit_bindings;
  for (const auto& [name, ex] : vh.exchanges()) {
    if (name.empty()) continue;
    std::vector<nlohmann::json> these;
    for (const auto& b : ex->bindings())
      these.push_back(binding_to_api(vh.name(), name, b.destination.exchange != nullptr, destination_name(b), b.key,
                                     b.arguments));
    // An exchange keeps its bindings in no particular order; list them in a stable one.
    std::sort(these.begin(), these.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
      return std::tie(a["destination_type"], a["destination"], a["properties_key"]) <
             std::tie(b["destination_type"], b["destination"], b["properties_key"]);
    });
    for (auto& b : these) add(std::move(b));
  }
  return out;
}

Response HttpApi::bindings(const Request& req, const Caller& c) const {
  auto out = nlohmann::json::array();
  for (const auto* vh : visible_vhosts(c))
    for (auto& b : bindings_of(*vh)) out.push_back(std::move(b));
  return list(req, std::move(out));
}

namespace {

// /api/bindings/{vhost}/e/{source}/{q|e}/{destination}[/{props}]
struct BindingPath {
  std::string vhost, source, destination, props;
  bool to_exchange = false;
  bool has_props = false;
};

BindingPath parse_binding_path(const std::vector<std::string>& seg) {
  if ((seg.size() != 5 && seg.size() != 6) || seg[1] != "e" || (seg[3] != "q" && seg[3] != "e")) not_found();
  BindingPath p{seg[0], exchange_name(seg[2]), seg[4], {}, seg[3] == "e", seg.size() == 6};
  if (p.has_props) p.props = seg[5];
  return p;
}

// The management API acts on exclusive queues as their owner would (RabbitMQ's does).
broker::ExclusiveOwner owner_of(const broker::Vhost& vh, bool to_exchange, const std::string& destination) {
  if (to_exchange) return {};
  auto q = vh.find_queue(destination);
  return q ? q->definition().exclusive_owner : broker::ExclusiveOwner{};
}

}  // namespace

Response HttpApi::binding_get(const Request& req, const Caller& c) const {
  auto seg = path_segments(req.path, "/api/bindings/");
  if (seg.size() == 1) {
    auto& vh = vhost_for(c, seg[0]);
    return list(req, bindings_of(vh));
  }
  auto p = parse_binding_path(seg);
  auto& vh = vhost_for(c, p.vhost);
  if (!vh.find_exchange(p.source)) not_found();
  if (p.to_exchange ? !vh.find_exchange(p.destination) : !vh.find_queue(p.destination)) not_found();
  auto between = bindings_of(vh, [&](const nlohmann::json& b) {
    return b["source"] == p.source && b["destination"] == p.destination &&
           b["destination_type"] == (p.to_exchange ? "exchange" : "queue") &&
           (!p.has_props || b["properties_key"] == p.props);
  });
  if (!p.has_props) return list(req, std::move(between));
  if (between.empty()) not_found();
  return json_response(200, between[0]);
}

HttpApi::ChangeRequest HttpApi::binding_post(const Request& req, const Caller& c) const {
  auto p = parse_binding_path(path_segments(req.path, "/api/bindings/"));
  if (p.has_props) not_found();
  auto& vh = vhost_for(c, p.vhost, true);
  if (!vh.find_exchange(p.source)) not_found();
  if (p.to_exchange ? !vh.find_exchange(p.destination) : !vh.find_queue(p.destination)) not_found();
  auto body = parse_object_body(req.body);
  std::string key;
  if (body.contains("routing_key")) {
    if (!body["routing_key"].is_string()) throw ApiError(400, "bad_request", "routing_key: expected a string");
    key = body["routing_key"].get<std::string>();
  }
  auto args = arguments_of(body);
  if (p.source.empty()) throw ApiError(401, "not_authorised", "Access refused.");
  check_permission(c, vh.name(), Permission::Write, p.destination);
  check_permission(c, vh.name(), Permission::Read, p.source);
  ChangeRequest r = one(broker::Bind{vh.name(), true, p.source, p.to_exchange, p.destination, key, args,
                                     owner_of(vh, p.to_exchange, p.destination)},
                        201);
  r.done.headers.emplace_back("Location", core::http::url_encode(p.destination) + "/" + binding_props_key(key, args));
  return r;
}

HttpApi::ChangeRequest HttpApi::binding_delete(const Request& req, const Caller& c) const {
  auto p = parse_binding_path(path_segments(req.path, "/api/bindings/"));
  if (!p.has_props) not_found();
  auto& vh = vhost_for(c, p.vhost, true);
  const auto* ex = vh.find_exchange(p.source);
  if (!ex || p.source.empty()) not_found();
  for (const auto& b : ex->bindings()) {
    if ((b.destination.exchange != nullptr) != p.to_exchange || destination_name(b) != p.destination) continue;
    if (binding_props_key(b.key, b.arguments) != p.props) continue;
    check_permission(c, vh.name(), Permission::Write, p.destination);
    check_permission(c, vh.name(), Permission::Read, p.source);
    return one(broker::Bind{vh.name(), false, p.source, p.to_exchange, p.destination, b.key, b.arguments,
                            owner_of(vh, p.to_exchange, p.destination)},
               204);
  }
  not_found();
}

}  // namespace mqnode::mgmt
