// Three RaftNodes in one process over real loopback TCP: real handshakes, raft's real libuv
// disk I/O in temporary directories, one raft thread per node, one asio loop for all.
// Every wait polls with a deadline; nothing asserts on timing.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <doctest/doctest.h>

#include "cluster/raft_node.hpp"
#include "list_fsm.hpp"
#include "support/temp_store.hpp"

using namespace mqnode::cluster;
using mqnode::test::bytes_of;
using mqnode::test::ListFsm;
using mqnode::test::quiet_log;
using mqnode::test::TempDir;

namespace {

// Runs <io> until <done>() holds, for 60 s at most (elections under ASan on a busy machine).
template <class Pred>
bool run_until(asio::io_context& io, Pred done) {
  io.restart();
  auto work = asio::make_work_guard(io);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!done() && std::chrono::steady_clock::now() < deadline) io.run_for(std::chrono::milliseconds(10));
  return done();
}

struct Node {
  std::string name;
  uint64_t id;
  TempDir dir;
  std::unique_ptr<ListFsm> fsm;
  std::shared_ptr<Links> links;
  std::unique_ptr<RaftNode> raft;

  Node(std::string n, uint64_t i) : name(std::move(n)), id(i) {}

  // Starts links and raft; <address> empty: a fresh port on 127.0.0.1.
  void up(asio::io_context& io, bool bootstrap, const std::string& address = {}, std::string cookie = "COOKIE") {
    LinkConfig cfg;
    cfg.self = {name, id, address};
    cfg.cookie = std::move(cookie);
    cfg.cookie_path = "/tmp/test.cookie";
    links = Links::create(io, cfg, quiet_log());
    links->listen(*mqnode::core::parse_endpoint(address.empty() ? "127.0.0.1:0" : address));
    RaftNodeConfig rc;
    rc.dir = dir.path / "raft";
    rc.snapshot_threshold = 32;  // several snapshots and compactions in 110 entries
    rc.snapshot_trailing = 8;
    fsm = std::make_unique<ListFsm>();
    raft = std::make_unique<RaftNode>(io, links, rc, *fsm, quiet_log());
    raft->start(bootstrap);
  }
  void down() {
    raft->stop();
    links->stop();
  }
  std::string address() const { return links->self().address; }
  bool serving() const { return raft->status().serving; }
};

ProposeResult wait_for(asio::io_context& io, std::function<void(RaftNode::Done)> call) {
  std::optional<ProposeResult> got;
  call([&](ProposeResult r) { got = std::move(r); });
  REQUIRE(run_until(io, [&] { return got.has_value(); }));
  return *got;
}

std::string describe(const ProposeResult& r) {
  if (std::holds_alternative<Committed>(r)) return "committed";
  if (auto* n = std::get_if<NotLeader>(&r)) return "not leader, leader " + std::to_string(n->leader_id);
  if (auto* u = std::get_if<Unknown>(&r)) return "unknown: " + u->why;
  return "failed: " + std::get<Failed>(r).why;
}

// Proposes <prefix>0..<n-1> on <leader>; every one must be Committed.
void propose_all(asio::io_context& io, Node& leader, const std::string& prefix, int n) {
  std::vector<ProposeResult> results;
  for (int i = 0; i < n; ++i) {
    leader.raft->propose(bytes_of(prefix + std::to_string(i)), [&](ProposeResult r) { results.push_back(std::move(r)); });
  }
  REQUIRE(run_until(io, [&] { return results.size() == static_cast<std::size_t>(n); }));
  for (const auto& r : results) CHECK_MESSAGE(std::holds_alternative<Committed>(r), describe(r));
}

}  // namespace

