#include "broker/cluster_member.hpp"

#include <algorithm>
#include <fstream>
#include <thread>
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
constexpr int kMaxRedirects = 6;
// rabbitmqctl 3.10's words (a usage error there, exit 64).
constexpr const char* kStopFirst =
    "Error: this command requires the 'rabbit' app to be stopped on the target node. Stop it with 'mqnode ctl stop_app'.";

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

// A membership change's outcome as a peer reply.
json member_reply(const cluster::ProposeResult& r) {
  if (std::holds_alternative<cluster::Committed>(r)) return json{{"ok", true}};
  if (const auto* n = std::get_if<cluster::NotLeader>(&r); n && !n->leader_address.empty())
    return json{{"redirect", n->leader_address}};
  return json{{"error", change_result_of(r).text}};
}

// The answer of a node that cannot change the configuration now: the leader's address,
// or why there is none.
json not_serving(const cluster::RaftStatus& st) {
  if (st.leader_id != 0 && !st.leader_address.empty() && st.state != cluster::RaftStatus::State::Leader)
    return json{{"redirect", st.leader_address}};
  return json{{"error", "the cluster has no leader now (no majority of disc nodes reachable?), retry"},
              {"elsewhere", true}};
}

std::size_t voters_other_than(const std::vector<cluster::Member>& members, uint64_t id) {
  return static_cast<std::size_t>(std::count_if(members.begin(), members.end(), [id](const cluster::Member& m) {
    return m.id != id && m.role == cluster::Role::Voter;
  }));
}

// "rabbit@mq2" → "mq2": node names as operators type them.
std::string bare_name(const std::string& node) {
  const auto at = node.find('@');
  return at == std::string::npos ? node : node.substr(at + 1);
}

}  // namespace

ClusterMember::ClusterMember(asio::io_context& io, core::NodeInfo node, cluster::ClusterConfig cfg, bool ram,
                             core::Logger log)
    : io_(io), node_(std::move(node)), cfg_(std::move(cfg)), ram_(ram), log_(std::move(log)),
      quorum_(std::chrono::milliseconds(2 * cfg_.election_timeout_ms)), retry_(io) {}

ClusterMember::~ClusterMember() { close(); }

std::filesystem::path ClusterMember::join_file() const { return std::filesystem::path(node_.data_dir) / "cluster_join.json"; }
std::filesystem::path ClusterMember::members_file() const {
  return std::filesystem::path(node_.data_dir) / "cluster_members.json";
}
std::filesystem::path ClusterMember::raft_dir() const { return std::filesystem::path(node_.data_dir) / "raft"; }

void ClusterMember::open() {
  const auto cookie = cluster::Cookie::load_or_create(
      cfg_.cookie_file.empty() ? cluster::Cookie::default_path(node_.data_dir) : std::filesystem::path(cfg_.cookie_file));
  cookie_path_ = cookie.path().string();
  cookie_ = cookie.secret();
  remembered_.clear();
  for (const auto& m : remembered_members())
    remembered_.push_back({m.value("id", uint64_t{0}), m.value("address", std::string{}),
                           m.value("role", std::string{}) == "ram" ? cluster::Role::Standby : cluster::Role::Voter});
  open_links(load_or_create_id(std::filesystem::path(node_.data_dir) / "node_id"));
}

void ClusterMember::open_links(uint64_t id) {
  if (links_) {
    cluster::serve_peer(*links_, nullptr);
    links_->stop();
  }
  cluster::LinkConfig lc;
  lc.self.name = node_.name;
  lc.self.id = id;
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
  lc.cookie = cookie_;
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
  if (stopping_raft_)
    throw std::runtime_error("the broker app is still stopping (raft is writing what it appended), retry in a moment");
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
  if (stopping_raft_) {
    stopping_raft_->stop();  // joins; its posted completion finds it gone
    stopping_raft_.reset();
  }
  if (!raft_) return;
  leave_app();
  raft_->stop();
  raft_.reset();
}

void ClusterMember::stop_async(std::function<void()> done) {
  if (!raft_) return done();
  leave_app();
  // change_log_ (raft's state machine) stays until the next start(), which waits for this.
  stopping_raft_ = std::move(raft_);
  stopping_raft_->stop_async([this, alive = std::weak_ptr<bool>(alive_), done = std::move(done)] {
    if (alive.expired()) return;
    stopping_raft_.reset();
    done();
  });
}

