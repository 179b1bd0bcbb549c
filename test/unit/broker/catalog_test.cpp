#include <doctest/doctest.h>

#include <random>
#include <sstream>

#include "amqp/codec.hpp"
#include "broker/catalog.hpp"
#include "broker/config.hpp"
#include "broker/raft_change_log.hpp"
#include "store/store.hpp"
#include "support/held_change_log.hpp"
#include "support/temp_store.hpp"

using namespace mqnode::broker;
using mqnode::amqp::FieldTable;

namespace {
constexpr uint16_t kNotFound = 404, kAccessRefused = 403, kLocked = 405, kPrecondition = 406;

// Everything a catalog holds, in one canonical text: two catalogs are in the same state
// exactly when their descriptions are equal.
std::string describe(const Catalog& c) {
  std::ostringstream out;
  for (const auto& [name, u] : c.access().users()) {
    out << "user " << name << " " << u.password_hash;
    for (const auto& t : u.tags) out << " " << t;
    out << "\n";
  }
  for (const auto& [key, p] : c.access().permissions())
    out << "perm " << key.first << "@" << key.second << " " << p.configure << "|" << p.write << "|" << p.read << "\n";
  for (const auto& p : c.policies().all())
    out << "policy " << p.vhost << "/" << p.name << " " << p.pattern << " " << p.definition.dump() << "\n";
  for (const auto& [key, v] : c.parameters())
    out << "param " << std::get<0>(key) << "/" << std::get<1>(key) << "/" << std::get<2>(key) << " " << v.dump() << "\n";
  for (const auto& [vname, vh] : c.vhosts()) {
    out << "vhost " << vname << "\n";
    for (const auto& [name, ex] : vh->exchanges()) {
      const auto& d = ex->definition();
      out << " exchange " << name << " " << d.type << d.durable << d.auto_delete << d.internal
          << " ae=" << ex->alternate_exchange() << "\n";
      std::vector<std::string> bindings;
      for (const auto& b : ex->bindings())
        bindings.push_back((b.destination.queue ? "q:" + b.destination.queue->definition().name
                                                : "x:" + b.destination.exchange->name()) + " " + b.key);
      std::sort(bindings.begin(), bindings.end());
      for (const auto& b : bindings) out << "  -> " << b << "\n";
    }
    for (const auto& [name, q] : vh->queues()) {
      const auto& d = q->definition();
      out << " queue " << name << " " << d.durable << d.auto_delete << " owner=" << d.exclusive_owner.node << "/"
          << d.exclusive_owner.connection << " max_length=" << d.args.max_length.value_or(-1) << "\n";
    }
  }
  return out.str();
}

struct Node {
  explicit Node(mqnode::store::Store* store = nullptr) : catalog({"n1", store}, mqnode::test::quiet_log()) {}
  Catalog catalog;
  ChangeResult apply(const Change& c) { return catalog.apply(c); }
};

FieldTable table(std::initializer_list<std::pair<const char*, mqnode::amqp::FieldValue>> kv) {
  FieldTable t;
  for (const auto& [k, v] : kv) t.set(k, v);
  return t;
}

// <name> declared by <by>, exclusive to it when <exclusive>.
DeclareQueue queue(const std::string& name, ExclusiveOwner by = {}, bool exclusive = false) {
  DeclareQueue c{"/", {}, by};
  c.def.name = name;
  if (exclusive) c.def.exclusive_owner = std::move(by);
  return c;
}

// Every alternative of Change, with every field set to something other than its default.
std::vector<Change> one_of_each() {
  DeclareQueue dq = queue("q", {"n2", 7}, true);
  dq.def.durable = true;
  dq.def.arguments = table({{"x-max-length", int64_t{5}}, {"x-queue-mode", "lazy"}});
  return {DeclareExchange{"v", {"e", "topic", true, true, true, table({{"alternate-exchange", "ae"}})}},
          DeleteExchange{"v", "e", true},
          dq,
          DeleteQueue{"v", "q", DeleteReason::OwnerGone, {"n3", 9}},
          Bind{"v", false, "src", true, "dst", "a.#", table({{"x-match", "any"}}), {"n1", 3}},
          SetPolicy{"v", "p", "^a", nlohmann::json{{"max-length", 3}}, 7, "queues"},
          ClearPolicy{"v", "p"},
          PutVhost{"v", "a vhost"},
          DeleteVhost{"v"},
          PutUser{"u", "hash", {"administrator", "monitoring"}},
          DeleteUser{"u"},
          SetPermissions{"u", "v", "c", "w", "r"},
          ClearPermissions{"u", "v"},
          SetParameter{"shovel", "v", "s1", nlohmann::json{{"src-uri", "amqp://"}}},
          ClearParameter{"shovel", "v", "s1"},
          SetUserLimits{"u", "max-channels", nlohmann::json{{"max-connections", 5}}}};
}
}  // namespace

