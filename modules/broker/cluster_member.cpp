#include "broker/cluster_member.hpp"

#include <fstream>
#include <system_error>

#include <fmt/format.h>

#include "amqp/reply_code.hpp"
#include "cluster/cookie.hpp"

namespace mqnode::broker {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr uint16_t kInternalError = static_cast<uint16_t>(amqp::ConnectionReplyCode::InternalError);
constexpr std::chrono::milliseconds kStatusTimeout{2000};

// The node's raft id: a random number kept in <data_dir>/node_id, made on the first start.
uint64_t load_or_create_id(const std::filesystem::path& file) {
  uint64_t id = 0;
  if (std::ifstream in(file); in >> id && id != 0) return id;
  const auto nonce = cluster::random_nonce();
  for (int i = 0; i < 8; ++i) id = (id << 8) | nonce[static_cast<std::size_t>(i)];
  id = (id >> 1) + 1;  // > 0, and within what every JSON reader takes as an integer
  std::ofstream out(file, std::ios::trunc);
  out << id << "\n";
  if (!out.flush()) throw std::runtime_error(fmt::format("cannot write the node id to {}", file.string()));
  return id;
}

std::string role_name(cluster::Role r) { return r == cluster::Role::Voter ? "disc" : "ram"; }

}  // namespace

ClusterMember::ClusterMember(asio::io_context& io, core::NodeInfo node, cluster::ClusterConfig cfg, bool ram,
                             core::Logger log)
    : io_(io), node_(std::move(node)), cfg_(std::move(cfg)), ram_(ram), log_(std::move(log)), retry_(io) {}

ClusterMember::~ClusterMember() { close(); }

std::filesystem::path ClusterMember::join_file() const { return std::filesystem::path(node_.data_dir) / "cluster_join.json"; }
std::filesystem::path ClusterMember::raft_dir() const { return std::filesystem::path(node_.data_dir) / "raft"; }

void ClusterMember::open() {
  const auto cookie = cluster::Cookie::load_or_create(
      cfg_.cookie_file.empty() ? cluster::Cookie::default_path(node_.data_dir) : std::filesystem::path(cfg_.cookie_file));
  cookie_path_ = cookie.path().string();
  cluster::LinkConfig lc;
  lc.self.name = node_.name;
  lc.self.id = load_or_create_id(std::filesystem::path(node_.data_dir) / "node_id");
  lc.self.address = cfg_.advertise;
  if (lc.self.address.empty() && cfg_.bind.host != "0.0.0.0" && cfg_.bind.host != "::")
    lc.self.address = cfg_.bind.to_string();
  if (lc.self.address.empty()) {
    try {
      lc.self.address = cluster::resolve_node(fmt::format("{}:{}", node_.name, cfg_.bind.port));
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(fmt::format("/cluster/advertise: none given, /cluster/bind is a wildcard and {}; set "
                                           "/cluster/advertise to the address other nodes reach this one at",
                                           e.what()));
    }
  }
  lc.cookie = cookie.secret();
  lc.cookie_path = cookie_path_;
  links_ = cluster::Links::create(io_, std::move(lc), log_.child("links"));
  links_->listen(cfg_.bind);
  cluster::serve_peer(*links_, [this](const cluster::NodeIdentity& from, const json& req, cluster::PeerReplyFn reply) {
    on_peer(from, req, std::move(reply));
  });
  log_.info("cluster port open name={} id={} address={}", links_->self().name, links_->self().id,
            links_->self().address);
}

std::string ClusterMember::address_of(const std::string& node) const {
  if (!links_) return {};
  if (node == links_->self().name) return links_->self().address;
  if (raft_)
    for (const auto& m : raft_->status().members)
      if (raft_->name_of(m.id) == node) return m.address;
  // A member whose name raft has not learnt yet: names are host names, as in RabbitMQ.
  try {
    return cluster::resolve_node(fmt::format("{}:{}", node, cfg_.bind.port));
  } catch (const std::runtime_error&) {
    return {};
  }
}