void ClusterMember::leave_app() {
  publish(core::MembershipEvent::Kind::Leaving, node_.name);
  seen_.reset();
  quorum_ = cluster::QuorumWatch(std::chrono::milliseconds(2 * cfg_.election_timeout_ms));
  retry_.cancel();
  change_log_->set_raft(nullptr);
}

void ClusterMember::close() {
  stop();
  if (!links_) return;
  cluster::serve_peer(*links_, nullptr);
  links_->stop();
  links_.reset();
}

CommandReply ClusterMember::wipe(bool force) {
  std::error_code ec;
  std::filesystem::remove_all(raft_dir(), ec);
  if (ec) return {500, fmt::format("Error: cannot remove {}: {}", raft_dir().string(), ec.message()), {}};
  std::filesystem::remove(join_file(), ec);
  std::filesystem::remove(members_file(), ec);
  remembered_.clear();
  remembered_dump_.clear();
  // A new identity: raft state of the old one (in other nodes' configurations, in a link
  // dialled by id) can never be taken for this node again.
  const auto id_file = std::filesystem::path(node_.data_dir) / "node_id";
  std::filesystem::remove(id_file, ec);
  const uint64_t old_id = links_->self().id;
  try {
    open_links(load_or_create_id(id_file));
  } catch (const std::exception& e) {
    return {500, fmt::format("Error: reset done, but the cluster port did not open again: {}", e.what()), {}};
  }
  log_.info("reset{}: raft state and pending join forgotten dir={} old_id={} new_id={}", force ? " (forced)" : "",
            raft_dir().string(), old_id, links_->self().id);
  return {200, fmt::format("{} node {} ...", force ? "Forcefully resetting" : "Resetting", node_.name), {}};
}

void ClusterMember::reset(bool force, CommandDone done) {
  if (raft_ || stopping_raft_) return done({412, kStopFirst, {}});
  const uint64_t self = links_->self().id;
  bool others = false, other_voter = false, self_voter = false;
  for (const auto& m : remembered_) {
    if (m.id == self) {
      self_voter = m.role == cluster::Role::Voter;
    } else {
      others = true;
      other_voter = other_voter || m.role == cluster::Role::Voter;
    }
  }
  if (force || !others) return done(wipe(force));
  if (self_voter && !other_voter)
    return done({409, "Error:\n{:resetting_only_disc_node, 'You cannot reset a node when it is the only disc node in a "
                      "cluster. Please convert another node of the cluster to a disc node first.'}",
                 {}});
  // Leave first: the others drop this node from raft's configuration.
  member_change(json{{"op", "member"}, {"action", "remove"}, {"id", self}},
                [this, alive = std::weak_ptr<bool>(alive_), done](json r) {
                  if (alive.expired()) return;
                  if (r.value("ok", false)) {
                    log_.info("left the cluster id={}", links_->self().id);
                    return done(wipe(false));
                  }
                  if (r.contains("unreachable"))
                    return done({503,
                                 fmt::format("Error:\n{{:no_running_cluster_nodes, 'You cannot leave a cluster if no "
                                             "online nodes are present.'}}\n({}; force_reset leaves without asking, then "
                                             "run forget_cluster_node {} on a member)",
                                             r.value("unreachable", std::string{}), node_.name),
                                 {}});
                  done({500, fmt::format("Error: the cluster did not remove node {}: {}", node_.name,
                                         r.value("error", std::string("no reason given"))),
                        {}});
                });
}

void ClusterMember::command(const std::string& op, const json& args, CommandDone done) {
  const std::string node = args.value("node", std::string{});
  if (op == "reset" || op == "force_reset") return reset(op == "force_reset", std::move(done));
  if (op == "cluster_status") return status(std::move(done));
  if (op == "join_cluster") {
    std::optional<bool> ram;
    if (args.contains("ram") && args["ram"].is_boolean()) ram = args["ram"].get<bool>();
    return join(node, ram, std::move(done));
  }
  if (op == "forget_cluster_node") return forget(node, args.value("offline", false), std::move(done));
  if (op == "update_cluster_nodes") return update_nodes(node, std::move(done));
  if (op == "change_cluster_node_type") {
    const std::string type = args.value("type", std::string{});
    if (type != "disc" && type != "disk" && type != "ram")
      return done({400, fmt::format("Error: node type must be one of disc, ram; got \"{}\"", type), {}});
    return change_type(type == "ram", std::move(done));
  }
  done({404, fmt::format("Error: unknown command {}", op), {}});
}

