#include "cluster/raft_node.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <asio/post.hpp>
#include <fmt/format.h>

#include "cluster/raft_core.hpp"
#include "cluster/raft_transport.hpp"

namespace mqnode::cluster {

// What the loop keeps of the raft thread's reports. Posted work holds it weakly: once the
// node is gone, late results find nothing to update.
struct RaftNode::LoopSide {
  RaftStatus status;
  std::map<uint64_t, std::string> names;
  bool stopped = false;  // status reports still in the loop's queue are stale
};

namespace {

constexpr uint64_t kAppendDrainMs = 5000;

// The socket's descriptor, taken from asio: release() deregisters it from asio's reactor.
// (A dup() + close() would leave the epoll registration of the shared file description
// behind: asio skips EPOLL_CTL_DEL on close for sockets it did not dup itself.)
int take_fd(Link& link) {
  asio::error_code ec;
  const int fd = link.socket.release(ec);
  return ec ? -1 : fd;
}

}  // namespace

// Everything the raft thread owns. Built and destroyed on the loop; between start() and
// the end of run() only the raft thread touches it, except post() (any thread).
struct RaftNode::Thread {
  Thread(asio::io_context& io, std::weak_ptr<LoopSide> side, std::shared_ptr<Links> links, StateMachine& sm,
         core::Logger log)
      : io(io), side(std::move(side)), links(std::move(links)), log(std::move(log)), core(sm),
        transport(&loop, [this](uint64_t token, uint64_t id, std::string address) { dial(token, id, std::move(address)); }) {}

  // Any thread. False once the raft thread stopped taking work.
  bool post(std::function<void(Thread&)> task) {
    std::lock_guard lock(mu);
    if (!accepting) return false;
    inbox.push_back(std::move(task));
    uv_async_send(&wake);  // under the lock: the handle cannot be closed meanwhile
    return true;
  }

  // The thread's body: sets up libuv and raft, reports through <started>, runs until closed.
  void run(const RaftNodeConfig& cfg, const NodeIdentity& self, bool bootstrap, std::promise<std::string> started);
  std::string start_raft(const RaftNodeConfig& cfg, const NodeIdentity& self, bool bootstrap);
  void begin_close();
  void maybe_close();
  void on_raft_closed();
  void drain();
  void publish();
  void dial(uint64_t token, uint64_t id, std::string address);

  asio::io_context& io;
  std::weak_ptr<LoopSide> side;
  std::shared_ptr<Links> links;
  core::Logger log;
  uv_loop_t loop{};
  uv_async_t wake{};
  uv_prepare_t prepare{};
  raft_io io_uv{};
  struct raft r {};
  RaftCore core;
  RaftTransport transport;
  bool closing = false;  // no new requests; raft_close() once appends are written
  bool closed = false;   // raft_close() called
  uint64_t close_by = 0;  // uv_now() after which raft_close() waits no longer
  RaftStatus published;
  std::function<void()> on_exit;  // raft thread: posted to the loop as run() ends (stop_async)
  std::mutex mu;
  std::vector<std::function<void(Thread&)>> inbox;  // under mu
  bool accepting = false;                           // under mu
  std::thread thread;
};

void RaftNode::Thread::run(const RaftNodeConfig& cfg, const NodeIdentity& self, bool bootstrap,
                           std::promise<std::string> started) {
  // libuv writes with write(2): a peer that went away would raise SIGPIPE. Blocked in this
  // thread it stays pending and the write fails with EPIPE, whatever the process does
  // about the signal (app/ ignores it; a test binary may not).
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  uv_loop_init(&loop);
  wake.data = this;
  uv_async_init(&loop, &wake, [](uv_async_t* h) { static_cast<Thread*>(h->data)->drain(); });
  // Before each wait for events: every raft callback of the iteration has run by then.
  prepare.data = this;
  uv_prepare_init(&loop, &prepare);
  uv_prepare_start(&prepare, [](uv_prepare_t* h) {
    auto* t = static_cast<Thread*>(h->data);
    t->core.observe();
    t->publish();
    t->maybe_close();
  });
  {
    std::lock_guard lock(mu);
    accepting = true;
  }
  const std::string error = start_raft(cfg, self, bootstrap);
  if (!error.empty() && !closing) {
    // raft was not even initialised: only our own handles to close.
    on_raft_closed();
  }
  started.set_value(error);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (io_uv.impl != nullptr) raft_uv_close(&io_uv);
  uv_loop_close(&loop);
  if (on_exit) asio::post(io, std::move(on_exit));
}

// Raft thread. "" once raft runs; otherwise the reason, with the close under way.
std::string RaftNode::Thread::start_raft(const RaftNodeConfig& cfg, const NodeIdentity& self, bool bootstrap) {
  int rv = raft_uv_init(&io_uv, &loop, cfg.dir.c_str(), transport.get());
  if (rv != 0) {
    io_uv.impl = nullptr;
    return fmt::format("raft_uv_init: {}", raft_strerror(rv));
  }
  rv = raft_init(&r, &io_uv, core.fsm(), self.id, self.address.c_str());
  if (rv != 0) return fmt::format("raft_init: {}: {}", raft_strerror(rv), raft_errmsg(&r));
  r.data = this;
  core.attach(&r);
  auto fail = [&](std::string_view what) {
    std::string e = fmt::format("{}: {}: {}", what, raft_strerror(rv), raft_errmsg(&r));
    begin_close();
    return e;
  };
  if (bootstrap) {
    raft_configuration conf;
    raft_configuration_init(&conf);
    rv = raft_configuration_add(&conf, self.id, self.address.c_str(), RAFT_VOTER);
    if (rv == 0) rv = raft_bootstrap(&r, &conf);
    raft_configuration_close(&conf);
    // CANTBOOTSTRAP: there is raft state already, which is what a restart looks like.
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) return fail("raft_bootstrap");
  }
  raft_set_election_timeout(&r, cfg.election_timeout_ms);
  raft_set_heartbeat_timeout(&r, cfg.heartbeat_timeout_ms);
  raft_set_snapshot_threshold(&r, cfg.snapshot_threshold);
  raft_set_snapshot_trailing(&r, cfg.snapshot_trailing);
  // Pre-vote: a node cut off and back does not depose a healthy leader with its higher term.
  raft_set_pre_vote(&r, true);
  rv = raft_start(&r);
  if (rv != 0) return fail("raft_start");
  return {};
}