void ClusterMember::start(Catalog& catalog, const BrokerConfig& definitions) {
  catalog_ = &catalog;
  definitions_ = &definitions;
  definitions_proposed_ = false;
  std::error_code ec;
  const bool empty = !std::filesystem::exists(raft_dir(), ec) || std::filesystem::is_empty(raft_dir(), ec);
  if (empty && !cfg_.seeds.empty() && !std::filesystem::exists(join_file(), ec)) {
    json seeds = json::array();
    for (const auto& s : cfg_.seeds) seeds.push_back(cluster::resolve_node(s));
    std::ofstream(join_file()) << json{{"seeds", seeds}, {"ram", ram_}}.dump() << "\n";
  }
  const bool joining = std::filesystem::exists(join_file(), ec);
  // Raft rebuilds the catalog: its snapshot, then its log.
  catalog.reset({});
  auto log = std::make_unique<RaftChangeLog>(io_, catalog, log_.child("catalog"));
  log->set_forward([this, alive = std::weak_ptr<bool>(alive_)](const cluster::NotLeader& leader,
                                                               std::vector<uint8_t> change, ProposeDone done) {
    if (alive.expired()) return done(change_result_of(leader));
    forward(leader, std::move(change), std::move(done));
  });
  cluster::RaftNodeConfig rc;
  rc.dir = raft_dir();
  rc.election_timeout_ms = cfg_.election_timeout_ms;
  rc.heartbeat_timeout_ms = cfg_.heartbeat_timeout_ms;
  rc.snapshot_threshold = cfg_.snapshot_threshold;
  auto raft = std::make_unique<cluster::RaftNode>(io_, links_, rc, *log, log_.child("raft"));
  raft->start(empty && !joining);
  log->set_raft(raft.get());
  catalog.set_change_log(log.get());
  change_log_ = std::move(log);
  raft_ = std::move(raft);
  if (joining) announce();
}

void ClusterMember::stop() {
  if (!raft_) return;
  retry_.cancel();
  change_log_->set_raft(nullptr);
  raft_->stop();
  raft_.reset();
}

void ClusterMember::close() {
  stop();
  if (!links_) return;
  cluster::serve_peer(*links_, nullptr);
  links_->stop();
  links_.reset();
}

CommandReply ClusterMember::reset() {
  if (raft_) return {409, "Error: the broker app is running; stop it first (mqnode ctl stop_app)", {}};
  std::error_code ec;
  std::filesystem::remove_all(raft_dir(), ec);
  if (ec) return {500, fmt::format("Error: cannot remove {}: {}", raft_dir().string(), ec.message()), {}};
  std::filesystem::remove(join_file(), ec);
  log_.info("reset: raft state and pending join forgotten dir={}", raft_dir().string());
  return {200, fmt::format("Resetting node {} ...", node_.name), {}};
}