bool ClusterMember::ready() const { return raft_ && raft_->status().leader_id != 0; }

std::optional<CommandReply> ClusterMember::stopped_and_resolved(const std::string& node, std::string& address) const {
  if (raft_ || stopping_raft_) return CommandReply{412, kStopFirst, {}};
  try {
    address = cluster::resolve_node(node);
  } catch (const std::runtime_error& e) {
    return CommandReply{503, fmt::format("Error: unable to reach node {}: {}", node, e.what()), {}};
  }
  return std::nullopt;
}

void ClusterMember::join(const std::string& node, std::optional<bool> ram, CommandDone done) {
  std::string address;
  if (auto refused = stopped_and_resolved(node, address)) return done(std::move(*refused));
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
        const std::string seed_name = reply->value("name", node);
        // As RabbitMQ, joining resets the node: it leaves the cluster it was in when that
        // cluster answers; else it goes without asking (the seed's leader replaces a
        // member at this node's address by the new id anyway).
        reset(false, [this, alive, address, as_ram, seed_name, done](CommandReply r) {
          if (alive.expired()) return;
          if (r.status != 200) {
            log_.warn("join: leaving the old cluster failed, resetting without it reason=\"{}\"", r.message);
            if (r = wipe(true); r.status != 200) return done(r);
          }
          std::ofstream out(join_file(), std::ios::trunc);
          out << json{{"seeds", json::array({address})}, {"ram", as_ram}}.dump() << "\n";
          if (!out.flush()) return done({500, fmt::format("Error: cannot write {}", join_file().string()), {}});
          log_.info("join pending seed={} address={} as={}", seed_name, address, as_ram ? "ram" : "disc");
          done({200, fmt::format("Clustering node {} with {} ...", node_.name, seed_name), {}});
        });
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
  auto handle = [this, alive = std::weak_ptr<bool>(alive_), seed, rotated, ram](std::optional<json> reply,
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
  };
  // This node leads (a member whose role changes, after start_app) or the seed is itself:
  // answered here, since a link to its own address is refused (a name clash).
  if (raft_->status().serving || seed == links_->self().address)
    return on_join_request(request, [handle](json reply) mutable { handle(std::move(reply), {}); });
  cluster::peer_call(*links_, seed, std::move(request), std::move(handle));
}

json ClusterMember::info() const {
  json out{{"name", node_.name},
           {"id", links_->self().id},
           {"address", links_->self().address},
           {"running", raft_ != nullptr},
           {"ram", ram_},
           {"version", MQNODE_VERSION},
           {"cores", std::max(1u, std::thread::hardware_concurrency())},
           {"maintenance", "not under maintenance"},
           {"members", members_json()}};
  // The broker's facts (alarms, AMQP listeners), and the cluster port.
  json facts = facts_ ? facts_() : json::object();
  out["alarms"] = facts.value("alarms", json::array());
  out["listeners"] = facts.value("listeners", json::array());
  const auto port = links_->local_endpoint();
  out["listeners"].push_back({{"interface", port.address().is_v6() ? fmt::format("[{}]", port.address().to_string())
                                                                   : port.address().to_string()},
                              {"port", port.port()},
                              {"protocol", "clustering"},
                              {"purpose", "inter-node communication"}});
  if (raft_) raft_->dump(out["raft"]);
  return out;
}

