#include "mgmt/definitions.hpp"

#include <algorithm>
#include <initializer_list>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "amqp/reply_code.hpp"
#include "broker/queue_args.hpp"
#include "core/config.hpp"
#include "mgmt/http_api.hpp"
#include "mgmt/json_table.hpp"
#include "mgmt/overload.hpp"

namespace mqnode::mgmt {

nlohmann::json export_definitions(const broker::Catalog& cat, const std::optional<std::string>& vhost,
                                  const std::string& product_version) {
  const bool whole = !vhost;
  nlohmann::json doc = {{"rabbit_version", "3.10.0"}};
  if (whole) {
    doc["rabbitmq_version"] = "3.10.0";
    doc["product_name"] = "mqnode";
    doc["product_version"] = product_version;
    for (const char* k : {"users", "vhosts", "permissions", "topic_permissions", "global_parameters"})
      doc[k] = nlohmann::json::array();
  }
  for (const char* k : {"parameters", "policies", "queues", "exchanges", "bindings"}) doc[k] = nlohmann::json::array();
  // Exclusive queues belong to a connection: neither they nor their bindings are exported.
  std::set<std::pair<std::string, std::string>> exclusive;
  auto in_scope = [&](const std::string& v) { return whole || v == *vhost; };
  auto scoped = [&](nlohmann::json item, const std::string& v) {
    if (whole) item["vhost"] = v;
    return item;
  };
  for (const auto& change : cat.definitions()) {
    std::visit(
        Overload{
            [&](const broker::PutVhost& c) {
              if (whole) doc["vhosts"].push_back({{"name", c.name}});
            },
            [&](const broker::PutUser& c) {
              if (whole)
                doc["users"].push_back(user_to_api(broker::AccessControl::User{c.name, c.password_hash, c.tags}));
            },
            [&](const broker::SetPermissions& c) {
              if (whole)
                doc["permissions"].push_back({{"user", c.user},
                                              {"vhost", c.vhost},
                                              {"configure", c.configure},
                                              {"write", c.write},
                                              {"read", c.read}});
            },
            [&](const broker::SetParameter& c) {
              if (c.vhost.empty()) {
                if (whole) doc["global_parameters"].push_back({{"name", c.name}, {"value", c.value}});
              } else if (in_scope(c.vhost)) {
                doc["parameters"].push_back(
                    scoped({{"component", c.component}, {"name", c.name}, {"value", c.value}}, c.vhost));
              }
            },
            [&](const broker::SetPolicy& c) {
              if (in_scope(c.vhost))
                doc["policies"].push_back(scoped({{"name", c.name},
                                                  {"pattern", c.pattern},
                                                  {"apply-to", c.apply_to},
                                                  {"definition", c.definition},
                                                  {"priority", c.priority}},
                                                 c.vhost));
            },
            [&](const broker::DeclareExchange& c) {
              if (in_scope(c.vhost))
                doc["exchanges"].push_back(scoped({{"name", c.def.name},
                                                   {"type", c.def.type},
                                                   {"durable", c.def.durable},
                                                   {"auto_delete", c.def.auto_delete},
                                                   {"internal", c.def.internal},
                                                   {"arguments", table_to_json(c.def.arguments)}},
                                                  c.vhost));
            },
            [&](const broker::DeclareQueue& c) {
              if (!c.def.exclusive_owner.empty()) {
                exclusive.insert({c.vhost, c.def.name});
                return;
              }
              if (in_scope(c.vhost))
                doc["queues"].push_back(scoped({{"name", c.def.name},
                                                {"durable", c.def.durable},
                                                {"auto_delete", c.def.auto_delete},
                                                {"arguments", table_to_json(c.def.arguments)}},
                                               c.vhost));
            },
            [&](const broker::Bind& c) {
              if (!in_scope(c.vhost) || (!c.to_exchange && exclusive.count({c.vhost, c.destination}))) return;
              doc["bindings"].push_back(scoped({{"source", c.source},
                                                {"destination", c.destination},
                                                {"destination_type", c.to_exchange ? "exchange" : "queue"},
                                                {"routing_key", c.key},
                                                {"arguments", table_to_json(c.arguments)}},
                                               c.vhost));
            },
            [](const auto&) {}},
        change);
  }
  return doc;
}

// ---- import ----------------------------------------------------------------------------

namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw ApiError(400, "bad_request", fmt::format("{}: {}", path, what));
}

