// Metadata changes as values. Everything that alters users, vhosts, permissions, policies,
// runtime parameters, exchanges, queues or bindings is one Change, proposed to the Catalog
// (catalog.hpp) and applied deterministically there. A Change carries no node-local value
// that another node could not interpret: an exclusive queue's owner names its node too.
// encode_change/decode_change give the bytes the store and the cluster log carry.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "amqp/field_table.hpp"
#include "broker/exchange/exchange.hpp"
#include "broker/queue.hpp"

namespace mqnode::broker {

struct DeclareExchange {
  std::string vhost;
  ExchangeDefinition def;
};
struct DeleteExchange {
  std::string vhost, name;
  bool if_unused = false;
};
// def.args is derived from def.arguments when the change is applied; it does not travel.
struct DeclareQueue {
  std::string vhost;
  QueueDefinition def;
  ExclusiveOwner by;  // the requesting connection: another's exclusive queue is refused
};
// Who deletes a queue decides which rules apply (Catalog::apply).
enum class DeleteReason : uint8_t {
  Client,      // queue.delete or the management API: refused on another's exclusive queue
  AutoDelete,  // its last consumer went (proposed by the queue's home node)
  Expired,     // x-expires ran out (proposed by the queue's home node)
  OwnerGone,   // its exclusive owner's connection closed: only if <by> still owns it
};
struct DeleteQueue {
  std::string vhost, name;
  DeleteReason reason = DeleteReason::Client;
  ExclusiveOwner by;  // the requesting connection (Client, OwnerGone)
};
struct Bind {
  std::string vhost;
  bool add = true;  // false: unbind
  std::string source;
  bool to_exchange = false;  // destination is an exchange (exchange.bind) or a queue
  std::string destination, key;
  amqp::FieldTable arguments;
  ExclusiveOwner by;  // the requesting connection: another's exclusive queue is refused
};
// rabbitmqctl set_policy: <definition> as given; validated when applied.
struct SetPolicy {
  std::string vhost, name, pattern;
  nlohmann::json definition;
  int64_t priority = 0;
  std::string apply_to = "all";
};
struct ClearPolicy {
  std::string vhost, name;
};
struct PutVhost {
  std::string name, description;
};
struct DeleteVhost {
  std::string name;
};
struct PutUser {
  std::string name, password_hash;
  std::vector<std::string> tags;
};
struct DeleteUser {
  std::string name;
};
struct SetPermissions {
  std::string user, vhost, configure, write, read;
};
struct ClearPermissions {
  std::string user, vhost;
};
// Runtime parameters (rabbitmqctl set_parameter / set_global_parameter: <vhost> empty).
struct SetParameter {
  std::string component, vhost, name;
  nlohmann::json value;
};
struct ClearParameter {
  std::string component, vhost, name;
};

// A user's connection and channel limits (rabbitmqctl set_user_limits / clear_user_limits):
// <clear> names a limit to drop first ("all": every one, "": none), then the limits of
// <set> ({"max-connections": 10, "max-channels": 20}) are merged in.
struct SetUserLimits {
  std::string user, clear;
  nlohmann::json set = nlohmann::json::object();
};

using Change = std::variant<DeclareExchange, DeleteExchange, DeclareQueue, DeleteQueue, Bind, SetPolicy, ClearPolicy,
                            PutVhost, DeleteVhost, PutUser, DeleteUser, SetPermissions, ClearPermissions,
                            SetParameter, ClearParameter, SetUserLimits>;

// The outcome of a proposal: <code> 0 when applied, else the AMQP reply code a client gets
// (404, 403, 405, 406 are channel errors; 503 and up end the connection) with its text.
struct ChangeResult {
  uint16_t code = 0;
  std::string text;
  bool created = false;  // a declare made something new (false: it existed, equivalent)
  bool ok() const { return code == 0; }
  static ChangeResult error(uint16_t code, std::string text) { return {code, std::move(text), false}; }
};

// A short name for logs and the encoding ("declare_queue", ...).
const char* change_name(const Change& c);

struct ChangeDecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A versioned AMQP field table: the codec the broker already has, so field-table
// arguments round-trip byte for byte.
std::vector<uint8_t> encode_change(const Change& c);
Change decode_change(std::span<const uint8_t> bytes);  // throws ChangeDecodeError

}  // namespace mqnode::broker