void ClusterMember::on_peer(const cluster::NodeIdentity& from, const json& request, cluster::PeerReplyFn reply) {
  const std::string op = request.value("op", std::string{});
  if (op == "info") return reply(info());
  if (op == "join") return on_join_request(request, std::move(reply));
  if (op == "member") return on_member_request(request, std::move(reply));
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
  const auto st = raft_->status();
  for (const auto& m : st.members)
    if (m.id == id && m.role == role) return reply(json{{"ok", true}});
  if (!st.serving) return reply(not_serving(st));
  // The leader becoming a ram node hands its leadership over first (the new leader assigns it).
  if (id == links_->self().id && role == cluster::Role::Standby)
    return raft_->transfer_leadership(0, [reply](const cluster::ProposeResult&) {
      reply(json{{"error", "leadership handed over before this node becomes a ram node, retry"}});
    });
  log_.info("adding member id={} name={} address={} as={}", id, request.value("name", std::string{}), address,
            role_name(role));
  auto answer = [reply](const cluster::ProposeResult& r) { reply(member_reply(r)); };
  // A node that rejoins under a new id (reset, or a wiped data dir) replaces its old self:
  // left in the configuration, the old id would count as a voter that never answers.
  for (const auto& m : st.members)
    if (m.address == address && m.id != id) {
      log_.info("replacing member id={} address={} by id={}", m.id, m.address, id);
      raft_->remove_member(m.id, [answer](const cluster::ProposeResult& r) {
        // The joiner asks again in a second; then the address is free.
        if (std::holds_alternative<cluster::Committed>(r)) return answer(cluster::Failed{"replaced an old member, retry"});
        answer(r);
      });
      return;
    }
  // A node added before (as a spare whose promotion did not finish, say) is only assigned.
  raft_->add_member(id, address, role, [this, alive = std::weak_ptr<bool>(alive_), id, role, answer](cluster::ProposeResult r) {
    if (alive.expired() || !raft_ || !std::holds_alternative<cluster::Failed>(r)) return answer(r);
    raft_->assign_role(id, role, answer);
  });
}

void ClusterMember::on_member_request(const json& request, cluster::PeerReplyFn reply) {
  if (!raft_)
    return reply(json{{"error", fmt::format("node {} is not running its broker app", node_.name)}, {"elsewhere", true}});
  const auto st = raft_->status();
  if (!st.serving) return reply(not_serving(st));
  const uint64_t id = request.value("id", uint64_t{0});
  const std::string action = request.value("action", std::string{});
  const auto it = std::find_if(st.members.begin(), st.members.end(), [id](const cluster::Member& m) { return m.id == id; });
  const bool last_voter = it != st.members.end() && it->role == cluster::Role::Voter && voters_other_than(st.members, id) == 0;
  auto answer = [reply](const cluster::ProposeResult& r) { reply(member_reply(r)); };
  if (action == "remove") {
    if (id == links_->self().id)
      return reply(json{{"error", fmt::format("node {} leads the cluster and cannot remove itself; run stop_app on it "
                                              "first (another node takes over)",
                                              node_.name)}});
    if (last_voter) return reply(json{{"error", "it is the only disc node of the cluster"}});
    log_.info("removing member id={} name={}", id, raft_->name_of(id));
    // Not in the configuration (a spare is, though status leaves spares out): raft says so.
    return raft_->remove_member(id, [reply, known = it != st.members.end()](const cluster::ProposeResult& r) {
      if (!known && std::holds_alternative<cluster::Failed>(r)) return reply(json{{"ok", true}});
      reply(member_reply(r));
    });
  }
  if (action == "assign") {
    const auto role = request.value("role", std::string{}) == "ram" ? cluster::Role::Standby : cluster::Role::Voter;
    if (it == st.members.end()) return reply(json{{"error", "not a member of the cluster"}});
    if (it->role == role) return reply(json{{"ok", true}});
    if (role == cluster::Role::Standby && last_voter) return reply(json{{"error", "it is the only disc node of the cluster"}});
    log_.info("member role change id={} name={} to={}", id, raft_->name_of(id), role_name(role));
    return raft_->assign_role(id, role, answer);
  }
  reply(json{{"error", fmt::format("unknown member action \"{}\"", action)}});
}

void ClusterMember::member_change(json request, cluster::PeerReplyFn done) {
  if (raft_ && raft_->status().serving) return on_member_request(request, std::move(done));
  std::vector<std::string> addresses;
  if (raft_ && !raft_->status().leader_address.empty()) addresses.push_back(raft_->status().leader_address);
  for (const auto& m : remembered_)
    if (m.address != links_->self().address &&
        std::find(addresses.begin(), addresses.end(), m.address) == addresses.end())
      addresses.push_back(m.address);
  call_leader(std::move(addresses), std::move(request), 0, "no other member known", std::move(done));
}