void RaftNode::Thread::begin_close() {
  if (closing) return;
  closing = true;
  core.stop();
  close_by = uv_now(&loop) + kAppendDrainMs;
  maybe_close();
}

// libraft 0.15 crashed in raft_close() while log appends were still being written (a
// leader stopped with proposals in flight: SEGV in the log's entry refcount table, under
// the cancelled appends' callbacks): wait until what was appended is on disk, for
// kAppendDrainMs at most. Called again before each libuv wait.
void RaftNode::Thread::maybe_close() {
  if (!closing || closed) return;
  if (r.last_stored < raft_last_index(&r) && uv_now(&loop) < close_by) return;
  closed = true;
  raft_close(&r, [](struct raft* r) { static_cast<Thread*>(r->data)->on_raft_closed(); });
}

// Raft thread: raft has let go of everything; answer what is still queued, then close
// our handles so that uv_run() returns.
void RaftNode::Thread::on_raft_closed() {
  core.stop();
  {
    std::lock_guard lock(mu);
    accepting = false;
  }
  drain();
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
}

void RaftNode::Thread::drain() {
  std::vector<std::function<void(Thread&)>> tasks;
  {
    std::lock_guard lock(mu);
    tasks.swap(inbox);
  }
  for (auto& task : tasks) task(*this);
}

void RaftNode::Thread::publish() {
  RaftStatus s = core.status();
  if (s == published) return;
  published = s;
  asio::post(io, [side = side, s = std::move(s)]() mutable {
    if (auto p = side.lock(); p && !p->stopped) p->status = std::move(s);
  });
}

// Raft thread: raft wants a connection to node <id> at <address>; the loop dials it and
// the answer comes back as transport.connected(<token>, fd).
void RaftNode::Thread::dial(uint64_t token, uint64_t id, std::string address) {
  asio::post(io, [this, side = side, token, id, address = std::move(address)] {
    if (side.expired()) return;  // the node is gone; raft's close has answered every dial
    links->connect(address, Purpose::Raft, [this, side, token, id, address](std::optional<Link> link, std::string) {
      int fd = -1;
      auto s = side.lock();
      if (link && s) {
        s->names[link->peer.id] = link->peer.name;
        if (link->peer.id == id) {
          fd = take_fd(*link);
        } else {
          // Another node answers at that address (a wiped node rejoined under a new id, say):
          // raft's messages for <id> must not reach it.
          log.warn("raft link refused address={} expected_id={} peer_id={} peer={} reason=\"another node answers at "
                   "this address\" action=\"remove the stale member or fix its address\"",
                   address, id, link->peer.id, link->peer.name);
        }
      }
      if (!s || !post([token, fd](Thread& t) { t.transport.connected(token, fd); })) {
        if (fd >= 0) ::close(fd);
      }
    });
  });
}

// ---- loop side ---------------------------------------------------------------------------

RaftNode::RaftNode(asio::io_context& io, std::shared_ptr<Links> links, RaftNodeConfig cfg, StateMachine& sm,
                   core::Logger log)
    : io_(io), links_(std::move(links)), cfg_(std::move(cfg)), sm_(sm), log_(std::move(log)),
      side_(std::make_shared<LoopSide>()) {
  side_->names[links_->self().id] = links_->self().name;
}

RaftNode::~RaftNode() { stop(); }