TEST_CASE("a change survives encode and decode unchanged, every kind") {
  auto all = one_of_each();
  REQUIRE(all.size() == std::variant_size_v<Change>);
  for (const auto& c : all) {
    CAPTURE(change_name(c));
    auto bytes = encode_change(c);
    Change back = decode_change(bytes);
    CHECK(back.index() == c.index());
    CHECK(encode_change(back) == bytes);  // byte-identical: every field came back
  }
}

TEST_CASE("an unreadable change is refused whole, with the reason") {
  auto bytes = encode_change(PutVhost{"v", ""});
  SUBCASE("truncated") {
    bytes.resize(bytes.size() - 1);
    CHECK_THROWS_AS(decode_change(bytes), ChangeDecodeError);
  }
  SUBCASE("trailing bytes") {
    bytes.push_back(0);
    CHECK_THROWS_WITH_AS(decode_change(bytes), "trailing bytes after the change", ChangeDecodeError);
  }
  SUBCASE("unknown kind") {
    std::vector<uint8_t> out;
    mqnode::amqp::Writer(out).table(table({{"v", int64_t{1}}, {"op", "launch_rockets"}}));
    CHECK_THROWS_WITH_AS(decode_change(out), "unknown change 'launch_rockets'", ChangeDecodeError);
  }
  SUBCASE("a newer encoding") {
    std::vector<uint8_t> out;
    mqnode::amqp::Writer(out).table(table({{"v", int64_t{2}}, {"op", "put_vhost"}, {"name", "v"}}));
    CHECK_THROWS_AS(decode_change(out), ChangeDecodeError);
  }
  SUBCASE("a field of the wrong type") {
    std::vector<uint8_t> out;
    mqnode::amqp::Writer(out).table(
        table({{"v", int64_t{1}}, {"op", "put_vhost"}, {"name", int64_t{3}}, {"description", ""}}));
    CHECK_THROWS_WITH_AS(decode_change(out), "change field 'name' is not a string", ChangeDecodeError);
  }
}