void ClusterMember::call_leader(std::vector<std::string> addresses, json request, int hops, std::string last_error,
                                cluster::PeerReplyFn done) {
  if (addresses.empty() || hops > kMaxRedirects) return done(json{{"unreachable", last_error}});
  const std::string address = addresses.front();
  auto req = request;
  cluster::peer_call(
      *links_, address, std::move(req),
      [this, alive = std::weak_ptr<bool>(alive_), addresses = std::move(addresses), request = std::move(request), hops,
       done = std::move(done), address](std::optional<json> reply, std::string error) mutable {
        if (alive.expired()) return;
        addresses.erase(addresses.begin());
        if (reply && reply->contains("redirect") && (*reply)["redirect"].is_string()) {
          const std::string leader = (*reply)["redirect"].get<std::string>();
          if (leader != links_->self().address) addresses.insert(addresses.begin(), leader);
          return call_leader(std::move(addresses), std::move(request), hops + 1, "redirected", std::move(done));
        }
        if (reply && !reply->value("elsewhere", false)) return done(std::move(*reply));
        // No answer, or no leader there: the next one.
        const std::string why = reply ? fmt::format("{}: {}", address, reply->value("error", std::string{}))
                                      : fmt::format("{}: {}", address, error);
        call_leader(std::move(addresses), std::move(request), hops + 1, why, std::move(done));
      },
      kStatusTimeout);
}

json ClusterMember::remembered_members() const {
  std::ifstream in(members_file());
  auto j = json::parse(in, nullptr, false);
  return j.is_array() ? j : json::array();
}

json ClusterMember::members_json() const {
  json out = json::array();
  if (!raft_) return out;
  for (const auto& m : raft_->status().members)
    out.push_back({{"id", m.id},
                   {"address", m.address},
                   {"name", m.id == links_->self().id ? node_.name : raft_->name_of(m.id)},
                   {"role", role_name(m.role)}});
  return out;
}

void ClusterMember::remember_members() {
  if (!raft_ || raft_->status().members.empty()) return;
  // Names too: a member's is known once a link with it has been up.
  auto now = members_json().dump();
  if (now == remembered_dump_) return;
  remembered_ = raft_->status().members;
  remembered_dump_ = std::move(now);
  const auto tmp = members_file().string() + ".tmp";
  std::ofstream out(tmp, std::ios::trunc);
  out << remembered_dump_ << "\n";
  std::error_code ec;
  if (out.flush()) {
    out.close();
    std::filesystem::rename(tmp, members_file(), ec);
  }
  if (!out || ec) log_.warn("cannot write {} reason=\"{}\"", members_file().string(), ec ? ec.message() : "write failed");
}

json ClusterMember::find_member(const std::string& node) const {
  const std::string name = bare_name(node);
  json known = raft_ ? members_json() : remembered_members();
  for (const auto& m : known)
    if (m.value("name", std::string{}) == name) return m;
  std::string address;
  try {
    address = cluster::resolve_node(node);
  } catch (const std::runtime_error&) {
    return nullptr;
  }
  for (const auto& m : known)
    if (m.value("address", std::string{}) == address) return m;
  return nullptr;
}