void RaftNode::start(bool bootstrap_if_empty) {
  if (thread_) throw std::logic_error("RaftNode::start called twice");
  std::error_code ec;
  std::filesystem::create_directories(cfg_.dir, ec);
  if (ec) throw std::runtime_error(fmt::format("raft data dir {}: {}", cfg_.dir.string(), ec.message()));
  thread_ = std::make_unique<Thread>(io_, side_, links_, sm_, log_.child("raft"));
  std::promise<std::string> started;
  auto result = started.get_future();
  thread_->thread = std::thread([t = thread_.get(), cfg = cfg_, self = links_->self(), bootstrap_if_empty,
                                 p = std::move(started)]() mutable { t->run(cfg, self, bootstrap_if_empty, std::move(p)); });
  const std::string error = result.get();
  if (!error.empty()) {
    thread_->thread.join();
    thread_.reset();
    throw std::runtime_error(fmt::format("raft in {}: {}", cfg_.dir.string(), error));
  }
  links_->on_accept(Purpose::Raft, [this](Link link) {
    side_->names[link.peer.id] = link.peer.name;
    const int fd = take_fd(link);
    if (fd < 0) return;
    auto task = [fd, id = link.peer.id, address = link.peer.address](Thread& t) { t.transport.accepted(fd, id, address); };
    if (!thread_->post(std::move(task))) ::close(fd);
  });
  log_.info("raft started id={} name={} address={} dir={}", links_->self().id, links_->self().name,
            links_->self().address, cfg_.dir.string());
}

void RaftNode::stop() {
  if (!thread_ || !thread_->thread.joinable()) return;
  links_->on_accept(Purpose::Raft, nullptr);
  thread_->post([](Thread& t) { t.begin_close(); });
  thread_->thread.join();
  side_->stopped = true;
  side_->status = RaftStatus{};
  log_.info("raft stopped id={}", links_->self().id);
}

void RaftNode::stop_async(std::function<void()> done) {
  if (!thread_ || !thread_->thread.joinable()) return asio::post(io_, std::move(done));
  links_->on_accept(Purpose::Raft, nullptr);
  // Runs on the loop once the raft thread is at its very end: the join is immediate.
  auto finish = [this, side = std::weak_ptr<LoopSide>(side_), done]() {
    if (side.expired()) return;  // destroyed meanwhile: its destructor joined
    stop();
    done();
  };
  if (!thread_->post([finish](Thread& t) {
        t.on_exit = finish;
        t.begin_close();
      })) {
    // The thread stopped taking work: it is ending by itself.
    stop();
    asio::post(io_, std::move(done));
  }
}

RaftNode::Done RaftNode::on_loop(Done done) const {
  return [&io = io_, side = std::weak_ptr<LoopSide>(side_), done = std::move(done)](ProposeResult r) {
    asio::post(io, [side, done, r = std::move(r)]() mutable {
      auto* redirect = std::get_if<NotLeader>(&r);
      if (auto s = side.lock(); s && redirect) {
        auto it = s->names.find(redirect->leader_id);
        if (it != s->names.end()) redirect->leader_name = it->second;
      }
      done(std::move(r));
    });
  };
}

void RaftNode::to_raft(std::function<void(Thread&)> task, const Done& done) {
  if (thread_ && thread_->post(std::move(task))) return;
  asio::post(io_, [done] { done(Failed{"raft is not running on this node"}); });
}

void RaftNode::propose(std::vector<uint8_t> command, Done done, bool announce) {
  to_raft([command = std::move(command), reply = on_loop(done), announce](Thread& t) mutable {
    t.core.propose(std::move(command), std::move(reply), announce);
  }, done);
}

void RaftNode::add_member(uint64_t id, const std::string& address, Role role, Done done) {
  to_raft([=, reply = on_loop(done)](Thread& t) { t.core.add_member(id, address, role, reply); }, done);
}

void RaftNode::assign_role(uint64_t id, Role role, Done done) {
  to_raft([=, reply = on_loop(done)](Thread& t) { t.core.assign_role(id, role, reply); }, done);
}

void RaftNode::remove_member(uint64_t id, Done done) {
  to_raft([=, reply = on_loop(done)](Thread& t) { t.core.remove_member(id, reply); }, done);
}

void RaftNode::transfer_leadership(uint64_t id, Done done) {
  to_raft([=, reply = on_loop(done)](Thread& t) { t.core.transfer_leadership(id, reply); }, done);
}

const RaftStatus& RaftNode::status() const { return side_->status; }

std::string RaftNode::name_of(uint64_t id) const {
  auto it = side_->names.find(id);
  return it == side_->names.end() ? std::string() : it->second;
}

void RaftNode::dump(nlohmann::json& out) const {
  static constexpr const char* kStates[] = {"unavailable", "follower", "candidate", "leader"};
  const RaftStatus& s = side_->status;
  out["state"] = kStates[static_cast<int>(s.state)];
  out["term"] = s.term;
  out["leader"] = {{"id", s.leader_id}, {"address", s.leader_address}, {"name", name_of(s.leader_id)}};
  out["serving"] = s.serving;
  out["last_applied"] = s.last_applied;
  out["members"] = nlohmann::json::array();
  for (const Member& m : s.members) {
    out["members"].push_back({{"id", m.id},
                              {"address", m.address},
                              {"name", name_of(m.id)},
                              {"role", m.role == Role::Voter ? "voter" : "standby"}});
  }
}

}  // namespace mqnode::cluster
