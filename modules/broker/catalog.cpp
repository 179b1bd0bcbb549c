#include "broker/catalog.hpp"

#include <algorithm>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "amqp/properties.hpp"
#include "amqp/reply_code.hpp"
#include "broker/config.hpp"
#include "broker/queue_args.hpp"
#include "broker/routing.hpp"

namespace mqnode::broker {

namespace {
using Code = amqp::ChannelReplyCode;

constexpr uint16_t code(Code c) { return static_cast<uint16_t>(c); }
constexpr uint16_t kCommandInvalid = static_cast<uint16_t>(amqp::ConnectionReplyCode::CommandInvalid);

ChangeResult ok(bool created = false) { return {0, {}, created}; }
ChangeResult fail(Code c, std::string text) { return ChangeResult::error(code(c), std::move(text)); }

const char* yes_no(bool b) { return b ? "true" : "false"; }

ChangeResult locked(const std::string& queue, const std::string& vhost) {
  return fail(Code::ResourceLocked,
              fmt::format("cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be originally "
                          "declared on another connection or the exclusive property value does not match that of "
                          "the original declaration.",
                          queue, vhost));
}

// A queue exclusive to a connection other than <by> (an empty <by> is the system).
bool locked_against(const QueueDefinition& d, const ExclusiveOwner& by) {
  return !d.exclusive_owner.empty() && !by.empty() && d.exclusive_owner != by;
}

std::string permission_key(const std::string& user, const std::string& vhost) { return user + '\0' + vhost; }
std::string parameter_key(const std::string& component, const std::string& vhost, const std::string& name) {
  return component + '\0' + vhost + '\0' + name;
}

// A policy change as the definition /broker/policies/N would have it, so one parser
// validates the config file, the store and runtime changes alike.
nlohmann::json policy_json(const SetPolicy& c) {
  return {{"name", c.name},         {"vhost", c.vhost},         {"pattern", c.pattern},
          {"definition", c.definition}, {"priority", c.priority}, {"apply_to", c.apply_to}};
}

SetPolicy to_change(const Policy& p) {
  return {p.vhost, p.name, p.pattern, p.definition, p.priority, apply_to_name(p.apply_to)};
}
}  // namespace

ChangeResult refuse_exchange_deletion(const std::string& name, const std::string& vhost) {
  if (name.empty()) return fail(Code::AccessRefused, "operation not permitted on the default exchange");
  if (name.starts_with("amq."))
    return fail(Code::AccessRefused, fmt::format("deletion of system exchange '{}' in vhost '{}' not allowed", name, vhost));
  return ok();
}

Catalog::Catalog(Options opts, core::Logger log)
    : opts_(std::move(opts)), log_(std::move(log)), access_(opts_.loopback_users) {}

Catalog::~Catalog() = default;

void Catalog::propose(Change change, ProposeDone done) {
  // A new queue lives where it was declared (RabbitMQ's default queue leader locator).
  if (auto* dq = std::get_if<DeclareQueue>(&change); dq && dq->def.home.empty()) dq->def.home = opts_.node;
  if (change_log_) {
    change_log_->submit(change, std::move(done));
    return;
  }
  // A change the store keeps is answered once it is committed: a user told "deleted" or
  // a client told "declared" finds it so after a kill -9 (RabbitMQ answers after its
  // Mnesia write). One that wrote nothing is answered at once.
  store::Store* store = persisting() ? opts_.store : nullptr;
  const uint64_t writes_before = store ? store->writes_queued() : 0;
  ChangeResult result = apply(change);
  if (!store || store->writes_queued() == writes_before) {
    done(std::move(result));
    return;
  }
  store->after_commit([done = std::move(done), result = std::move(result)](bool) mutable { done(std::move(result)); });
}

ChangeResult Catalog::apply(const Change& change) {
  return std::visit([this](const auto& c) { return apply(c); }, change);
}

Vhost* Catalog::find_vhost(std::string_view name) const {
  auto it = vhosts_.find(name);
  return it == vhosts_.end() ? nullptr : it->second.get();
}

Vhost* Catalog::vhost_of(const std::string& name, ChangeResult& error) const {
  Vhost* vh = find_vhost(name);
  if (!vh) error = fail(Code::NotFound, fmt::format("no vhost '{}'", name));
  return vh;
}

// ---- exchanges, queues, bindings -----------------------------------------------------

ChangeResult Catalog::apply(const DeclareExchange& c) {
  ChangeResult err;
  Vhost* vh = vhost_of(c.vhost, err);
  if (!vh) return err;
  const auto& name = c.def.name;
  if (name.empty()) return fail(Code::AccessRefused, "operation not permitted on the default exchange");
  if (!is_exchange_type(c.def.type))
    return ChangeResult::error(kCommandInvalid, fmt::format("unknown exchange type '{}'", c.def.type));
  // Equivalence first: an identical redeclare of amq.direct succeeds, as in RabbitMQ.
  if (const Exchange* ex = vh->find_exchange(name)) {
    const auto& d = ex->definition();
    auto inequivalent = [&](const char* arg, std::string_view got, std::string_view have) {
      return fail(Code::PreconditionFailed,
                  fmt::format("inequivalent arg '{}' for exchange '{}' in vhost '{}': received '{}' but current is '{}'",
                              arg, name, c.vhost, got, have));
    };
    if (d.type != c.def.type) return inequivalent("type", c.def.type, d.type);
    if (d.durable != c.def.durable) return inequivalent("durable", yes_no(c.def.durable), yes_no(d.durable));
    if (d.auto_delete != c.def.auto_delete)
      return inequivalent("auto_delete", yes_no(c.def.auto_delete), yes_no(d.auto_delete));
    if (d.internal != c.def.internal) return inequivalent("internal", yes_no(c.def.internal), yes_no(d.internal));
    const auto* a = d.arguments.find("alternate-exchange");
    const auto* b = c.def.arguments.find("alternate-exchange");
    if ((a == nullptr) != (b == nullptr) || (a && !(*a == *b)))
      return fail(Code::PreconditionFailed,
                  fmt::format("inequivalent arg 'alternate-exchange' for exchange '{}' in vhost '{}'", name, c.vhost));
    return ok(false);
  }
  if (name.starts_with("amq."))
    return fail(Code::AccessRefused, fmt::format("exchange name '{}' contains reserved prefix 'amq.*'", name));
  if (const auto* ae = c.def.arguments.find("alternate-exchange"); ae && !ae->as_string())
    return fail(Code::PreconditionFailed,
                fmt::format("invalid arg 'alternate-exchange' for exchange '{}' in vhost '{}': expected a string", name,
                            c.vhost));
  vh->apply(c);
  return ok(true);
}

ChangeResult Catalog::apply(const DeleteExchange& c) {
  ChangeResult err;
  Vhost* vh = vhost_of(c.vhost, err);
  if (!vh) return err;
  if (auto refused = refuse_exchange_deletion(c.name, c.vhost); !refused.ok()) return refused;
  // Deleting an exchange that does not exist succeeds (RabbitMQ ≥ 3.2).
  const Exchange* ex = vh->find_exchange(c.name);
  if (!ex) return ok();
  if (c.if_unused && vh->exchange_in_use(*ex))
    return fail(Code::PreconditionFailed, fmt::format("exchange '{}' in vhost '{}' in use", c.name, c.vhost));
  vh->apply(c);
  return ok();
}

ChangeResult Catalog::apply(const DeclareQueue& c) {
  ChangeResult err;
  Vhost* vh = vhost_of(c.vhost, err);
  if (!vh) return err;
  const auto& name = c.def.name;
  if (auto q = vh->find_queue(name)) {
    const auto& d = q->definition();
    if (locked_against(d, c.by)) return locked(name, c.vhost);
    if (!c.def.exclusive_owner.empty() && d.exclusive_owner.empty()) return locked(name, c.vhost);
    auto inequivalent = [&](const char* arg, bool got, bool have) {
      return fail(Code::PreconditionFailed,
                  fmt::format("inequivalent arg '{}' for queue '{}' in vhost '{}': received '{}' but current is '{}'",
                              arg, name, c.vhost, yes_no(got), yes_no(have)));
    };
    if (d.durable != c.def.durable) return inequivalent("durable", c.def.durable, d.durable);
    if (d.auto_delete != c.def.auto_delete) return inequivalent("auto_delete", c.def.auto_delete, d.auto_delete);
    if (auto text = inequivalent_queue_arg(d.arguments, c.def.arguments, name, c.vhost); !text.empty())
      return fail(Code::PreconditionFailed, std::move(text));
    return ok(false);
  }
  // Names are checked where they come from (a client may not choose "amq.*"; the server
  // names its amq.gen-* queues itself).
  if (name.empty()) return fail(Code::PreconditionFailed, "queue name must not be empty");
  DeclareQueue checked = c;
  try {
    checked.def.args = parse_queue_args(c.def.arguments, name, c.vhost);
  } catch (const amqp::ChannelError& e) {
    return ChangeResult::error(static_cast<uint16_t>(e.code), e.what());
  }
  vh->apply(checked);
  if (checked.def.args.queue_type == "quorum")
    log_.warn("queue declared with x-queue-type quorum is not replicated yet: it is a classic queue with one copy, on "
              "its home node vhost={} queue={}",
              c.vhost, name);
  return ok(true);
}

ChangeResult Catalog::apply(const DeleteQueue& c) {
  ChangeResult err;
  Vhost* vh = vhost_of(c.vhost, err);
  if (!vh) return err;
  // Deleting a queue that does not exist succeeds (RabbitMQ ≥ 3.2).
  auto q = vh->find_queue(c.name);
  if (!q) return ok();
  const auto& owner = q->definition().exclusive_owner;
  if (c.reason == DeleteReason::Client && locked_against(q->definition(), c.by)) return locked(c.name, c.vhost);
  // A queue redeclared by someone else since its owner went is not the owner's to delete.
  if (c.reason == DeleteReason::OwnerGone && owner != c.by) return ok();
  vh->apply(c);
  return ok();
}

ChangeResult Catalog::apply(const Bind& c) {
  ChangeResult err;
  Vhost* vh = vhost_of(c.vhost, err);
  if (!vh) return err;
  if (c.source.empty() || (c.to_exchange && c.destination.empty()))
    return fail(Code::AccessRefused, "operation not permitted on the default exchange");
  if (c.to_exchange) {
    if (!vh->find_exchange(c.destination))
      return fail(Code::NotFound, fmt::format("no exchange '{}' in vhost '{}'", c.destination, c.vhost));
  } else {
    auto q = vh->find_queue(c.destination);
    if (!q) return fail(Code::NotFound, fmt::format("no queue '{}' in vhost '{}'", c.destination, c.vhost));
    if (locked_against(q->definition(), c.by)) return locked(c.destination, c.vhost);
  }
  const Exchange* src = vh->find_exchange(c.source);
  if (!src) return fail(Code::NotFound, fmt::format("no exchange '{}' in vhost '{}'", c.source, c.vhost));
  if (c.add && src->definition().type == "headers")
    if (auto text = headers_binding_error(c.arguments); !text.empty())
      return fail(Code::PreconditionFailed, std::move(text));
  vh->apply(c);
  return ok();
}

// ---- policies ------------------------------------------------------------------------

ChangeResult Catalog::apply(const SetPolicy& c) {
  Vhost* vh = find_vhost(c.vhost);
  if (!vh)
    return fail(Code::NotFound, fmt::format("vhost '{}' does not exist (vhosts are listed in /broker/vhosts)", c.vhost));
  Policy p;
  try {
    p = parse_policy(core::ConfigNode(policy_json(c), ""));
  } catch (const core::ConfigError& e) {
    return fail(Code::PreconditionFailed, fmt::format("Validation failed: {}", e.what()));
  }
  policies_.set(std::move(p));
  if (persisting())
    opts_.store->put_policy({c.vhost, c.name, c.pattern, c.apply_to, c.definition.dump(), c.priority});
  log_.info("policy set vhost={} name={} pattern=\"{}\" apply_to={} priority={} definition={}", c.vhost, c.name,
            c.pattern, c.apply_to, c.priority, c.definition.dump());
  if (c.definition.contains("ha-mode"))
    log_.warn("policy with ha-mode: the queues it matches are not replicated yet (one copy each, on its home node) "
              "vhost={} name={} pattern=\"{}\"",
              c.vhost, c.name, c.pattern);
  vh->apply_policies();
  return ok();
}

ChangeResult Catalog::apply(const ClearPolicy& c) {
  Vhost* vh = find_vhost(c.vhost);
  if (!vh)
    return fail(Code::NotFound, fmt::format("vhost '{}' does not exist (vhosts are listed in /broker/vhosts)", c.vhost));
  if (!policies_.erase(c.vhost, c.name))
    return fail(Code::NotFound, fmt::format("no policy '{}' in vhost '{}'", c.name, c.vhost));
  if (persisting()) opts_.store->delete_policy(c.vhost, c.name);
  log_.info("policy cleared vhost={} name={}", c.vhost, c.name);
  vh->apply_policies();
  return ok();
}

// ---- vhosts, users, permissions, parameters --------------------------------------------

void Catalog::persist_definition(const char* kind, const std::string& key, const Change& c) {
  if (persisting()) opts_.store->put_definition({kind, key, encode_change(c)});
}

void Catalog::forget_definition(const char* kind, const std::string& key) {
  if (persisting()) opts_.store->delete_definition(kind, key);
}

ChangeResult Catalog::apply(const PutVhost& c) {
  if (c.name.empty()) return fail(Code::PreconditionFailed, "vhost name must not be empty");
  persist_definition("vhost", c.name, c);
  if (find_vhost(c.name)) return ok(false);
  vhosts_.emplace(c.name, std::make_unique<Vhost>(c.name, *this, policies_, opts_.queue_ram_bytes));
  log_.info("vhost added vhost={}", c.name);
  return ok(true);
}

ChangeResult Catalog::apply(const DeleteVhost& c) {
  auto it = vhosts_.find(c.name);
  if (it == vhosts_.end()) return fail(Code::NotFound, fmt::format("no vhost '{}'", c.name));
  // Connections first: they release consumers and exclusive queues of this vhost.
  if (observer_) observer_->vhost_deleted(c.name);
  it->second->remove_all();
  std::vector<std::string> policies;
  for (const auto& p : policies_.all())
    if (p.vhost == c.name) policies.push_back(p.name);
  for (const auto& name : policies) apply(ClearPolicy{c.name, name});
  for (const auto& [key, perm] : access_.permissions())
    if (key.second == c.name) forget_definition("permission", permission_key(key.first, key.second));
  access_.delete_vhost(c.name);
  for (auto p = parameters_.begin(); p != parameters_.end();) {
    const auto& [component, vhost, name] = p->first;
    if (vhost == c.name) {
      forget_definition("parameter", parameter_key(component, vhost, name));
      p = parameters_.erase(p);
    } else {
      ++p;
    }
  }
  forget_definition("vhost", c.name);
  vhosts_.erase(it);
  log_.info("vhost deleted vhost={}", c.name);
  return ok();
}

ChangeResult Catalog::apply(const PutUser& c) {
  if (c.name.empty()) return fail(Code::PreconditionFailed, "user name must not be empty");
  if (!c.password_hash.empty() && !valid_password_hash(c.password_hash))
    return fail(Code::PreconditionFailed, fmt::format("invalid password_hash for user '{}'", c.name));
  bool created = !access_.find_user(c.name);
  access_.put_user(c.name, c.password_hash, c.tags);
  persist_definition("user", c.name, c);
  return ok(created);
}

ChangeResult Catalog::apply(const DeleteUser& c) {
  if (!access_.find_user(c.name)) return fail(Code::NotFound, fmt::format("no user '{}'", c.name));
  if (observer_) observer_->user_deleted(c.name);
  for (const auto& [key, perm] : access_.permissions())
    if (key.first == c.name) forget_definition("permission", permission_key(key.first, key.second));
  access_.delete_user(c.name);
  forget_definition("user", c.name);
  if (user_limits_.erase(c.name)) forget_definition("user_limits", c.name);
  return ok();
}

ChangeResult Catalog::apply(const SetPermissions& c) {
  if (!access_.find_user(c.user)) return fail(Code::NotFound, fmt::format("no user '{}'", c.user));
  if (!find_vhost(c.vhost)) return fail(Code::NotFound, fmt::format("no vhost '{}'", c.vhost));
  try {
    access_.set_permissions(c.user, c.vhost, {c.configure, c.write, c.read});
  } catch (const std::regex_error& e) {
    return fail(Code::PreconditionFailed, fmt::format("invalid permission pattern for user '{}' in vhost '{}': {}",
                                                      c.user, c.vhost, e.what()));
  }
  persist_definition("permission", permission_key(c.user, c.vhost), c);
  return ok();
}

ChangeResult Catalog::apply(const ClearPermissions& c) {
  if (!access_.find_user(c.user)) return fail(Code::NotFound, fmt::format("no user '{}'", c.user));
  if (!find_vhost(c.vhost)) return fail(Code::NotFound, fmt::format("no vhost '{}'", c.vhost));
  access_.clear_permissions(c.user, c.vhost);
  forget_definition("permission", permission_key(c.user, c.vhost));
  return ok();
}

ChangeResult Catalog::apply(const SetParameter& c) {
  if (c.component.empty() || c.name.empty())
    return fail(Code::PreconditionFailed, "parameter component and name must not be empty");
  if (!c.vhost.empty() && !find_vhost(c.vhost)) return fail(Code::NotFound, fmt::format("no vhost '{}'", c.vhost));
  bool created = parameters_.insert_or_assign({c.component, c.vhost, c.name}, c.value).second;
  persist_definition("parameter", parameter_key(c.component, c.vhost, c.name), c);
  return ok(created);
}

ChangeResult Catalog::apply(const ClearParameter& c) {
  if (!parameters_.erase({c.component, c.vhost, c.name}))
    return fail(Code::NotFound, fmt::format("no parameter '{}' of component '{}' in vhost '{}'", c.name, c.component,
                                            c.vhost));
  forget_definition("parameter", parameter_key(c.component, c.vhost, c.name));
  return ok();
}

namespace {
// Applies the stored definitions of <kind> ("vhost", "user", ...); the caller turns
// persisting off.
void restore_definitions(Catalog& catalog, const store::Snapshot& snap, std::string_view kind) {
  for (const auto& d : snap.definitions) {
    if (d.kind != kind) continue;
    try {
      auto r = catalog.apply(decode_change(d.change));
      if (!r.ok()) catalog.log().warn("stored {} \"{}\" not restored: {}", d.kind, d.key, r.text);
    } catch (const ChangeDecodeError& e) {
      catalog.log().warn("stored {} \"{}\" is unreadable, ignored: {}", d.kind, d.key, e.what());
    }
  }
}

// A JSON value as RabbitMQ's texts print the Erlang term: a string as a binary, <<"x">>.
std::string as_term(const nlohmann::json& v) {
  return v.is_string() ? fmt::format("<<\"{}\">>", v.get<std::string>()) : v.dump();
}
}  // namespace

// RabbitMQ's user limits: an integer each, negative for none; its validation texts.
ChangeResult Catalog::apply(const SetUserLimits& c) {
  static constexpr std::string_view kLimits[] = {"max-connections", "max-channels"};
  auto known = [](std::string_view name) { return std::find(std::begin(kLimits), std::end(kLimits), name) != std::end(kLimits); };
  if (!access_.find_user(c.user)) return fail(Code::NotFound, fmt::format("no user '{}'", c.user));
  if (!c.set.is_object()) return fail(Code::PreconditionFailed, fmt::format("{} is not a JSON object", as_term(c.set)));
  std::vector<std::string> unknown;
  for (const auto& [name, value] : c.set.items()) {
    if (!known(name))
      unknown.push_back(fmt::format("{{<<\"{}\">>,{}}}", name, as_term(value)));
    else if (!value.is_number_integer())
      return fail(Code::PreconditionFailed, fmt::format("{} should be a number, actually was {}", name, as_term(value)));
  }
  if (!unknown.empty())
    return fail(Code::PreconditionFailed, fmt::format("Unrecognised terms [{}] in user-limits", fmt::join(unknown, ",")));
  nlohmann::json limits = user_limits_.count(c.user) ? user_limits_.find(c.user)->second : nlohmann::json::object();
  if (c.clear == "all") limits = nlohmann::json::object();
  else if (!c.clear.empty()) limits.erase(c.clear);
  limits.update(c.set);
  if (limits.empty()) {
    if (user_limits_.erase(c.user)) forget_definition("user_limits", c.user);
  } else {
    // Stored as the whole state, so a restart rebuilds it from this one change.
    persist_definition("user_limits", c.user, SetUserLimits{c.user, "all", limits});
    user_limits_.insert_or_assign(c.user, limits);
  }
  log_.info("user limits user={} limits={}", c.user, limits.dump());
  return ok();
}

int64_t Catalog::user_limit(std::string_view user, std::string_view name) const {
  auto it = user_limits_.find(user);
  if (it == user_limits_.end()) return -1;
  auto v = it->second.find(name);
  return v == it->second.end() ? -1 : v->get<int64_t>();
}

// ---- start-up ------------------------------------------------------------------------

void Catalog::load(const BrokerConfig& cfg, const store::Snapshot* snap) {
  // The config's definitions are applied at every start and never stored; a failure here
  // is a config the parser should have refused.
  auto config = [this](const Change& c) {
    persist_ = false;
    auto r = apply(c);
    persist_ = true;
    if (!r.ok()) log_.error("config definition refused change={} code={} reason=\"{}\"", change_name(c), r.code, r.text);
  };
  for (const auto& v : cfg.vhosts) config(PutVhost{v, {}});
  if (snap) restore(*snap, cfg.policies);
  for (const auto& u : cfg.users) config(PutUser{u.name, u.password_hash, u.tags});
  for (const auto& p : cfg.permissions) config(SetPermissions{p.user, p.vhost, p.configure, p.write, p.read});
  for (const auto& p : cfg.policies.all()) config(to_change(p));
  if (!snap) return;
  persist_ = false;
  restore_definitions(*this, *snap, "user_limits");  // after the config's users (guest) exist
  for (auto& [name, vh] : vhosts_) vh->restore(*snap);
  persist_ = true;
  std::set<std::string> orphans;
  for (const auto& q : snap->queues)
    if (!vhosts_.count(q.vhost)) orphans.insert(q.vhost);
  for (const auto& v : orphans)
    log_.warn("store has queues of vhost \"{}\" which no longer exists; they stay on disk, unused", v);
  log_.info("restored from {}: {} exchanges, {} queues, {} bindings, {} messages, {} policies, {} definitions",
            opts_.store ? opts_.store->path() : "", snap->exchanges.size(), snap->queues.size(),
            snap->bindings.size(), snap->messages.size(), snap->policies.size(), snap->definitions.size());
}

void Catalog::restore(const store::Snapshot& snap, const PolicySet& config_policies) {
  persist_ = false;
  // Vhosts before what lives in them.
  for (const char* kind : {"vhost", "user", "permission", "parameter"}) restore_definitions(*this, snap, kind);
  // One in the config file wins over a stored policy of the same name; the stored copy it
  // replaces is dropped.
  for (const auto& r : snap.policies) {
    if (config_policies.find(r.vhost, r.name)) {
      opts_.store->delete_policy(r.vhost, r.name);
      continue;
    }
    nlohmann::json definition = nlohmann::json::parse(r.definition, nullptr, /*allow_exceptions=*/false);
    auto result = apply(SetPolicy{r.vhost, r.name, r.pattern, definition, r.priority, r.apply_to});
    if (!result.ok())
      log_.warn("stored policy \"{}\" of vhost \"{}\" not restored, it stays on disk, unused: {}", r.name, r.vhost,
                result.text);
  }
  persist_ = true;
}

// ---- snapshots of a replicated catalog -------------------------------------------------

std::vector<Change> Catalog::definitions() const {
  std::vector<Change> out;
  for (const auto& [name, vh] : vhosts_) out.push_back(PutVhost{name, {}});
  for (const auto& [name, u] : access_.users()) out.push_back(PutUser{u.name, u.password_hash, u.tags});
  for (const auto& [user, limits] : user_limits_) out.push_back(SetUserLimits{user, "all", limits});
  for (const auto& [key, perm] : access_.permissions())
    out.push_back(SetPermissions{key.first, key.second, perm.configure, perm.write, perm.read});
  for (const auto& [key, value] : parameters_) {
    const auto& [component, vhost, name] = key;
    out.push_back(SetParameter{component, vhost, name, value});
  }
  for (const auto& p : policies_.all()) out.push_back(to_change(p));
  for (const auto& [vname, vh] : vhosts_) {
    for (const auto& [name, ex] : vh->exchanges())
      if (!name.empty() && !name.starts_with("amq.")) out.push_back(DeclareExchange{vname, ex->definition()});
    for (const auto& [name, q] : vh->all_queues()) {
      QueueDefinition def = q->definition();
      def.args = {};  // derived again when applied
      out.push_back(DeclareQueue{vname, def, def.exclusive_owner});
    }
    for (const auto& [name, ex] : vh->exchanges()) {
      if (name.empty()) continue;  // the default exchange's bindings are implicit
      for (const auto& b : ex->bindings()) {
        const bool to_exchange = b.destination.exchange != nullptr;
        const std::string& dest = to_exchange ? b.destination.exchange->name() : b.destination.queue->definition().name;
        ExclusiveOwner by = to_exchange ? ExclusiveOwner{} : b.destination.queue->definition().exclusive_owner;
        out.push_back(Bind{vname, true, name, to_exchange, dest, b.key, b.arguments, by});
      }
    }
  }
  return out;
}

void Catalog::hold_stored_messages(const std::vector<store::MessageRecord>& messages) {
  for (const auto& m : messages)
    held_messages_[{m.vhost, m.queue}].push_back(
        {m.id, amqp::validate_properties(m.properties).priority, m.body_size});
}

std::vector<Catalog::StoredMessage> Catalog::claim_stored_messages(const std::string& vhost, const std::string& queue) {
  auto node = held_messages_.extract({vhost, queue});
  return node ? std::move(node.mapped()) : std::vector<StoredMessage>{};
}

void Catalog::reset(const std::vector<Change>& changes) {
  const bool was = persist_;
  persist_ = false;
  resetting_ = true;
  // The messages of durable queues homed here wait in the store for the queues to return.
  for (auto& [vname, vh] : vhosts_)
    for (const auto& [qname, q] : vh->queues())
      if (q->definition().durable)
        q->for_each_stored([&](const QueueEntry& e) {
          held_messages_[{vname, qname}].push_back({e.store_id, e.priority, e.body_size});
        });
  for (auto& [name, vh] : vhosts_) {
    if (observer_) observer_->vhost_deleted(name);
    vh->remove_all();
  }
  vhosts_.clear();
  policies_ = PolicySet{};
  parameters_.clear();
  user_limits_.clear();
  access_ = AccessControl(opts_.loopback_users);
  for (const auto& c : changes)
    if (auto r = apply(c); !r.ok())
      log_.error("snapshot change refused change={} code={} reason=\"{}\"", change_name(c), r.code, r.text);
  resetting_ = false;
  persist_ = was;
}

}  // namespace mqnode::broker