// One item of a definitions list: an object whose keys are checked against the known ones.
class Item {
 public:
  Item(const nlohmann::json& j, std::string path, const std::vector<std::string>& known) : j_(j), path_(std::move(path)) {
    if (!j.is_object()) bad(path_, "expected a JSON object");
    for (const auto& [k, v] : j.items())
      if (std::find(known.begin(), known.end(), k) == known.end())
        bad(path_, fmt::format("unknown key '{}' (expected {})", k, fmt::join(known, ", ")));
  }
  const std::string& path() const { return path_; }
  bool has(const char* k) const { return j_.contains(k); }
  const nlohmann::json& raw(const char* k) const { return j_.at(k); }
  std::string string(const char* k, std::optional<std::string> dflt = std::nullopt) const {
    if (!has(k)) {
      if (!dflt) bad(path_, fmt::format("'{}' is missing", k));
      return *dflt;
    }
    if (!j_[k].is_string()) bad(path_ + "/" + k, fmt::format("expected a string, got {}", j_[k].dump()));
    return j_[k].get<std::string>();
  }
  bool flag(const char* k, bool dflt) const {
    if (!has(k)) return dflt;
    const auto& v = j_[k];
    if (v.is_boolean()) return v.get<bool>();
    if (v == "true" || v == "false") return v == "true";
    bad(path_ + "/" + k, fmt::format("expected true or false, got {}", v.dump()));
  }
  amqp::FieldTable table(const char* k) const {
    if (!has(k)) return {};
    try {
      return json_to_table(j_[k], path_ + "/" + k);
    } catch (const std::invalid_argument& e) {
      throw ApiError(400, "bad_request", e.what());
    }
  }

 private:
  const nlohmann::json& j_;
  std::string path_;
};

const nlohmann::json& list_of(const nlohmann::json& doc, const char* key) {
  static const nlohmann::json kEmpty = nlohmann::json::array();
  if (!doc.contains(key) || doc[key].is_null()) return kEmpty;
  if (!doc[key].is_array()) bad(std::string("/") + key, "expected a list");
  return doc[key];
}

void check_regex(const std::string& path, const std::string& pattern) {
  try {
    std::regex re(pattern);
  } catch (const std::regex_error& e) {
    bad(path, fmt::format("invalid regular expression \"{}\": {}", pattern, e.what()));
  }
}

}  // namespace