void ClusterMember::forget(const std::string& node, bool offline, CommandDone done) {
  if (offline && raft_)
    return done({412, "Error: this command requires the target node to be stopped.", {}});
  if (!offline && !raft_)
    return done({409, "Error:\n{:offline_node_no_offline_flag, 'You are trying to remove a node from an offline node. "
                      "That is dangerous, but can be done with the --offline flag. Please consult the manual for "
                      "rabbitmqctl for more information.'}",
                 {}});
  const json target = find_member(node);
  if (target.is_null())
    return done({409, "Error:\n{:not_a_cluster_node, 'The node selected is not in the cluster.'}", {}});
  const uint64_t id = target.value("id", uint64_t{0});
  std::string name = target.value("name", std::string{});
  if (name.empty()) name = bare_name(node);  // no link with it has told this node its name
  if (id == links_->self().id)
    return done({422, fmt::format("Error: node {} cannot forget itself; run stop_app and reset on it, or "
                                  "forget_cluster_node {} on another member",
                                  node_.name, node_.name),
                 {}});
  // Only a node that is not running may be forgotten (its app stopped, or the process down).
  cluster::peer_call(
      *links_, target.value("address", std::string{}), json{{"op", "info"}},
      [this, alive = std::weak_ptr<bool>(alive_), id, name, done](std::optional<json> reply, std::string) {
        if (alive.expired()) return;
        if (reply && reply->value("running", false))
          return done({409,
                       fmt::format("Error:\n{{:failed_to_remove_node, :\"{}\", {{:active, 'Mnesia is running', "
                                   ":\"{}\"}}}}\n(node {} runs its broker app: run stop_app on it first)",
                                   name, name, name),
                       {}});
        member_change(json{{"op", "member"}, {"action", "remove"}, {"id", id}}, [this, alive, name, done](json r) {
          if (alive.expired()) return;
          if (r.value("ok", false)) {
            log_.info("forgot cluster node name={}", name);
            return done({200, fmt::format("Removing node {} from the cluster", name), {}});
          }
          if (r.contains("unreachable"))
            return done({503,
                         fmt::format("Error:\n{{:no_online_cluster_nodes, 'Could not find any online cluster nodes. "
                                     "If the cluster has changed, you can use the 'update_cluster_nodes' command.'}}\n({})",
                                     r.value("unreachable", std::string{})),
                         {}});
          done({500, fmt::format("Error: node {} was not removed: {}", name, r.value("error", std::string("no reason"))),
                {}});
        });
      },
      kStatusTimeout);
}

void ClusterMember::change_type(bool ram, CommandDone done) {
  if (raft_ || stopping_raft_) return done({412, kStopFirst, {}});
  const uint64_t self = links_->self().id;
  const auto me = std::find_if(remembered_.begin(), remembered_.end(), [self](const cluster::Member& m) { return m.id == self; });
  if (remembered_.size() < 2 || me == remembered_.end()) {
    if (ram) return done({409, "Error:\n{:not_clustered, 'Non-clustered nodes can only be disc nodes.'}", {}});
    return done({200, fmt::format("Turning {} into a disc node", node_.name), {}});
  }
  if (ram && me->role == cluster::Role::Voter && voters_other_than(remembered_, self) == 0)
    return done({409,
                 fmt::format("Error: node {} is the only disc node of its cluster and cannot become a ram node; make "
                             "another node a disc node first (change_cluster_node_type disc on it)",
                             node_.name),
                 {}});
  // start_app announces this node with its new role; the leader assigns it in raft.
  json seeds = json::array();
  for (const auto& m : remembered_)
    if (m.id != self) seeds.push_back(m.address);
  std::ofstream out(join_file(), std::ios::trunc);
  out << json{{"seeds", seeds}, {"ram", ram}}.dump() << "\n";
  if (!out.flush()) return done({500, fmt::format("Error: cannot write {}", join_file().string()), {}});
  log_.info("node type change pending to={} (carried out at start_app)", ram ? "ram" : "disc");
  done({200, fmt::format("Turning {} into a {} node", node_.name, ram ? "ram" : "disc"), {}});
}