void ClusterMember::join(const std::string& node, std::optional<bool> ram, CommandDone done) {
  if (raft_) return done({409, "Error: the broker app is running; stop it first (mqnode ctl stop_app)", {}});
  std::string address;
  try {
    address = cluster::resolve_node(node);
  } catch (const std::runtime_error& e) {
    return done({503, fmt::format("Error: unable to reach node {}: {}", node, e.what()), {}});
  }
  auto itself = [this] {
    return CommandReply{422, fmt::format("Error: cannot cluster node {} with itself", node_.name), {}};
  };
  if (address == links_->self().address) return done(itself());
  const bool as_ram = ram.value_or(ram_);
  cluster::peer_call(
      *links_, address, json{{"op", "info"}},
      [this, alive = std::weak_ptr<bool>(alive_), node, address, as_ram, itself, done](std::optional<json> reply,
                                                                                        std::string error) {
        if (alive.expired()) return;
        if (!reply) {
          if (error.find("cookie") != std::string::npos)
            return done({503,
                         fmt::format("Error: authentication with node {} ({}) failed: the cookies differ.\n{}\nCopy the "
                                     "cookie file of {} to {} on this node (mode 0400), restart this node and run "
                                     "join_cluster again.",
                                     node, address, error, node, cookie_path_),
                         {}});
          if (error.find("name") != std::string::npos && error.find("clash") != std::string::npos) return done(itself());
          return done({503, fmt::format("Error: unable to reach node {} ({}): {}", node, address, error), {}});
        }
        if (reply->value("id", uint64_t{0}) == links_->self().id) return done(itself());
        if (auto r = reset(); r.status != 200) return done(r);
        std::ofstream out(join_file(), std::ios::trunc);
        out << json{{"seeds", json::array({address})}, {"ram", as_ram}}.dump() << "\n";
        if (!out.flush()) return done({500, fmt::format("Error: cannot write {}", join_file().string()), {}});
        log_.info("join pending seed={} address={} as={}", reply->value("name", node), address, as_ram ? "ram" : "disc");
        done({200,
              fmt::format("Clustering node {} with {} ...", node_.name, reply->value("name", node)),
              {}});
      });
}

void ClusterMember::announce() {
  std::ifstream in(join_file());
  auto pending = json::parse(in, nullptr, false);
  if (!raft_ || !pending.is_object() || !pending.contains("seeds") || !pending["seeds"].is_array() ||
      pending["seeds"].empty())
    return;
  // Each attempt asks the next seed (a redirect puts the leader first).
  auto seeds = pending["seeds"];
  const std::string seed = seeds[0].get<std::string>();
  json rotated = json::array();
  for (std::size_t i = 1; i < seeds.size(); ++i) rotated.push_back(seeds[i]);
  rotated.push_back(seed);
  const bool ram = pending.value("ram", ram_);
  json request{{"op", "join"},
               {"id", links_->self().id},
               {"address", links_->self().address},
               {"name", links_->self().name},
               {"role", ram ? "ram" : "disc"}};
  cluster::peer_call(*links_, seed, std::move(request),
                     [this, alive = std::weak_ptr<bool>(alive_), seed, rotated, ram](std::optional<json> reply,
                                                                                     std::string error) mutable {
                       if (alive.expired() || !raft_) return;
                       std::error_code ec;
                       if (reply && reply->value("ok", false)) {
                         std::filesystem::remove(join_file(), ec);
                         log_.info("joined the cluster seed={} as={}", seed, ram ? "ram" : "disc");
                         return;
                       }
                       if (reply && reply->contains("redirect")) {
                         rotated.insert(rotated.begin(), (*reply)["redirect"]);
                       } else {
                         log_.warn("join not done yet seed={} reason=\"{}\" retry_in=1s", seed,
                                   reply ? reply->value("error", std::string("refused")) : error);
                       }
                       std::ofstream(join_file(), std::ios::trunc) << json{{"seeds", rotated}, {"ram", ram}}.dump() << "\n";
                       retry_.expires_after(1s);
                       retry_.async_wait([this, alive](const asio::error_code& e) {
                         if (!e && !alive.expired()) announce();
                       });
                     });
}

json ClusterMember::info() const {
  json out{{"name", node_.name},
           {"id", links_->self().id},
           {"address", links_->self().address},
           {"running", raft_ != nullptr},
           {"ram", ram_},
           {"version", MQNODE_VERSION}};
  if (raft_) raft_->dump(out["raft"]);
  return out;
}

void ClusterMember::on_peer(const cluster::NodeIdentity& from, const json& request, cluster::PeerReplyFn reply) {
  const std::string op = request.value("op", std::string{});
  if (op == "info") return reply(info());
  if (op == "join") return on_join_request(request, std::move(reply));
  if (op == "propose") {
    if (!raft_ || !request.contains("change") || !request["change"].is_binary())
      return reply(json{{"code", kInternalError},
                        {"text", fmt::format("metadata change refused: node {} is not running its broker app, retry",
                                             node_.name)},
                        {"created", false}});
    change_log_->submit_local(request["change"].get_binary(), [reply = std::move(reply)](ChangeResult r, uint64_t index) {
      reply(json{{"code", r.code}, {"text", r.text}, {"created", r.created}, {"index", index}});
    });
    return;
  }
  log_.warn("peer request unknown op=\"{}\" from={}", op, from.name);
  reply(json{{"error", fmt::format("unknown request \"{}\"", op)}});
}