TEST_CASE("apply validates as RabbitMQ does") {
  Node n;
  REQUIRE(n.apply(PutVhost{"/", ""}).ok());
  const ExclusiveOwner alice{"n1", 1}, bob{"n1", 2};

  SUBCASE("exchanges") {
    auto r = n.apply(DeclareExchange{"/", {"e", "direct", true, false, false, {}}});
    CHECK(r.ok());
    CHECK(r.created);
    r = n.apply(DeclareExchange{"/", {"e", "direct", true, false, false, {}}});
    CHECK(r.ok());
    CHECK_FALSE(r.created);
    r = n.apply(DeclareExchange{"/", {"e", "fanout", true, false, false, {}}});
    CHECK(r.code == kPrecondition);
    CHECK(r.text == "inequivalent arg 'type' for exchange 'e' in vhost '/': received 'fanout' but current is 'direct'");
    CHECK(n.apply(DeclareExchange{"/", {"amq.direct", "direct", true, false, false, {}}}).ok());  // equivalent
    CHECK(n.apply(DeclareExchange{"/", {"amq.new", "direct", true, false, false, {}}}).code == kAccessRefused);
    CHECK(n.apply(DeclareExchange{"/", {"x", "bogus", true, false, false, {}}}).code == 503);
    CHECK(n.apply(DeclareExchange{"nope", {"x", "direct", true, false, false, {}}}).code == kNotFound);
    CHECK(n.apply(DeleteExchange{"/", "amq.direct", false}).code == kAccessRefused);
    CHECK(n.apply(DeleteExchange{"/", "", false}).code == kAccessRefused);
    CHECK(n.apply(DeleteExchange{"/", "missing", false}).ok());
    REQUIRE(n.apply(queue("q")).ok());
    REQUIRE(n.apply(Bind{"/", true, "e", false, "q", "k", {}, {}}).ok());
    CHECK(n.apply(DeleteExchange{"/", "e", true}).code == kPrecondition);  // if-unused: it has a binding
    CHECK(n.apply(DeleteExchange{"/", "e", false}).ok());
    CHECK(n.catalog.find_vhost("/")->find_exchange("e") == nullptr);
  }
  SUBCASE("queues and exclusivity") {
    CHECK(n.apply(queue("mine", alice, true)).created);
    CHECK(n.apply(queue("mine", bob, true)).code == kLocked);
    CHECK(n.apply(queue("mine", bob)).code == kLocked);  // a non-exclusive declarer is locked out too
    CHECK(n.apply(queue("mine", alice, true)).ok());
    CHECK(n.apply(queue("mine", alice)).ok());  // the owner may redeclare it without the flag
    CHECK(n.apply(queue("shared")).ok());
    CHECK(n.apply(queue("shared", alice, true)).code == kLocked);  // exclusive redeclare of a shared queue
    auto lazy = queue("shared");
    lazy.def.arguments = table({{"x-max-length", int64_t{1}}});
    CHECK(n.apply(lazy).code == kPrecondition);
    auto bad = queue("bad");
    bad.def.arguments = table({{"x-max-length", "ten"}});
    CHECK(n.apply(bad).code == kPrecondition);
    CHECK(n.apply(Bind{"/", true, "amq.direct", false, "mine", "k", {}, bob}).code == kLocked);
    CHECK(n.apply(DeleteQueue{"/", "mine", DeleteReason::Client, bob}).code == kLocked);
    // The owner's connection went, but the queue was redeclared by someone else meanwhile:
    // not the old owner's to delete.
    CHECK(n.apply(DeleteQueue{"/", "mine", DeleteReason::OwnerGone, bob}).ok());
    CHECK(n.catalog.find_vhost("/")->find_queue("mine") != nullptr);
    CHECK(n.apply(DeleteQueue{"/", "mine", DeleteReason::OwnerGone, alice}).ok());
    CHECK(n.catalog.find_vhost("/")->find_queue("mine") == nullptr);
  }
  SUBCASE("bindings") {
    REQUIRE(n.apply(queue("q")).ok());
    CHECK(n.apply(Bind{"/", true, "", false, "q", "k", {}, {}}).code == kAccessRefused);
    CHECK(n.apply(Bind{"/", true, "amq.direct", false, "nope", "k", {}, {}}).code == kNotFound);
    CHECK(n.apply(Bind{"/", true, "nope", false, "q", "k", {}, {}}).code == kNotFound);
    CHECK(n.apply(Bind{"/", true, "amq.headers", false, "q", "", table({{"x-match", "some"}}), {}}).code ==
          kPrecondition);
    CHECK(n.apply(Bind{"/", true, "amq.topic", true, "amq.direct", "#", {}, {}}).ok());
  }
  SUBCASE("users, vhosts, permissions, parameters") {
    CHECK(n.apply(SetPermissions{"nobody", "/", ".*", ".*", ".*"}).code == kNotFound);
    REQUIRE(n.apply(PutUser{"alice", hash_password("pw"), {"management"}}).ok());
    CHECK(n.apply(PutUser{"eve", "not a hash", {}}).code == kPrecondition);
    CHECK(n.apply(SetPermissions{"alice", "nope", ".*", ".*", ".*"}).code == kNotFound);
    CHECK(n.apply(SetPermissions{"alice", "/", "(", ".*", ".*"}).code == kPrecondition);
    REQUIRE(n.apply(SetPermissions{"alice", "/", ".*", ".*", ".*"}).ok());
    CHECK(n.catalog.access().can_access_vhost("alice", "/"));
    REQUIRE(n.apply(PutVhost{"v2", ""}).ok());
    REQUIRE(n.apply(SetPermissions{"alice", "v2", ".*", ".*", ".*"}).ok());
    REQUIRE(n.apply(SetParameter{"shovel", "v2", "s", nlohmann::json{{"a", 1}}}).ok());
    REQUIRE(n.apply(SetPolicy{"v2", "p", ".*", nlohmann::json{{"max-length", 1}}, 0, "all"}).ok());
    CHECK(n.apply(SetPolicy{"v2", "bad", ".*", nlohmann::json{{"max-length", "x"}}, 0, "all"}).code == kPrecondition);
    CHECK(n.apply(SetPolicy{"nope", "p", ".*", nlohmann::json{{"max-length", 1}}, 0, "all"}).code == kNotFound);
    CHECK(n.apply(ClearPolicy{"v2", "nope"}).code == kNotFound);
    // Deleting a vhost takes everything in it along.
    REQUIRE(n.apply(DeleteVhost{"v2"}).ok());
    CHECK_FALSE(n.catalog.access().can_access_vhost("alice", "v2"));
    CHECK(n.catalog.parameters().empty());
    CHECK(n.catalog.policies().all().empty());
    CHECK(n.apply(DeleteVhost{"v2"}).code == kNotFound);
    REQUIRE(n.apply(DeleteUser{"alice"}).ok());
    CHECK_FALSE(n.catalog.access().can_access_vhost("alice", "/"));
  }
  SUBCASE("user limits: merged, cleared one or all, gone with the user; RabbitMQ's texts") {
    CHECK(n.apply(SetUserLimits{"nobody", "", nlohmann::json{{"max-connections", 1}}}).code == kNotFound);
    REQUIRE(n.apply(PutUser{"bob", hash_password("pw"), {}}).ok());
    CHECK(n.catalog.user_limit("bob", "max-connections") == -1);
    auto bad = n.apply(SetUserLimits{"bob", "", nlohmann::json{{"max-connections", "x"}}});
    CHECK(bad.code == kPrecondition);
    CHECK(bad.text == "max-connections should be a number, actually was <<\"x\">>");
    CHECK(n.apply(SetUserLimits{"bob", "", nlohmann::json{{"max-connections", 1}, {"foo", 2}}}).text ==
          "Unrecognised terms [{<<\"foo\">>,2}] in user-limits");
    CHECK(n.catalog.user_limits().empty());  // a refused definition sets nothing
    REQUIRE(n.apply(SetUserLimits{"bob", "", nlohmann::json{{"max-connections", 10}}}).ok());
    REQUIRE(n.apply(SetUserLimits{"bob", "", nlohmann::json{{"max-channels", 20}}}).ok());
    CHECK(n.catalog.user_limit("bob", "max-connections") == 10);
    CHECK(n.catalog.user_limit("bob", "max-channels") == 20);
    REQUIRE(n.apply(SetUserLimits{"bob", "max-connections", nlohmann::json::object()}).ok());
    CHECK(n.catalog.user_limit("bob", "max-connections") == -1);
    CHECK(n.catalog.user_limit("bob", "max-channels") == 20);
    REQUIRE(n.apply(SetUserLimits{"bob", "all", nlohmann::json::object()}).ok());
    CHECK(n.catalog.user_limits().empty());
    REQUIRE(n.apply(SetUserLimits{"bob", "", nlohmann::json{{"max-channels", 3}}}).ok());
    REQUIRE(n.apply(DeleteUser{"bob"}).ok());
    CHECK(n.catalog.user_limits().empty());
  }
}