TEST_CASE("raft nodes: bootstrap, join a voter and a standby, replicate, lose the leader, go on, restart") {
  asio::io_context io;
  Node n1("mq1", 1), n2("mq2", 2), n3("mq3", 3);
  n1.up(io, true);
  REQUIRE(run_until(io, [&] { return n1.serving(); }));
  n2.up(io, false);
  n3.up(io, false);

  CHECK_MESSAGE(std::holds_alternative<Committed>(wait_for(io, [&](auto done) {
                  n1.raft->add_member(2, n2.address(), Role::Voter, done);
                })),
                "add mq2");
  CHECK(std::holds_alternative<Committed>(wait_for(io, [&](auto done) {
    n1.raft->add_member(3, n3.address(), Role::Standby, done);
  })));
  REQUIRE(run_until(io, [&] { return n1.raft->status().members.size() == 3; }));
  const auto members = n1.raft->status().members;
  CHECK(members[1] == Member{2, n2.address(), Role::Voter});
  CHECK(members[2] == Member{3, n3.address(), Role::Standby});
  nlohmann::json dump;
  n1.raft->dump(dump);
  CHECK(dump["state"] == "leader");
  CHECK(dump["serving"] == true);
  CHECK(dump["leader"]["name"] == "mq1");
  CHECK(dump["members"][2]["role"] == "standby");

  propose_all(io, n1, "a", 100);
  REQUIRE(run_until(io, [&] { return n2.fsm->entries().size() == 100 && n3.fsm->entries().size() == 100; }));
  CHECK(n1.fsm->entries() == n2.fsm->entries());
  CHECK(n1.fsm->entries() == n3.fsm->entries());
  CHECK(n1.fsm->entries().front() == "a0");

  // A follower redirects, naming the leader as its link did.
  REQUIRE(run_until(io, [&] { return n2.raft->status().leader_id == 1; }));
  const auto redirect = wait_for(io, [&](auto done) { n2.raft->propose(bytes_of("x"), done); });
  REQUIRE(std::holds_alternative<NotLeader>(redirect));
  CHECK(std::get<NotLeader>(redirect).leader_id == 1);
  CHECK(std::get<NotLeader>(redirect).leader_address == n1.address());
  CHECK(std::get<NotLeader>(redirect).leader_name == "mq1");

  // Two voters of three may elect a leader once mq1 is gone. mq1 stops with proposals in
  // flight: each is Committed or Unknown, and every Committed one survives it.
  CHECK(std::holds_alternative<Committed>(wait_for(io, [&](auto done) { n1.raft->assign_role(3, Role::Voter, done); })));
  const std::string n1_address = n1.address();
  std::vector<std::pair<std::string, ProposeResult>> in_flight;
  for (int i = 0; i < 20; ++i) {
    const std::string entry = "u" + std::to_string(i);
    n1.raft->propose(bytes_of(entry), [&in_flight, entry](ProposeResult r) { in_flight.emplace_back(entry, std::move(r)); });
  }
  n1.down();
  REQUIRE(run_until(io, [&] { return in_flight.size() == 20; }));
  REQUIRE(run_until(io, [&] { return n2.serving() || n3.serving(); }));
  Node& leader = n2.serving() ? n2 : n3;
  propose_all(io, leader, "b", 10);
  auto has = [](const Node& n, const std::string& entry) {
    const auto list = n.fsm->entries();
    return std::find(list.begin(), list.end(), entry) != list.end();
  };
  REQUIRE(run_until(io, [&] { return has(n2, "b9") && has(n3, "b9"); }));
  CHECK(n2.fsm->entries() == n3.fsm->entries());
  for (const auto& [entry, result] : in_flight) {
    CAPTURE(entry);
    CHECK_MESSAGE((std::holds_alternative<Committed>(result) || std::holds_alternative<Unknown>(result)),
                  describe(result));
    if (std::holds_alternative<Committed>(result)) CHECK(has(n2, entry));
  }

  // mq1 comes back on its data (no bootstrap: there is state) and catches up from a snapshot
  // and the log.
  n1.up(io, true, n1_address);
  REQUIRE(run_until(io, [&] { return n1.fsm->entries() == n2.fsm->entries(); }));
  CHECK(n1.fsm->restores() >= 1);

  n1.down();
  n2.down();
  n3.down();
  // After stop, requests fail at once rather than hang.
  CHECK(std::holds_alternative<Failed>(wait_for(io, [&](auto done) { n2.raft->propose(bytes_of("late"), done); })));
  CHECK(n2.raft->status().state == RaftStatus::State::Unavailable);
}

TEST_CASE("raft nodes: a node with a wrong cookie gets no raft link") {
  asio::io_context io;
  Node good("mq1", 1), bad("mq9", 9);
  good.up(io, true);
  REQUIRE(run_until(io, [&] { return good.serving(); }));
  bad.up(io, false, {}, "WRONG");
  std::string error;
  bad.links->connect(good.address(), Purpose::Raft, [&](std::optional<Link> link, std::string e) {
    CHECK_FALSE(link);
    error = std::move(e);
  });
  REQUIRE(run_until(io, [&] { return !error.empty() && good.links->stats().refused_cookie == 1; }));
  CHECK(error.find("cookie mismatch") != std::string::npos);
  // The leader adds it: the change commits (one voter), but nothing reaches the impostor.
  CHECK(std::holds_alternative<Committed>(wait_for(io, [&](auto done) {
    good.raft->add_member(9, bad.address(), Role::Standby, done);
  })));
  propose_all(io, good, "c", 5);
  REQUIRE(run_until(io, [&] { return bad.links->stats().refused_cookie >= 1; }));
  CHECK(bad.fsm->entries().empty());
  CHECK(bad.raft->status().last_applied == 0);
  good.down();
  bad.down();
}

TEST_CASE("raft nodes: a data dir raft cannot use stops start() with raft's reason and the dir") {
  asio::io_context io;
  TempDir dir;
  LinkConfig cfg;
  cfg.self = {"mq1", 1, "127.0.0.1:1"};
  cfg.cookie = "COOKIE";
  auto links = Links::create(io, cfg, quiet_log());
  ListFsm fsm;
  RaftNodeConfig rc;
  rc.dir = dir.path / "raft";
  std::filesystem::create_directories(rc.dir);
  std::ofstream(rc.dir / "metadata1") << "this is not raft metadata, not at all";
  RaftNode node(io, links, rc, fsm, quiet_log());
  std::string error;
  try {
    node.start(true);
  } catch (const std::runtime_error& e) {
    error = e.what();
  }
  CHECK(error.find(rc.dir.string()) != std::string::npos);
  CHECK(error.find("raft_init") != std::string::npos);
  CHECK(std::holds_alternative<Failed>(wait_for(io, [&](auto done) { node.propose(bytes_of("x"), done); })));

  RaftNodeConfig file_as_dir;
  file_as_dir.dir = rc.dir / "metadata1";
  RaftNode other(io, links, file_as_dir, fsm, quiet_log());
  CHECK_THROWS_WITH_AS(other.start(true), doctest::Contains("raft data dir"), std::runtime_error);
}