void ClusterMember::on_join_request(const json& request, cluster::PeerReplyFn reply) {
  if (!raft_) return reply(json{{"error", fmt::format("node {} is not running its broker app", node_.name)}});
  const uint64_t id = request.value("id", uint64_t{0});
  const std::string address = request.value("address", std::string{});
  const auto role = request.value("role", std::string{}) == "ram" ? cluster::Role::Standby : cluster::Role::Voter;
  if (id == 0 || address.empty()) return reply(json{{"error", "join request without id or address"}});
  const auto& st = raft_->status();
  for (const auto& m : st.members)
    if (m.id == id && m.role == role) return reply(json{{"ok", true}});
  if (!st.serving) {
    if (st.leader_id != 0 && st.leader_address != links_->self().address)
      return reply(json{{"redirect", st.leader_address}});
    return reply(json{{"error", "the cluster has no leader now, retry"}});
  }
  log_.info("adding member id={} name={} address={} as={}", id, request.value("name", std::string{}), address,
            role_name(role));
  auto answer = [reply](const cluster::ProposeResult& r) {
    if (std::holds_alternative<cluster::Committed>(r)) return reply(json{{"ok", true}});
    if (const auto* n = std::get_if<cluster::NotLeader>(&r); n && !n->leader_address.empty())
      return reply(json{{"redirect", n->leader_address}});
    reply(json{{"error", change_result_of(r).text}});
  };
  // A node added before (as a spare whose promotion did not finish, say) is only assigned.
  raft_->add_member(id, address, role, [this, alive = std::weak_ptr<bool>(alive_), id, role, answer](cluster::ProposeResult r) {
    if (alive.expired() || !raft_ || !std::holds_alternative<cluster::Failed>(r)) return answer(r);
    raft_->assign_role(id, role, answer);
  });
}

void ClusterMember::forward(const cluster::NotLeader& leader, std::vector<uint8_t> change, ProposeDone done) {
  if (leader.leader_address.empty() || !links_) return done(change_result_of(leader));
  const std::string who = leader.leader_name.empty() ? leader.leader_address : leader.leader_name;
  cluster::peer_call(
      *links_, leader.leader_address, json{{"op", "propose"}, {"change", json::binary(std::move(change))}},
      [this, alive = std::weak_ptr<bool>(alive_), done = std::move(done), who](std::optional<json> reply,
                                                                              std::string error) {
        if (!reply || !reply->contains("code"))
          return done(ChangeResult::error(
              kInternalError, fmt::format("metadata change forwarded to the leader {}, outcome unknown ({}), retry", who,
                                          reply ? reply->value("error", std::string("bad reply")) : error)));
        ChangeResult r{reply->value("code", kInternalError), reply->value("text", std::string{}),
                       reply->value("created", false)};
        // The proposer reads its own write here: answer once this node applied it too.
        const uint64_t index = reply->value("index", uint64_t{0});
        if (alive.expired() || !change_log_ || index == 0) return done(std::move(r));
        change_log_->when_applied(index, [done, r] { done(r); });
      });
}