ImportPlan plan_import(const nlohmann::json& doc, const broker::Catalog& cat, const std::optional<std::string>& vhost) {
  if (!doc.is_object()) bad("/", "a definitions file is a JSON object");
  static const std::set<std::string> kTopKeys = {
      "rabbit_version", "rabbitmq_version", "product_name", "product_version", "users",    "vhosts",
      "permissions",    "topic_permissions", "parameters",  "global_parameters", "policies", "queues",
      "exchanges",      "bindings",         "explanation"};
  for (const auto& [k, v] : doc.items())
    if (!kTopKeys.count(k))
      bad("/" + k, "unknown key (expected rabbit_version, users, vhosts, permissions, topic_permissions, parameters, "
                   "global_parameters, policies, queues, exchanges, bindings)");
  const bool whole = !vhost;
  ImportPlan plan;
  auto add = [&plan](broker::Change c, const std::string& where) {
    plan.changes.push_back(std::move(c));
    plan.where.push_back(where);
  };
  // The keys of a vhost's item: "vhost" too in a whole-node file.
  const auto vhost_keys = [&](std::vector<std::string> keys) {
    if (whole) keys.push_back("vhost");
    return keys;
  };
  // What exists once the file's earlier sections are applied: the references to check.
  std::set<std::string> vhosts, users;
  for (const auto& [name, vh] : cat.vhosts()) vhosts.insert(name);
  for (const auto& [name, u] : cat.access().users()) users.insert(name);
  auto vhost_of = [&](const Item& it) {
    std::string v = whole ? it.string("vhost") : *vhost;
    if (!vhosts.count(v)) bad(it.path(), fmt::format("vhost '{}' does not exist (and is not in this file's vhosts)", v));
    return v;
  };

  if (whole) {
    const auto& vl = list_of(doc, "vhosts");
    for (std::size_t i = 0; i < vl.size(); ++i) {
      Item it(vl[i], fmt::format("/vhosts/{}", i), {"name", "description", "tags", "metadata", "default_queue_type",
                                                     "limits", "tracing"});
      auto name = it.string("name");
      if (name.empty()) bad(it.path() + "/name", "must not be empty");
      vhosts.insert(name);
      add(broker::PutVhost{name, it.string("description", "")}, it.path());
    }
    const auto& ul = list_of(doc, "users");
    for (std::size_t i = 0; i < ul.size(); ++i) {
      Item it(ul[i], fmt::format("/users/{}", i), {"name", "password_hash", "password", "hashing_algorithm", "tags", "limits"});
      auto name = it.string("name");
      if (name.empty()) bad(it.path() + "/name", "must not be empty");
      broker::PutUser u{name, "", {}};
      if (it.has("password")) {
        u.password_hash = broker::hash_password(it.string("password"));
      } else {
        u.password_hash = it.string("password_hash", "");
        if (!u.password_hash.empty() && !broker::valid_password_hash(u.password_hash))
          bad(it.path() + "/password_hash", "expected base64 of a 4-byte salt and a SHA-256 digest");
      }
      auto alg = it.string("hashing_algorithm", "rabbit_password_hashing_sha256");
      if (alg != "rabbit_password_hashing_sha256")
        bad(it.path() + "/hashing_algorithm", fmt::format("only rabbit_password_hashing_sha256 is supported, got '{}'", alg));
      if (it.has("tags")) {
        try {
          u.tags = parse_tags(it.raw("tags"));
        } catch (const ApiError& e) {
          bad(it.path() + "/tags", e.what());
        }
      }
      users.insert(name);
      add(std::move(u), it.path());
    }
    const auto& pl = list_of(doc, "permissions");
    for (std::size_t i = 0; i < pl.size(); ++i) {
      Item it(pl[i], fmt::format("/permissions/{}", i), {"user", "vhost", "configure", "write", "read"});
      auto user = it.string("user");
      if (!users.count(user)) bad(it.path(), fmt::format("user '{}' does not exist (and is not in this file's users)", user));
      auto v = vhost_of(it);
      broker::SetPermissions p{user, v, it.string("configure"), it.string("write"), it.string("read")};
      check_regex(it.path() + "/configure", p.configure);
      check_regex(it.path() + "/write", p.write);
      check_regex(it.path() + "/read", p.read);
      add(std::move(p), it.path());
    }
    const auto& tl = list_of(doc, "topic_permissions");
    if (!tl.empty()) bad("/topic_permissions/0", "topic permissions are not supported by this node");
    const auto& gl = list_of(doc, "global_parameters");
    for (std::size_t i = 0; i < gl.size(); ++i) {
      Item it(gl[i], fmt::format("/global_parameters/{}", i), {"name", "value"});
      auto name = it.string("name");
      if (!it.has("value")) bad(it.path(), "'value' is missing");
      if (name.empty()) bad(it.path() + "/name", "must not be empty");
      add(broker::SetParameter{kGlobalComponent, "", name, it.raw("value")}, it.path());
    }
  }

  const auto& parl = list_of(doc, "parameters");
  for (std::size_t i = 0; i < parl.size(); ++i) {
    Item it(parl[i], fmt::format("/parameters/{}", i), vhost_keys({"component", "name", "value"}));
    auto v = vhost_of(it);
    auto component = it.string("component"), name = it.string("name");
    if (component.empty() || name.empty()) bad(it.path(), "component and name must not be empty");
    if (!it.has("value")) bad(it.path(), "'value' is missing");
    add(broker::SetParameter{component, v, name, it.raw("value")}, it.path());
  }

  const auto& pol = list_of(doc, "policies");
  for (std::size_t i = 0; i < pol.size(); ++i) {
    Item it(pol[i], fmt::format("/policies/{}", i), vhost_keys({"name", "pattern", "apply-to", "definition", "priority"}));
    auto v = vhost_of(it);
    broker::SetPolicy p{v, it.string("name"), it.string("pattern"), nlohmann::json::object(), 0,
                        it.string("apply-to", "all")};
    if (!it.has("definition")) bad(it.path(), "'definition' is missing");
    p.definition = it.raw("definition");
    if (it.has("priority")) {
      const auto& pr = it.raw("priority");
      if (!pr.is_number_integer()) bad(it.path() + "/priority", fmt::format("expected an integer, got {}", pr.dump()));
      p.priority = pr.get<int64_t>();
    }
    // The broker's own policy check, so a bad definition is refused before anything is applied.
    nlohmann::json as_config = {{"name", p.name},         {"vhost", v},           {"pattern", p.pattern},
                                {"definition", p.definition}, {"priority", p.priority}, {"apply_to", p.apply_to}};
    try {
      broker::parse_policy(core::ConfigNode(as_config, it.path()));
    } catch (const core::ConfigError& e) {
      throw ApiError(400, "bad_request", e.what());
    }
    add(std::move(p), it.path());
  }

  // Exchanges, then queues, then bindings: a binding may join any two of them.
  std::set<std::pair<std::string, std::string>> exchanges, queues;
  const auto& el = list_of(doc, "exchanges");
  for (std::size_t i = 0; i < el.size(); ++i) {
    Item it(el[i], fmt::format("/exchanges/{}", i),
            vhost_keys({"name", "type", "durable", "auto_delete", "internal", "arguments"}));
    auto v = vhost_of(it);
    broker::ExchangeDefinition d;
    d.name = it.string("name");
    d.type = it.string("type");
    d.durable = it.flag("durable", true);
    d.auto_delete = it.flag("auto_delete", false);
    d.internal = it.flag("internal", false);
    d.arguments = it.table("arguments");
    if (d.name.empty()) bad(it.path() + "/name", "the default exchange cannot be declared");
    if (!broker::is_exchange_type(d.type))
      bad(it.path() + "/type", fmt::format("unknown exchange type '{}' (direct, fanout, topic, headers)", d.type));
    if (const auto* vh = cat.find_vhost(v))
      if (const auto* ex = vh->find_exchange(d.name)) {
        const auto& have = ex->definition();
        if (have.type != d.type || have.durable != d.durable || have.auto_delete != d.auto_delete ||
            have.internal != d.internal)
          bad(it.path(), fmt::format("exchange '{}' in vhost '{}' exists with another type or flags", d.name, v));
      }
    exchanges.insert({v, d.name});
    add(broker::DeclareExchange{v, std::move(d)}, it.path());
  }
  const auto& ql = list_of(doc, "queues");
  for (std::size_t i = 0; i < ql.size(); ++i) {
    Item it(ql[i], fmt::format("/queues/{}", i), vhost_keys({"name", "durable", "auto_delete", "arguments", "type"}));
    auto v = vhost_of(it);
    broker::QueueDefinition d;
    d.name = it.string("name");
    d.durable = it.flag("durable", true);
    d.auto_delete = it.flag("auto_delete", false);
    d.arguments = it.table("arguments");
    if (d.name.empty()) bad(it.path() + "/name", "must not be empty");
    if (it.has("type") && it.string("type") != "classic")
      bad(it.path() + "/type", fmt::format("queue type '{}' is not supported by this node (only 'classic')",
                                           it.string("type")));
    try {
      broker::parse_queue_args(d.arguments, d.name, v);
    } catch (const amqp::ChannelError& e) {
      bad(it.path() + "/arguments", e.what());
    }
    if (const auto* vh = cat.find_vhost(v))
      if (auto q = vh->find_queue(d.name)) {
        const auto& have = q->definition();
        if (!have.exclusive_owner.empty()) bad(it.path(), fmt::format("queue '{}' in vhost '{}' is exclusive to a connection", d.name, v));
        if (have.durable != d.durable || have.auto_delete != d.auto_delete)
          bad(it.path(), fmt::format("queue '{}' in vhost '{}' exists with other durable/auto_delete flags", d.name, v));
        if (auto diff = broker::inequivalent_queue_arg(have.arguments, d.arguments, d.name, v); !diff.empty())
          bad(it.path(), diff);
      }
    queues.insert({v, d.name});
    add(broker::DeclareQueue{v, std::move(d), {}}, it.path());
  }
  auto exchange_exists = [&](const std::string& v, const std::string& name) {
    if (exchanges.count({v, name})) return true;
    const auto* vh = cat.find_vhost(v);
    return vh && vh->find_exchange(name);
  };
  auto queue_exists = [&](const std::string& v, const std::string& name) {
    if (queues.count({v, name})) return true;
    const auto* vh = cat.find_vhost(v);
    return vh && vh->find_queue(name);
  };
  const auto& bl = list_of(doc, "bindings");
  for (std::size_t i = 0; i < bl.size(); ++i) {
    Item it(bl[i], fmt::format("/bindings/{}", i),
            vhost_keys({"source", "destination", "destination_type", "routing_key", "arguments"}));
    auto v = vhost_of(it);
    broker::Bind b{v, true, it.string("source"), false, it.string("destination"), it.string("routing_key", ""),
                   it.table("arguments"), {}};
    auto type = it.string("destination_type");
    if (type != "queue" && type != "exchange")
      bad(it.path() + "/destination_type", fmt::format("expected \"queue\" or \"exchange\", got '{}'", type));
    b.to_exchange = type == "exchange";
    if (b.source.empty()) bad(it.path() + "/source", "the default exchange's bindings are implicit");
    if (!exchange_exists(v, b.source))
      bad(it.path() + "/source", fmt::format("exchange '{}' does not exist in vhost '{}' (nor in this file)", b.source, v));
    if (b.to_exchange ? !exchange_exists(v, b.destination) : !queue_exists(v, b.destination))
      bad(it.path() + "/destination",
          fmt::format("{} '{}' does not exist in vhost '{}' (nor in this file)", type, b.destination, v));
    add(std::move(b), it.path());
  }
  return plan;
}

}  // namespace mqnode::mgmt