void ClusterMember::update_nodes(const std::string& node, CommandDone done) {
  std::string address;
  if (auto refused = stopped_and_resolved(node, address)) return done(std::move(*refused));
  cluster::peer_call(
      *links_, address, json{{"op", "info"}},
      [this, alive = std::weak_ptr<bool>(alive_), node, done](std::optional<json> reply, std::string error) {
        if (alive.expired()) return;
        if (!reply || !reply->contains("members") || !(*reply)["members"].is_array() || (*reply)["members"].empty())
          return done({503,
                       fmt::format("Error:\n{{:cannot_connect_to_node, 'Could not connect to the cluster node "
                                   "provided.'}}\n({}: {})",
                                   node, reply ? "its broker app is not running" : error),
                       {}});
        const json& members = (*reply)["members"];
        const bool in = std::any_of(members.begin(), members.end(),
                                    [&](const json& m) { return m.value("id", uint64_t{0}) == links_->self().id; });
        if (!in)
          return done({409, "Error:\n{:inconsistent_cluster, 'The nodes provided do not have this node as part of the "
                            "cluster.'}",
                       {}});
        std::ofstream(members_file(), std::ios::trunc) << members.dump() << "\n";
        remembered_.clear();
        for (const auto& m : members)
          remembered_.push_back({m.value("id", uint64_t{0}), m.value("address", std::string{}),
                                 m.value("role", std::string{}) == "ram" ? cluster::Role::Standby : cluster::Role::Voter});
        done({200, fmt::format("Will seed {} from {} on next start", node_.name, reply->value("name", node)), {}});
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
  // rabbitmqctl 3.10's keys (--formatter json); the text form prints them in its order.
  c->body = {{"node", node_.name},
             {"cluster_name", node_.name},
             {"running", raft_ != nullptr},
             {"disk_nodes", json::array()},
             {"ram_nodes", json::array()},
             {"running_nodes", json::array()},
             {"versions", json::object()},
             {"cpu_cores", json::object()},
             {"maintenance_status", json::object()},
             {"alarms", json::array()},
             {"partitions", json::object()},
             {"listeners", json::object()},
             {"feature_flags", json::array()}};
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
    // <facts>: a member's info() reply (null: it did not answer).
    auto record = [c, m, finish](const std::string& name, const json& facts) {
      c->body[m.role == cluster::Role::Voter ? "disk_nodes" : "ram_nodes"].push_back(name);
      if (facts.is_object() && facts.value("running", false)) {
        auto& b = c->body;
        b["running_nodes"].push_back(name);
        b["versions"][name] = {{"rabbitmq_name", "mqnode"},
                               {"rabbitmq_version", facts.value("version", std::string{})},
                               {"erlang_version", ""}};
        b["cpu_cores"][name] = facts.value("cores", 0);
        b["maintenance_status"][name] = facts.value("maintenance", std::string("unknown"));
        for (const auto& a : facts.value("alarms", json::array()))
          b["alarms"].push_back({{"node", name}, {"type", "resource_limit"}, {"resource", a}});
        json listeners = json::array();
        for (auto l : facts.value("listeners", json::array())) {
          l["node"] = name;
          listeners.push_back(std::move(l));
        }
        b["listeners"][name] = std::move(listeners);
      }
      finish(*c);
    };
    if (m.id == links_->self().id) {
      record(node_.name, info());
      continue;
    }
    const std::string known = raft_ && !raft_->name_of(m.id).empty() ? raft_->name_of(m.id) : m.address;
    cluster::peer_call(
        *links_, m.address, json{{"op", "info"}},
        [record, known](std::optional<json> reply, std::string) {
          if (!reply) return record(known, nullptr);
          record(reply->value("name", known), *reply);
        },
        kStatusTimeout);
  }
  finish(*c);
}

void ClusterMember::publish(core::MembershipEvent::Kind kind, std::string node, std::string role) {
  log_.info("membership {} node={}{}{}", core::kind_name(kind), node, role.empty() ? "" : " role=", role);
  if (events_) events_->publish_membership({kind, std::move(node), std::move(role)});
}

void ClusterMember::watch_membership() {
  if (!raft_) return;
  const auto& st = raft_->status();
  if (!st.members.empty()) {
    if (seen_) {
      auto name = [this](const cluster::Member& m) {
        if (m.id == links_->self().id) return node_.name;
        const auto n = raft_->name_of(m.id);
        return n.empty() ? m.address : n;
      };
      const auto d = cluster::diff_members(*seen_, st.members);
      for (const auto& m : d.joined) publish(core::MembershipEvent::Kind::Joined, name(m), role_name(m.role));
      for (const auto& m : d.left) publish(core::MembershipEvent::Kind::Left, name(m));
    }
    seen_ = st.members;
  }
  if (auto majority = quorum_.update(st.leader_id != 0, cluster::QuorumWatch::Clock::now()))
    publish(*majority ? core::MembershipEvent::Kind::Majority : core::MembershipEvent::Kind::Minority, node_.name);
}

void ClusterMember::tick() {
  watch_membership();
  remember_members();
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