TEST_CASE("the same changes give the same state on every node, whatever they are") {
  // Two nodes apply one random history (valid and invalid changes mixed); the second gets
  // each change through the encoding, as a cluster log delivers it. They must agree on
  // every result and end in the same state.
  std::mt19937 rng(20261203);
  auto pick = [&](std::initializer_list<const char*> xs) { return std::string(*(xs.begin() + rng() % xs.size())); };
  Node a, b;
  for (int i = 0; i < 3000; ++i) {
    auto v = pick({"/", "v2"});
    auto q = pick({"q1", "q2", "q3", "amq.q"});
    auto e = pick({"e1", "e2", "amq.direct", "amq.topic", ""});
    ExclusiveOwner who{"n" + std::to_string(rng() % 2), rng() % 3};
    Change c;
    switch (rng() % 12) {
      case 0: c = PutVhost{v, ""}; break;
      case 1: c = DeleteVhost{v}; break;
      case 2: c = DeclareExchange{v, {e, pick({"direct", "topic", "fanout"}), rng() % 2 == 0, rng() % 2 == 0, false, {}}}; break;
      case 3: c = DeleteExchange{v, e, rng() % 2 == 0}; break;
      case 4: c = queue(q, who, rng() % 2 == 0); std::get<DeclareQueue>(c).vhost = v; break;
      case 5: c = DeleteQueue{v, q, static_cast<DeleteReason>(rng() % 4), who}; break;
      case 6:
      case 7: c = Bind{v, rng() % 3 != 0, e, false, q, pick({"a", "a.*", "#"}), {}, who}; break;
      case 8: c = SetPolicy{v, "p", pick({"^q1$", ".*"}), nlohmann::json{{"max-length", rng() % 4}}, 0, "all"}; break;
      case 9: c = ClearPolicy{v, "p"}; break;
      case 10: c = PutUser{pick({"u1", "u2"}), "", {}}; break;
      case 11: c = SetPermissions{pick({"u1", "u2"}), v, ".*", "^a", ""}; break;
    }
    auto ra = a.apply(c);
    auto rb = b.apply(decode_change(encode_change(c)));
    REQUIRE(ra.code == rb.code);
    REQUIRE(ra.created == rb.created);
  }
  CHECK(describe(a.catalog) == describe(b.catalog));
  CHECK(describe(a.catalog).find("vhost") != std::string::npos);  // the history built something
  // A replicated catalog's snapshot: its definitions, encoded, rebuild the same state in a
  // catalog that held something else before.
  Node c;
  c.apply(PutVhost{"old", ""});
  c.catalog.reset(decode_definitions(encode_definitions(a.catalog.definitions())));
  CHECK(describe(c.catalog) == describe(a.catalog));
}