void ClusterMember::status(CommandDone done) {
  struct Collect {
    json body;
    std::size_t waiting = 0;
    CommandDone done;
  };
  auto c = std::make_shared<Collect>();
  c->done = std::move(done);
  const json self = info();
  c->body = {{"node", node_.name},
             {"cluster_name", node_.name},
             {"running", raft_ != nullptr},
             {"disk_nodes", json::array()},
             {"ram_nodes", json::array()},
             {"running_nodes", json::array()},
             {"versions", json::object()}};
  std::vector<cluster::Member> members;
  if (raft_) {
    members = raft_->status().members;
    if (auto leader = raft_->status().leader_id) {
      const std::string name = leader == links_->self().id ? node_.name : raft_->name_of(leader);
      c->body["leader"] = name;
    }
  } else {
    members.push_back({links_->self().id, links_->self().address, ram_ ? cluster::Role::Standby : cluster::Role::Voter});
  }
  auto finish = [](Collect& col) {
    if (--col.waiting != 0) return;
    for (const char* k : {"disk_nodes", "ram_nodes", "running_nodes"}) {
      auto& a = col.body[k];
      std::sort(a.begin(), a.end());
    }
    col.done({200, {}, col.body});
  };
  c->waiting = members.size() + 1;
  for (const auto& m : members) {
    auto record = [c, m, finish](const std::string& name, bool running, const std::string& version) {
      c->body[m.role == cluster::Role::Voter ? "disk_nodes" : "ram_nodes"].push_back(name);
      if (running) {
        c->body["running_nodes"].push_back(name);
        c->body["versions"][name] = version;
      }
      finish(*c);
    };
    if (m.id == links_->self().id) {
      record(node_.name, raft_ != nullptr, MQNODE_VERSION);
      continue;
    }
    const std::string known = raft_ && !raft_->name_of(m.id).empty() ? raft_->name_of(m.id) : m.address;
    cluster::peer_call(
        *links_, m.address, json{{"op", "info"}},
        [record, known](std::optional<json> reply, std::string) {
          if (!reply) return record(known, false, {});
          record(reply->value("name", known), reply->value("running", false), reply->value("version", std::string{}));
        },
        kStatusTimeout);
  }
  finish(*c);
}

void ClusterMember::tick() {
  if (!raft_ || definitions_proposed_ || !raft_->status().serving || !catalog_ || !definitions_) return;
  definitions_proposed_ = true;
  // The config file's definitions, proposed only when missing: the cluster's own state
  // (changed at run time, maybe) wins over a file that every node reads at every start.
  std::vector<Change> missing;
  const BrokerConfig& d = *definitions_;
  for (const auto& v : d.vhosts)
    if (!catalog_->find_vhost(v)) missing.push_back(PutVhost{v, {}});
  for (const auto& u : d.users)
    if (!catalog_->access().find_user(u.name)) missing.push_back(PutUser{u.name, u.password_hash, u.tags});
  const auto perms = catalog_->access().permissions();
  for (const auto& p : d.permissions)
    if (std::none_of(perms.begin(), perms.end(), [&](const auto& kv) { return kv.first == std::pair(p.user, p.vhost); }))
      missing.push_back(SetPermissions{p.user, p.vhost, p.configure, p.write, p.read});
  for (const auto& p : d.policies.all())
    if (!catalog_->policies().find(p.vhost, p.name))
      missing.push_back(SetPolicy{p.vhost, p.name, p.pattern, p.definition, p.priority, apply_to_name(p.apply_to)});
  for (auto& c : missing) {
    const std::string what = change_name(c);
    catalog_->propose(std::move(c), [this, alive = std::weak_ptr<bool>(alive_), what](ChangeResult r) {
      if (!r.ok() && !alive.expired()) {
        definitions_proposed_ = false;  // tried again at the next tick
        log_.warn("config definition not replicated change={} code={} reason=\"{}\"", what, r.code, r.text);
      }
    });
  }
  if (!missing.empty()) log_.info("config definitions proposed count={}", missing.size());
}

void ClusterMember::dump(json& out) const {
  if (!links_) return;
  out["self"] = {{"name", links_->self().name}, {"id", links_->self().id}, {"address", links_->self().address}};
  out["running"] = raft_ != nullptr;
  if (raft_) raft_->dump(out["raft"]);
  links_->dump(out["links"]);
}

}  // namespace mqnode::broker
