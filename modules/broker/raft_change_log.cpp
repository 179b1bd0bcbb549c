#include "broker/raft_change_log.hpp"

#include <condition_variable>
#include <mutex>
#include <stdexcept>

#include <asio/post.hpp>
#include <fmt/format.h>

#include "amqp/reply_code.hpp"
#include "cluster/frame.hpp"

namespace mqnode::broker {

namespace {
constexpr uint16_t kInternalError = static_cast<uint16_t>(amqp::ConnectionReplyCode::InternalError);
constexpr uint8_t kSnapshotVersion = 1;
}  // namespace

// Loop thread only.
struct RaftChangeLog::Side {
  Catalog& catalog;
  core::Logger log;
  Forward forward;
  cluster::RaftNode* raft = nullptr;
  std::size_t waiting = 0;                    // this node's proposals without an outcome yet
  std::map<uint64_t, ChangeResult> results;   // apply results while some are waiting
  uint64_t applied = 0;                       // the last index applied to the catalog
  std::multimap<uint64_t, std::function<void()>> readers;  // when_applied()

  // Runs the readers waiting for <index> or less (all of them: raft stopped here).
  void wake(uint64_t index) {
    while (!readers.empty() && readers.begin()->first <= index) {
      auto fn = std::move(readers.begin()->second);
      readers.erase(readers.begin());
      fn();
    }
  }
};

ChangeResult change_result_of(const cluster::ProposeResult& r) {
  if (const auto* n = std::get_if<cluster::NotLeader>(&r)) {
    if (n->leader_id == 0)
      return ChangeResult::error(kInternalError, "metadata change refused: the cluster has no leader now (no majority "
                                                 "of disc nodes?), retry");
    return ChangeResult::error(
        kInternalError, fmt::format("metadata change refused: this node is not the cluster leader; the leader is {} ({}), "
                                    "retry there",
                                    n->leader_name.empty() ? std::to_string(n->leader_id) : n->leader_name,
                                    n->leader_address));
  }
  if (const auto* u = std::get_if<cluster::Unknown>(&r))
    return ChangeResult::error(kInternalError, fmt::format("metadata change outcome unknown ({}), retry", u->why));
  if (const auto* f = std::get_if<cluster::Failed>(&r))
    return ChangeResult::error(kInternalError, fmt::format("metadata change failed: {}", f->why));
  return ChangeResult::error(kInternalError, "metadata change applied but its result is lost, retry");
}

RaftChangeLog::RaftChangeLog(asio::io_context& io, Catalog& catalog, core::Logger log)
    : io_(io), side_(std::make_shared<Side>(Side{catalog, log, {}, nullptr, 0, {}, 0, {}})), log_(std::move(log)) {}

RaftChangeLog::~RaftChangeLog() = default;

void RaftChangeLog::set_raft(cluster::RaftNode* raft) {
  side_->raft = raft;
  if (!raft) side_->wake(UINT64_MAX);
}

void RaftChangeLog::when_applied(uint64_t index, std::function<void()> fn) {
  if (index <= side_->applied || !side_->raft) return fn();
  side_->readers.emplace(index, std::move(fn));
}
void RaftChangeLog::set_forward(Forward f) { side_->forward = std::move(f); }

void RaftChangeLog::submit(const Change& change, ProposeDone done) {
  propose(encode_change(change), [done = std::move(done)](ChangeResult r, uint64_t) { done(std::move(r)); },
          Origin::Here);
}

void RaftChangeLog::submit_local(std::vector<uint8_t> change, IndexedDone done) {
  propose(std::move(change), std::move(done), Origin::Forwarded);
}

void RaftChangeLog::propose(std::vector<uint8_t> change, IndexedDone done, Origin origin) {
  const bool may_forward = origin == Origin::Here;
  if (!side_->raft) {
    done(ChangeResult::error(kInternalError, "metadata change refused: the broker is stopping"), 0);
    return;
  }
  ++side_->waiting;
  auto copy = may_forward ? change : std::vector<uint8_t>{};
  side_->raft->propose(std::move(change), [weak = std::weak_ptr<Side>(side_), done = std::move(done),
                                            copy = std::move(copy), may_forward](cluster::ProposeResult r) mutable {
    auto side = weak.lock();
    if (!side) {
      done(change_result_of(cluster::Unknown{"the broker stopped"}), 0);
      return;
    }
    --side->waiting;
    std::optional<ChangeResult> result;
    uint64_t index = 0;
    if (const auto* c = std::get_if<cluster::Committed>(&r)) {
      // Entries are applied, and their proposers answered, in index order.
      index = c->index;
      if (auto it = side->results.find(index); it != side->results.end()) result = std::move(it->second);
      side->results.erase(side->results.begin(), side->results.upper_bound(index));
    }
    if (side->waiting == 0) side->results.clear();
    if (result) {
      done(std::move(*result), index);
    } else if (std::holds_alternative<cluster::NotLeader>(r) && may_forward && side->forward) {
      side->forward(std::get<cluster::NotLeader>(r), std::move(copy),
                    [done = std::move(done)](ChangeResult fr) { done(std::move(fr), 0); });
    } else {
      done(change_result_of(r), 0);
    }
  }, origin == Origin::Forwarded);
}

std::vector<uint8_t> RaftChangeLog::apply(uint64_t index, std::span<const uint8_t> command) {
  asio::post(io_, [weak = std::weak_ptr<Side>(side_), index, bytes = std::vector<uint8_t>(command.begin(), command.end())] {
    auto side = weak.lock();
    if (!side) return;
    ChangeResult r;
    try {
      r = side->catalog.apply(decode_change(bytes));
    } catch (const ChangeDecodeError& e) {
      // Every node fails the same way on the same bytes: the catalogs stay equal.
      side->log.error("raft entry unreadable, skipped index={} reason=\"{}\"", index, e.what());
      r = ChangeResult::error(kInternalError, fmt::format("metadata change unreadable: {}", e.what()));
    }
    if (side->waiting > 0) side->results.emplace(index, std::move(r));
    side->applied = index;
    side->wake(index);
  });
  return {};
}

void RaftChangeLog::on_loop_and_wait(std::function<void(Side&)> task) {
  struct Handoff {
    std::mutex mu;
    std::condition_variable cv;
    enum class State { Pending, Running, Done, Abandoned } state = State::Pending;
    std::string error;
  };
  auto h = std::make_shared<Handoff>();
  asio::post(io_, [h, weak = std::weak_ptr<Side>(side_), &task] {
    {
      std::lock_guard lock(h->mu);
      if (h->state == Handoff::State::Abandoned) return;
      h->state = Handoff::State::Running;
    }
    std::string error;
    if (auto side = weak.lock()) {
      try {
        task(*side);
      } catch (const std::exception& e) {
        error = e.what();
      }
    } else {
      error = "the broker stopped";
    }
    std::lock_guard lock(h->mu);
    h->error = std::move(error);
    h->state = Handoff::State::Done;
    h->cv.notify_all();
  });
  std::unique_lock lock(h->mu);
  if (!h->cv.wait_for(lock, kLoopWait, [&] { return h->state != Handoff::State::Pending; })) {
    h->state = Handoff::State::Abandoned;
    throw std::runtime_error("the broker's loop did not answer in time");
  }
  h->cv.wait(lock, [&] { return h->state == Handoff::State::Done; });
  if (!h->error.empty()) throw std::runtime_error(h->error);
}

std::vector<uint8_t> RaftChangeLog::snapshot() {
  // Posted behind every apply raft has posted: the catalog is at raft's last applied index.
  std::vector<uint8_t> out;
  on_loop_and_wait([&out](Side& side) { out = encode_definitions(side.catalog.definitions()); });
  return out;
}

void RaftChangeLog::restore(std::span<const uint8_t> snapshot) {
  // Decoded here, so that raft refuses a snapshot it cannot read; rebuilt on the loop
  // without waiting for it (raft restores inside raft_start, while RaftNode::start holds
  // the loop). Entries raft applies next are posted after it: FIFO keeps the order.
  auto changes = decode_definitions(snapshot);
  asio::post(io_, [weak = std::weak_ptr<Side>(side_), changes = std::move(changes)] {
    auto side = weak.lock();
    if (!side) return;
    side->catalog.reset(changes);
    side->log.info("catalog restored from a raft snapshot changes={}", changes.size());
  });
}

std::vector<uint8_t> encode_definitions(const std::vector<Change>& changes) {
  std::vector<uint8_t> out{kSnapshotVersion};
  for (const auto& c : changes) cluster::append_frame(out, encode_change(c));
  return out;
}

std::vector<Change> decode_definitions(std::span<const uint8_t> bytes) {
  if (bytes.empty() || bytes[0] != kSnapshotVersion)
    throw ChangeDecodeError(fmt::format("catalog snapshot version {} unknown", bytes.empty() ? -1 : int{bytes[0]}));
  std::vector<Change> out;
  cluster::FrameReader reader(bytes.size());
  auto rest = bytes.subspan(1);
  while (!rest.empty()) {
    std::size_t used = 0;
    if (reader.feed(rest, used) != cluster::FrameReader::Status::Frame)
      throw ChangeDecodeError("catalog snapshot truncated");
    out.push_back(decode_change(reader.payload()));
    rest = rest.subspan(used);
  }
  return out;
}

}  // namespace mqnode::broker