TEST_CASE("runtime definitions persist in the store and come back at start; the config file wins") {
  mqnode::test::TempDir dir;
  asio::io_context io;
  auto path = (dir.path / "mqnode.db").string();
  BrokerConfig cfg;  // vhost "/" and nothing else
  cfg.users = {{"admin", hash_password("from-config"), {"administrator"}}};
  std::string before;
  {
    mqnode::store::Store store(io, path, mqnode::test::quiet_log());
    Node n(&store);
    auto snap = store.load();
    n.catalog.load(cfg, &snap);
    REQUIRE(n.apply(PutVhost{"v2", ""}).ok());
    REQUIRE(n.apply(PutUser{"alice", hash_password("pw"), {"monitoring"}}).ok());
    REQUIRE(n.apply(PutUser{"admin", hash_password("runtime"), {}}).ok());  // the config's comes back
    REQUIRE(n.apply(SetPermissions{"alice", "v2", ".*", "", "^r"}).ok());
    REQUIRE(n.apply(SetParameter{"federation-upstream", "v2", "up", nlohmann::json{{"uri", "amqp://x"}}}).ok());
    REQUIRE(n.apply(SetPolicy{"v2", "lim", "^q", nlohmann::json{{"max-length", 2}}, 1, "queues"}).ok());
    REQUIRE(n.apply(DeclareExchange{"v2", {"ex", "topic", true, false, false, {}}}).ok());
    auto q = queue("q1");
    q.vhost = "v2";
    q.def.durable = true;
    REQUIRE(n.apply(q).ok());
    auto transient = queue("gone");
    transient.vhost = "v2";
    REQUIRE(n.apply(transient).ok());
    REQUIRE(n.apply(Bind{"v2", true, "ex", false, "q1", "a.#", {}, {}}).ok());
    REQUIRE(n.apply(PutUser{"bob", "", {}}).ok());
    REQUIRE(n.apply(DeleteUser{"bob"}).ok());
    REQUIRE(n.apply(DeleteQueue{"v2", "gone", DeleteReason::Client, {}}).ok());
    bool flushed = false;
    store.after_commit([&](bool) { flushed = true; });
    mqnode::test::run_until(io, [&] { return flushed; });
    before = describe(n.catalog);
  }
  mqnode::store::Store store(io, path, mqnode::test::quiet_log());
  Node n(&store);
  auto snap = store.load();
  n.catalog.load(cfg, &snap);
  std::string after = describe(n.catalog);
  // Everything came back except the runtime password of "admin": the config file's.
  CHECK(n.catalog.access().find_user("bob") == nullptr);
  std::string why;
  CHECK(n.catalog.access().authenticate("admin", "from-config", true, why) != nullptr);
  CHECK(n.catalog.access().authenticate("alice", "pw", true, why) != nullptr);
  auto strip_admin = [](std::string s) {
    auto at = s.find("user admin ");
    return s.erase(at, s.find('\n', at) - at);
  };
  CHECK(strip_admin(after) == strip_admin(before));
  CHECK(after.find("queue gone") == std::string::npos);
  CHECK(after.find("-> q:q1 a.#") != std::string::npos);
}

