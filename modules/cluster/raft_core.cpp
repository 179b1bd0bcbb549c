#include "cluster/raft_core.hpp"

#include <cstring>
#include <optional>
#include <utility>

#include <fmt/format.h>

namespace mqnode::cluster {

struct RaftCore::Apply {
  struct raft_apply req{};
  RaftCore* core;
  Done done;
  bool announce;
};
struct RaftCore::Barrier {
  struct raft_barrier req{};
  RaftCore* core;
  raft_term term;
};
struct RaftCore::Notice {
  struct raft_barrier req{};
  RaftCore* core;
};
struct RaftCore::Change {
  raft_change req{};
  RaftCore* core;
  Done done;
  uint64_t id;
  int then_role;  // after an add: the role to assign, or -1
};
struct RaftCore::Transfer {
  struct raft_transfer req{};
  RaftCore* core;
  Done done;
  uint64_t target;
};

namespace {

int raft_role(Role r) { return r == Role::Voter ? RAFT_VOTER : RAFT_STANDBY; }

// raft_malloc'ed copy of <bytes>, as snapshots want (never a null base).
raft_buffer raft_copy(std::span<const uint8_t> bytes) {
  raft_buffer b{raft_malloc(bytes.empty() ? 1 : bytes.size()), bytes.size()};
  if (b.base != nullptr && !bytes.empty()) std::memcpy(b.base, bytes.data(), bytes.size());
  return b;
}

// An entry as it goes into the log: <command>, then 1..8 bytes that bring it to a multiple
// of 8, the last of them saying how many there are. libraft 0.15's network decoder
// (uvDecodeEntriesBatch) assumes every entry in an AppendEntries batch is padded to 8 bytes
// while its encoder sends them as they are: entries of other sizes are read misaligned
// (dqlite, its main user, pads its own).
raft_buffer padded_entry(std::span<const uint8_t> command) {
  const std::size_t pad = 8 - command.size() % 8;
  raft_buffer b{raft_malloc(command.size() + pad), command.size() + pad};
  if (b.base == nullptr) return b;
  auto* p = static_cast<uint8_t*>(b.base);
  if (!command.empty()) std::memcpy(p, command.data(), command.size());
  std::memset(p + command.size(), 0, pad - 1);
  p[b.len - 1] = static_cast<uint8_t>(pad);
  return b;
}

// The command inside an entry written by padded_entry(); nullopt if it is not one.
std::optional<std::span<const uint8_t>> unpadded(const raft_buffer& b) {
  const auto* p = static_cast<const uint8_t*>(b.base);
  if (b.len == 0 || b.len % 8 != 0) return std::nullopt;
  const std::size_t pad = p[b.len - 1];
  if (pad < 1 || pad > 8) return std::nullopt;
  return std::span<const uint8_t>(p, b.len - pad);
}

Unknown unknown(int status) {
  return Unknown{fmt::format("the request was appended, then raft reported '{}' before it was known to be "
                             "committed: it may or may not be applied",
                             raft_strerror(status))};
}

}  // namespace

RaftCore::RaftCore(StateMachine& sm) : sm_(sm) {
  // Version 1: raft owns the snapshot buffers we hand it; the later fields (async
  // snapshots) are optional in every release.
  fsm_.version = 1;
  fsm_.data = this;
  fsm_.apply = fsm_apply;
  fsm_.snapshot = fsm_snapshot;
  fsm_.restore = fsm_restore;
}

RaftCore::~RaftCore() { stop(); }

// ---- FSM bridge --------------------------------------------------------------------------

int RaftCore::fsm_apply(raft_fsm* fsm, const raft_buffer* buf, void** result) noexcept {
  auto* core = static_cast<RaftCore*>(fsm->data);
  // 0.15's FSM callback is not given the index: raft applies last_applied + 1 and only
  // then advances last_applied (replicationApply).
  const uint64_t index = raft_last_applied(core->raft_) + 1;
  const auto command = unpadded(*buf);
  // Not an entry of ours: raft stops applying here (and retries) rather than diverge.
  if (!command) return RAFT_MALFORMED;
  core->reply_ = core->sm_.apply(index, *command);
  core->reply_index_ = index;
  *result = nullptr;
  return 0;
}

int RaftCore::fsm_snapshot(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n_bufs) noexcept {
  auto* core = static_cast<RaftCore*>(fsm->data);
  std::vector<uint8_t> state;
  try {
    state = core->sm_.snapshot();
  } catch (const std::exception&) {
    return RAFT_IOERR;  // raft keeps its log and tries again at the next threshold
  }
  *bufs = static_cast<raft_buffer*>(raft_malloc(sizeof(raft_buffer)));
  if (*bufs == nullptr) return RAFT_NOMEM;
  (*bufs)[0] = raft_copy(state);
  if ((*bufs)[0].base == nullptr) {
    raft_free(*bufs);
    return RAFT_NOMEM;
  }
  *n_bufs = 1;
  return 0;
}

int RaftCore::fsm_restore(raft_fsm* fsm, raft_buffer* buf) noexcept {
  auto* core = static_cast<RaftCore*>(fsm->data);
  try {
    core->sm_.restore({static_cast<const uint8_t*>(buf->base), buf->len});
  } catch (const std::exception&) {
    return RAFT_MALFORMED;
  }
  raft_free(buf->base);  // on success the buffer is ours to free
  return 0;
}

// ---- requests ----------------------------------------------------------------------------

NotLeader RaftCore::not_leader() const {
  NotLeader n;
  const char* address = nullptr;
  raft_id id = 0;
  raft_leader(raft_, &id, &address);
  // Itself: a leader with a transfer under way refuses too; the next leader is not known yet.
  if (id == raft_->id) return n;
  n.leader_id = id;
  if (address != nullptr) n.leader_address = address;
  return n;
}

// A synchronous refusal by raft: nothing was appended.
ProposeResult RaftCore::refused(int rv) const {
  if (rv == RAFT_NOTLEADER) return not_leader();
  return Failed{fmt::format("{}: {}", raft_strerror(rv), raft_errmsg(raft_))};
}

void RaftCore::when_serving(std::function<void()> submit, Done done) {
  if (stopped_) return done(Failed{"the node is stopping"});
  if (raft_ == nullptr || raft_state(raft_) != RAFT_LEADER) return done(not_leader());
  // Behind earlier waiters too, so that requests reach raft in the order they came.
  if (!serving_ || !waiting_.empty()) {
    waiting_.push_back({std::move(submit), std::move(done)});
    return;
  }
  submit();
}

void RaftCore::propose(std::vector<uint8_t> command, Done done, bool announce) {
  auto submit = [this, command = std::move(command), done, announce]() mutable {
    submit_apply(std::move(command), done, announce);
  };
  when_serving(std::move(submit), std::move(done));
}

void RaftCore::submit_apply(std::vector<uint8_t> command, Done done, bool announce) {
  raft_buffer buf = padded_entry(command);
  if (buf.base == nullptr) return done(Failed{"out of memory"});
  auto* a = new Apply{{}, this, std::move(done), announce};
  a->req.data = a;
  hand_over(a, [&] {
    const int rv = raft_apply(raft_, &a->req, &buf, 1, apply_cb);
    if (rv != 0) raft_free(buf.base);
    return rv;
  });
}

template <class Request, class Call>
void RaftCore::hand_over(Request* req, Call call) {
  const int rv = call();
  if (rv == 0) return;
  Done d = std::move(req->done);
  delete req;
  d(refused(rv));
}

void RaftCore::apply_cb(struct raft_apply* req, int status, void*) noexcept {
  std::unique_ptr<Apply> a(static_cast<Apply*>(req->data));
  RaftCore* core = a->core;
  if (status != 0) return a->done(unknown(status));
  Committed ok{req->index, {}};
  if (core->reply_index_ == req->index) ok.reply = std::move(core->reply_);
  if (a->announce) core->deferred_.push_back([core] { core->announce_commit(); });
  a->done(std::move(ok));
}

// A follower learns a commit from the leader's next AppendEntries, which raft sends when
// there is a new entry or a heartbeat is due: a barrier is the new entry, sent now.
void RaftCore::announce_commit() {
  if (stopped_ || raft_state(raft_) != RAFT_LEADER) return;
  if (notice_in_flight_) {
    notice_again_ = true;
    return;
  }
  auto* n = new Notice{{}, this};
  n->req.data = n;
  if (raft_barrier(raft_, &n->req, notice_cb) != 0) {
    delete n;  // a transfer in progress, say: the next heartbeat tells the followers
    return;
  }
  notice_in_flight_ = true;
}

void RaftCore::notice_cb(struct raft_barrier* req, int) noexcept {
  std::unique_ptr<Notice> n(static_cast<Notice*>(req->data));
  RaftCore* core = n->core;
  core->notice_in_flight_ = false;
  if (std::exchange(core->notice_again_, false)) core->deferred_.push_back([core] { core->announce_commit(); });
}

void RaftCore::add_member(uint64_t id, const std::string& address, Role role, Done done) {
  when_serving([=, this] { submit_change(ChangeKind::Add, id, address, raft_role(role), done); }, done);
}

void RaftCore::assign_role(uint64_t id, Role role, Done done) {
  when_serving([=, this] { submit_change(ChangeKind::Assign, id, {}, raft_role(role), done); }, done);
}

void RaftCore::remove_member(uint64_t id, Done done) {
  when_serving([=, this] { submit_change(ChangeKind::Remove, id, {}, -1, done); }, done);
}

// Add is raft_add(<id>, <address>) then, once that is committed, raft_assign(<role>).
void RaftCore::submit_change(ChangeKind kind, uint64_t id, const std::string& address, int role, Done done) {
  auto* c = new Change{{}, this, std::move(done), id, kind == ChangeKind::Add ? role : -1};
  c->req.data = c;
  hand_over(c, [&] {
    switch (kind) {
      case ChangeKind::Add: return raft_add(raft_, &c->req, id, address.c_str(), change_cb);
      case ChangeKind::Assign: return raft_assign(raft_, &c->req, id, role, change_cb);
      case ChangeKind::Remove: break;
    }
    return raft_remove(raft_, &c->req, id, change_cb);
  });
}

void RaftCore::change_cb(raft_change* req, int status) noexcept {
  std::unique_ptr<Change> c(static_cast<Change*>(req->data));
  RaftCore* core = c->core;
  if (status == RAFT_LEADERSHIPLOST) return c->done(unknown(status));
  // Other errors come before a configuration entry is appended (a promotion whose
  // catch-up rounds failed, say).
  if (status != 0) return c->done(Failed{fmt::format("{}: {}", raft_strerror(status), raft_errmsg(core->raft_))});
  if (c->then_role < 0) return c->done(Committed{});
  // The spare is in; its role is a second change, made outside raft's callback.
  core->deferred_.push_back([core, id = c->id, role = c->then_role, done = std::move(c->done)] {
    if (core->stopped_) return done(Failed{fmt::format("id {} was added as a spare; the node stopped before its role "
                                                       "was assigned",
                                                       id)});
    core->submit_change(ChangeKind::Assign, id, {}, role, done);
  });
}

void RaftCore::transfer_leadership(uint64_t id, Done done) {
  if (stopped_) return done(Failed{"the node is stopping"});
  if (raft_ == nullptr || raft_state(raft_) != RAFT_LEADER) return done(not_leader());
  auto* t = new Transfer{{}, this, std::move(done), id};
  t->req.data = t;
  hand_over(t, [&] { return raft_transfer(raft_, &t->req, id, transfer_cb); });
}

void RaftCore::transfer_cb(struct raft_transfer* req) noexcept {
  std::unique_ptr<Transfer> t(static_cast<Transfer*>(req->data));
  // raft calls back when the target leads or when the election timeout has passed.
  raft_id leader = 0;
  const char* address = nullptr;
  raft_leader(t->core->raft_, &leader, &address);
  if (leader != 0 && leader != t->core->raft_->id && (t->target == 0 || leader == t->target)) {
    return t->done(Committed{});
  }
  t->done(Failed{fmt::format("leadership did not move to {} within the election timeout",
                             t->target == 0 ? std::string("another voter") : fmt::format("id {}", t->target))});
}

// ---- leadership --------------------------------------------------------------------------

void RaftCore::barrier_cb(struct raft_barrier* req, int status) noexcept {
  std::unique_ptr<Barrier> b(static_cast<Barrier*>(req->data));
  RaftCore* core = b->core;
  const bool same_term = raft_state(core->raft_) == RAFT_LEADER && core->raft_->current_term == b->term;
  if (status == 0 && same_term) {
    core->serving_ = true;
  } else if (same_term) {
    core->barrier_term_ = 0;  // append another at the next observe()
  }
}

void RaftCore::observe() {
  if (raft_ == nullptr) return;
  for (auto& f : std::exchange(deferred_, {})) f();
  if (stopped_) return;
  if (raft_state(raft_) != RAFT_LEADER) {
    barrier_term_ = 0;
    serving_ = false;
    // Never handed to raft: a plain redirect, safe to retry elsewhere.
    for (auto& w : std::exchange(waiting_, {})) w.done(not_leader());
    return;
  }
  if (barrier_term_ != raft_->current_term) {
    serving_ = false;
    auto* b = new Barrier{{}, this, raft_->current_term};
    b->req.data = b;
    if (raft_barrier(raft_, &b->req, barrier_cb) == 0) {
      barrier_term_ = b->term;
    } else {
      delete b;  // a transfer in progress, say: try again at the next observe()
    }
  }
  while (serving_ && !waiting_.empty()) {
    Waiting w = std::move(waiting_.front());
    waiting_.pop_front();
    w.submit();
  }
}

void RaftCore::stop() {
  if (stopped_) return;
  stopped_ = true;
  serving_ = false;
  for (auto& w : std::exchange(waiting_, {})) w.done(Failed{"the node is stopping"});
  for (auto& f : std::exchange(deferred_, {})) f();
}

RaftStatus RaftCore::status() const {
  RaftStatus s;
  if (raft_ == nullptr) return s;
  switch (raft_state(raft_)) {
    case RAFT_FOLLOWER: s.state = RaftStatus::State::Follower; break;
    case RAFT_CANDIDATE: s.state = RaftStatus::State::Candidate; break;
    case RAFT_LEADER: s.state = RaftStatus::State::Leader; break;
    default: s.state = RaftStatus::State::Unavailable; break;
  }
  s.term = raft_->current_term;
  const char* address = nullptr;
  raft_id leader = 0;
  raft_leader(raft_, &leader, &address);
  s.leader_id = leader;
  if (address != nullptr) s.leader_address = address;
  s.serving = serving_ && s.state == RaftStatus::State::Leader;
  s.last_applied = raft_last_applied(raft_);
  for (unsigned i = 0; i < raft_->configuration.n; ++i) {
    const raft_server& srv = raft_->configuration.servers[i];
    if (srv.role == RAFT_SPARE) continue;
    s.members.push_back({srv.id, srv.address, srv.role == RAFT_VOTER ? Role::Voter : Role::Standby});
  }
  return s;
}

}  // namespace mqnode::cluster
