#include "broker/change.hpp"

#include <fmt/format.h>

#include "amqp/codec.hpp"

namespace mqnode::broker {

namespace {
constexpr int64_t kEncodingVersion = 1;

// Field-table access for decoding: a missing or mistyped field is a ChangeDecodeError
// naming it (a newer node's change that this one cannot read must never half-apply).
struct Fields {
  const amqp::FieldTable& t;

  const amqp::FieldValue& at(const char* key) const {
    const auto* v = t.find(key);
    if (!v) throw ChangeDecodeError(fmt::format("change field '{}' missing", key));
    return *v;
  }
  // A field added after the first release: older changes lack it.
  std::string str_or(const char* key, std::string fallback) const {
    return t.find(key) ? str(key) : fallback;
  }
  std::string str(const char* key) const {
    const auto* s = at(key).as_string();
    if (!s) throw ChangeDecodeError(fmt::format("change field '{}' is not a string", key));
    return *s;
  }
  int64_t i64(const char* key) const {
    auto i = at(key).as_bool() ? std::nullopt : at(key).as_int();
    if (!i) throw ChangeDecodeError(fmt::format("change field '{}' is not an integer", key));
    return *i;
  }
  bool flag(const char* key) const {
    auto b = at(key).as_bool();
    if (!b) throw ChangeDecodeError(fmt::format("change field '{}' is not a boolean", key));
    return *b;
  }
  amqp::FieldTable table(const char* key) const {
    const auto* tb = at(key).as_table();
    if (!tb) throw ChangeDecodeError(fmt::format("change field '{}' is not a table", key));
    return *tb;
  }
  nlohmann::json json(const char* key) const {
    auto j = nlohmann::json::parse(str(key), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw ChangeDecodeError(fmt::format("change field '{}' is not JSON", key));
    return j;
  }
  std::vector<std::string> strings(const char* key) const {
    const auto* a = at(key).as_array();
    if (!a) throw ChangeDecodeError(fmt::format("change field '{}' is not an array", key));
    std::vector<std::string> out;
    for (const auto& v : *a) {
      const auto* s = v.as_string();
      if (!s) throw ChangeDecodeError(fmt::format("change field '{}' holds a non-string", key));
      out.push_back(*s);
    }
    return out;
  }
  ExclusiveOwner owner(const char* node_key, const char* conn_key) const {
    return {str(node_key), static_cast<uint64_t>(i64(conn_key))};
  }
};

void put_owner(amqp::FieldTable& t, const char* node_key, const char* conn_key, const ExclusiveOwner& o) {
  t.set(node_key, o.node);
  t.set(conn_key, static_cast<int64_t>(o.connection));
}

// One encoder per alternative, writing its fields into <t>.
void fields(amqp::FieldTable& t, const DeclareExchange& c) {
  t.set("vhost", c.vhost);
  t.set("name", c.def.name);
  t.set("type", c.def.type);
  t.set("durable", c.def.durable);
  t.set("auto_delete", c.def.auto_delete);
  t.set("internal", c.def.internal);
  t.set("arguments", c.def.arguments);
}
void fields(amqp::FieldTable& t, const DeleteExchange& c) {
  t.set("vhost", c.vhost);
  t.set("name", c.name);
  t.set("if_unused", c.if_unused);
}
void fields(amqp::FieldTable& t, const DeclareQueue& c) {
  t.set("vhost", c.vhost);
  t.set("name", c.def.name);
  t.set("durable", c.def.durable);
  t.set("auto_delete", c.def.auto_delete);
  put_owner(t, "owner_node", "owner_connection", c.def.exclusive_owner);
  t.set("arguments", c.def.arguments);
  put_owner(t, "by_node", "by_connection", c.by);
  t.set("home", c.def.home);
}
void fields(amqp::FieldTable& t, const DeleteQueue& c) {
  t.set("vhost", c.vhost);
  t.set("name", c.name);
  t.set("reason", static_cast<int64_t>(c.reason));
  put_owner(t, "by_node", "by_connection", c.by);
}
void fields(amqp::FieldTable& t, const Bind& c) {
  t.set("vhost", c.vhost);
  t.set("add", c.add);
  t.set("source", c.source);
  t.set("to_exchange", c.to_exchange);
  t.set("destination", c.destination);
  t.set("key", c.key);
  t.set("arguments", c.arguments);
  put_owner(t, "by_node", "by_connection", c.by);
}
void fields(amqp::FieldTable& t, const SetPolicy& c) {
  t.set("vhost", c.vhost);
  t.set("name", c.name);
  t.set("pattern", c.pattern);
  t.set("definition", c.definition.dump());
  t.set("priority", c.priority);
  t.set("apply_to", c.apply_to);
}
void fields(amqp::FieldTable& t, const ClearPolicy& c) {
  t.set("vhost", c.vhost);
  t.set("name", c.name);
}
void fields(amqp::FieldTable& t, const PutVhost& c) {
  t.set("name", c.name);
  t.set("description", c.description);
}
void fields(amqp::FieldTable& t, const DeleteVhost& c) { t.set("name", c.name); }
void fields(amqp::FieldTable& t, const PutUser& c) {
  t.set("name", c.name);
  t.set("password_hash", c.password_hash);
  amqp::FieldArray tags;
  for (const auto& tag : c.tags) tags.emplace_back(tag);
  t.set("tags", std::move(tags));
}
void fields(amqp::FieldTable& t, const DeleteUser& c) { t.set("name", c.name); }
void fields(amqp::FieldTable& t, const SetPermissions& c) {
  t.set("user", c.user);
  t.set("vhost", c.vhost);
  t.set("configure", c.configure);
  t.set("write", c.write);
  t.set("read", c.read);
}
void fields(amqp::FieldTable& t, const ClearPermissions& c) {
  t.set("user", c.user);
  t.set("vhost", c.vhost);
}
void fields(amqp::FieldTable& t, const SetParameter& c) {
  t.set("component", c.component);
  t.set("vhost", c.vhost);
  t.set("name", c.name);
  t.set("value", c.value.dump());
}
void fields(amqp::FieldTable& t, const ClearParameter& c) {
  t.set("component", c.component);
  t.set("vhost", c.vhost);
  t.set("name", c.name);
}
void fields(amqp::FieldTable& t, const SetUserLimits& c) {
  t.set("user", c.user);
  t.set("clear", c.clear);
  t.set("set", c.set.dump());
}

// One decoder per alternative.
template <class C>
C decode(const Fields& f);

template <>
DeclareExchange decode(const Fields& f) {
  return {f.str("vhost"),
          {f.str("name"), f.str("type"), f.flag("durable"), f.flag("auto_delete"), f.flag("internal"),
           f.table("arguments")}};
}
template <>
DeleteExchange decode(const Fields& f) {
  return {f.str("vhost"), f.str("name"), f.flag("if_unused")};
}
template <>
DeclareQueue decode(const Fields& f) {
  DeclareQueue c;
  c.vhost = f.str("vhost");
  c.def.name = f.str("name");
  c.def.durable = f.flag("durable");
  c.def.auto_delete = f.flag("auto_delete");
  c.def.exclusive_owner = f.owner("owner_node", "owner_connection");
  c.def.arguments = f.table("arguments");
  c.by = f.owner("by_node", "by_connection");
  c.def.home = f.str_or("home", {});
  return c;
}
template <>
DeleteQueue decode(const Fields& f) {
  auto reason = f.i64("reason");
  if (reason < 0 || reason > static_cast<int64_t>(DeleteReason::OwnerGone))
    throw ChangeDecodeError(fmt::format("unknown delete reason {}", reason));
  return {f.str("vhost"), f.str("name"), static_cast<DeleteReason>(reason), f.owner("by_node", "by_connection")};
}
template <>
Bind decode(const Fields& f) {
  return {f.str("vhost"), f.flag("add"),       f.str("source"),         f.flag("to_exchange"),
          f.str("destination"), f.str("key"), f.table("arguments"), f.owner("by_node", "by_connection")};
}
template <>
SetPolicy decode(const Fields& f) {
  return {f.str("vhost"), f.str("name"), f.str("pattern"), f.json("definition"), f.i64("priority"), f.str("apply_to")};
}
template <>
ClearPolicy decode(const Fields& f) {
  return {f.str("vhost"), f.str("name")};
}
template <>
PutVhost decode(const Fields& f) {
  return {f.str("name"), f.str("description")};
}
template <>
DeleteVhost decode(const Fields& f) {
  return {f.str("name")};
}
template <>
PutUser decode(const Fields& f) {
  return {f.str("name"), f.str("password_hash"), f.strings("tags")};
}
template <>
DeleteUser decode(const Fields& f) {
  return {f.str("name")};
}
template <>
SetPermissions decode(const Fields& f) {
  return {f.str("user"), f.str("vhost"), f.str("configure"), f.str("write"), f.str("read")};
}
template <>
ClearPermissions decode(const Fields& f) {
  return {f.str("user"), f.str("vhost")};
}
template <>
SetParameter decode(const Fields& f) {
  return {f.str("component"), f.str("vhost"), f.str("name"), f.json("value")};
}
template <>
ClearParameter decode(const Fields& f) {
  return {f.str("component"), f.str("vhost"), f.str("name")};
}
template <>
SetUserLimits decode(const Fields& f) {
  return {f.str("user"), f.str("clear"), f.json("set")};
}

constexpr const char* kNames[] = {"declare_exchange", "delete_exchange", "declare_queue",   "delete_queue",
                                  "bind",             "set_policy",      "clear_policy",    "put_vhost",
                                  "delete_vhost",     "put_user",        "delete_user",     "set_permissions",
                                  "clear_permissions", "set_parameter",  "clear_parameter", "set_user_limits"};
static_assert(std::size(kNames) == std::variant_size_v<Change>);

template <std::size_t I = 0>
Change decode_alternative(std::string_view op, const Fields& f) {
  if constexpr (I == std::variant_size_v<Change>) {
    throw ChangeDecodeError(fmt::format("unknown change '{}'", op));
  } else {
    if (op == kNames[I]) return decode<std::variant_alternative_t<I, Change>>(f);
    return decode_alternative<I + 1>(op, f);
  }
}
}  // namespace

const char* change_name(const Change& c) { return kNames[c.index()]; }

std::vector<uint8_t> encode_change(const Change& c) {
  amqp::FieldTable t;
  t.set("v", kEncodingVersion);
  t.set("op", change_name(c));
  std::visit([&](const auto& alt) { fields(t, alt); }, c);
  std::vector<uint8_t> out;
  amqp::Writer(out).table(t);
  return out;
}

Change decode_change(std::span<const uint8_t> bytes) {
  amqp::FieldTable t;
  try {
    amqp::Reader r(bytes);
    t = r.table();
    if (r.remaining() != 0) throw ChangeDecodeError("trailing bytes after the change");
  } catch (const amqp::DecodeError& e) {
    throw ChangeDecodeError(fmt::format("malformed change: {}", e.what()));
  }
  Fields f{t};
  if (auto v = f.i64("v"); v != kEncodingVersion)
    throw ChangeDecodeError(fmt::format("change encoding version {} is not {} (a newer node wrote it?)", v,
                                        kEncodingVersion));
  return decode_alternative(f.str("op"), f);
}

}  // namespace mqnode::broker