TEST_CASE("propose goes through the change log when one is plugged in, and waits for it") {
  mqnode::test::HeldChangeLog log;
  Node n;
  REQUIRE(n.apply(PutVhost{"/", ""}).ok());
  n.catalog.set_change_log(&log);
  std::optional<ChangeResult> outcome;
  n.catalog.propose(queue("q"), [&](ChangeResult r) { outcome = r; });
  CHECK_FALSE(outcome);  // nothing applied before the log orders it
  CHECK(n.catalog.find_vhost("/")->find_queue("q") == nullptr);
  REQUIRE(log.held.size() == 1);
  log.deliver_next(n.catalog);
  REQUIRE(outcome);
  CHECK(outcome->created);
  CHECK(n.catalog.find_vhost("/")->find_queue("q") != nullptr);
}

TEST_CASE("on a single node a stored change is answered only once the store committed it") {
  mqnode::test::TempDir dir;
  asio::io_context io;
  auto path = (dir.path / "mqnode.db").string();
  {
    mqnode::store::Store store(io, path, mqnode::test::quiet_log());
    Node n(&store);
    auto snap = store.load();
    n.catalog.load(BrokerConfig{}, &snap);
    REQUIRE(n.apply(PutUser{"gone", "", {}}).ok());
    std::optional<ChangeResult> deleted;
    n.catalog.propose(DeleteUser{"gone"}, [&](ChangeResult r) { deleted = r; });
    CHECK_FALSE(deleted);  // the delete is queued for the store thread, not yet committed
    mqnode::test::run_until(io, [&] { return deleted.has_value(); });
    CHECK(deleted->ok());
    // Read back from a second connection to the file while the first is still open:
    // what the answer vouched for is on disk (a kill -9 now would keep it).
    mqnode::store::Store reader(io, path, mqnode::test::quiet_log());
    Node m(&reader);
    auto again = reader.load();
    m.catalog.load(BrokerConfig{}, &again);
    CHECK(m.catalog.access().find_user("gone") == nullptr);
    // A change that stores nothing (a transient queue) is answered at once.
    std::optional<ChangeResult> declared;
    n.catalog.propose(queue("transient"), [&](ChangeResult r) { declared = r; });
    CHECK(declared);
  }
}
