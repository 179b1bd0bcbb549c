// The Catalog over a real one-node raft group (libraft's disk I/O in a temporary directory,
// loopback links): proposals come back with the catalog's own results, snapshots are
// taken, and a restart rebuilds the same catalog from raft's snapshot and log.
#include <doctest/doctest.h>

#include "broker/raft_change_log.hpp"
#include "support/temp_store.hpp"

using namespace mqnode::broker;
using namespace mqnode;
using mqnode::test::quiet_log;
using mqnode::test::run_until;
using mqnode::test::TempDir;

namespace {

// A catalog replicated by a one-node raft group kept in <dir>.
struct ReplicatedCatalog {
  Catalog catalog{{"n1", nullptr}, quiet_log()};
  RaftChangeLog log;
  std::shared_ptr<cluster::Links> links;
  std::unique_ptr<cluster::RaftNode> raft;

  ReplicatedCatalog(asio::io_context& io, const std::filesystem::path& dir) : log(io, catalog, quiet_log()) {
    cluster::LinkConfig cfg;
    cfg.self = {"n1", 1, {}};
    cfg.cookie = "COOKIE";
    links = cluster::Links::create(io, cfg, quiet_log());
    links->listen(*core::parse_endpoint("127.0.0.1:0"));
    cluster::RaftNodeConfig rc;
    rc.dir = dir;
    rc.snapshot_threshold = 16;
    rc.snapshot_trailing = 4;
    raft = std::make_unique<cluster::RaftNode>(io, links, rc, log, quiet_log());
    raft->start(true);
    log.set_raft(raft.get());
    catalog.set_change_log(&log);
  }
  ~ReplicatedCatalog() {
    raft->stop();
    links->stop();
  }
  ChangeResult propose(asio::io_context& io, Change c) {
    std::optional<ChangeResult> got;
    catalog.propose(std::move(c), [&](ChangeResult r) { got = std::move(r); });
    run_until(io, [&] { return got.has_value(); });
    return *got;
  }
};

}  // namespace

TEST_CASE("a raft-replicated catalog: the proposer gets apply's result; a restart rebuilds it from raft") {
  asio::io_context io;
  TempDir dir;
  std::vector<uint8_t> before;
  {
    ReplicatedCatalog n(io, dir.path / "raft");
    run_until(io, [&] { return n.raft->status().serving; });
    CHECK_FALSE(n.catalog.persisting());
    auto r = n.propose(io, PutVhost{"/", ""});
    CHECK(r.ok());
    CHECK(r.created);
    CHECK(n.propose(io, DeclareExchange{"/", {"e", "topic", true, false, false, {}}}).created);
    // A refusal is apply's own result, code and text, for this proposer.
    auto refused = n.propose(io, DeclareExchange{"/", {"e", "direct", true, false, false, {}}});
    CHECK(refused.code == 406);
    CHECK(refused.text.find("inequivalent arg 'type'") != std::string::npos);
    // Enough entries for a few snapshots (threshold 16).
    for (int i = 0; i < 40; ++i) {
      DeclareQueue q{"/", {}, {}};
      q.def.name = "q" + std::to_string(i);
      q.def.durable = true;
      REQUIRE(n.propose(io, q).ok());
      REQUIRE(n.propose(io, Bind{"/", true, "e", false, q.def.name, "k.#", {}, {}}).ok());
    }
    CHECK(n.propose(io, SetPolicy{"/", "p", "^q1", nlohmann::json{{"max-length", 3}}, 0, "queues"}).ok());
    before = encode_definitions(n.catalog.definitions());
  }
  // No bootstrap: raft's snapshot and log hold everything.
  ReplicatedCatalog again(io, dir.path / "raft");
  run_until(io, [&] {
    return again.raft->status().serving && again.catalog.find_vhost("/") && again.catalog.policies().find("/", "p");
  });
  CHECK(encode_definitions(again.catalog.definitions()) == before);
}

TEST_CASE("a raft outcome that is not Committed is an error for the proposer, never a success") {
  CHECK(change_result_of(cluster::Unknown{"leadership lost"}).code == 541);
  CHECK(change_result_of(cluster::Unknown{"leadership lost"}).text.find("retry") != std::string::npos);
  CHECK(change_result_of(cluster::Failed{"no space"}).code == 541);
  auto nl = change_result_of(cluster::NotLeader{2, "10.0.0.12:25672", "mq2"});
  CHECK(nl.code == 541);
  CHECK(nl.text.find("mq2 (10.0.0.12:25672)") != std::string::npos);
  CHECK_FALSE(change_result_of(cluster::NotLeader{}).ok());
}
