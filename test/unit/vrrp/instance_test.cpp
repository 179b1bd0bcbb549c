// The RFC 5798 §6.4 state machine on a fake clock: no sockets, no sleeps.
#include <doctest/doctest.h>

#include "vrrp/instance.hpp"
#include "test_util.hpp"

using namespace mqnode::vrrp;
using namespace mqnode::vrrp::test;
using namespace std::chrono;

namespace {

struct FakeIo : InstanceIo {
  std::vector<Advert> sent;
  bool vips = false;
  int takes = 0, releases = 0;
  std::vector<std::pair<State, std::string>> transitions;
  void send_advert(const Advert& a) override { sent.push_back(a); }
  void take_vips() override {
    vips = true;
    ++takes;
  }
  void release_vips() override {
    vips = false;
    ++releases;
  }
  void on_transition(State, State to, std::string_view reason) override { transitions.emplace_back(to, std::string(reason)); }
};

// Advances the fake clock to <until>, firing every due timer on the way.
void run_until(Instance& in, Time& now, Time until) {
  while (in.deadline() <= until) {
    now = in.deadline();
    in.on_timer(now);
  }
  now = until;
}

}  // namespace

TEST_CASE("RFC timers: skew and master-down interval") {
  FakeIo io;
  SUBCASE("v2: skew (256-p)/256 s") {
    Instance in(config(2, 100), io, kMe);
    CHECK(in.skew_time() == microseconds(609375));  // 156/256 s
    CHECK(in.master_down_interval() == microseconds(3'609'375));
  }
  SUBCASE("v3: skew scaled by the master's interval") {
    Instance in(config(3, 100, 10), io, kMe);
    CHECK(in.skew_time() == microseconds(60937));  // 156*10/256 cs
    CHECK(in.master_down_interval() == microseconds(360937));
  }
}

TEST_CASE("a lone router becomes master after the master-down interval") {
  FakeIo io;
  Instance in(config(), io, kMe);
  Time now{};
  in.start(now);
  CHECK(in.state() == State::Backup);
  CHECK(io.sent.empty());
  CHECK_FALSE(io.vips);
  run_until(in, now, now + milliseconds(3600));
  CHECK(in.state() == State::Backup);
  run_until(in, now, now + milliseconds(10));  // 3.609375 s
  CHECK(in.state() == State::Master);
  CHECK(io.vips);
  REQUIRE(io.sent.size() == 1);
  CHECK(io.sent[0].priority == 100);
  run_until(in, now, now + seconds(5));
  CHECK(io.sent.size() == 6);  // one per advert interval
  CHECK(in.stats().adverts_sent == 6);
}

TEST_CASE("priority 255 owner is master at once") {
  FakeIo io;
  Instance in(config(3, 255), io, kMe);
  in.start(Time{});
  CHECK(in.state() == State::Master);
  CHECK(io.vips);
  CHECK(io.sent.size() == 1);
}

TEST_CASE("backup: adverts from a master keep it backup") {
  FakeIo io;
  Instance in(config(3, 100), io, kMe);
  Time now{};
  in.start(now);
  for (int i = 0; i < 20; ++i) {
    run_until(in, now, now + seconds(1));
    in.on_advert(now, advert(150), kPeerLo);
  }
  CHECK(in.state() == State::Backup);
  CHECK(in.master_ip() == kPeerLo);
  SUBCASE("master silent → takeover after 3 × advert + skew") {
    run_until(in, now, now + milliseconds(3600));
    CHECK(in.state() == State::Backup);
    run_until(in, now, now + milliseconds(10));
    CHECK(in.state() == State::Master);
  }
  SUBCASE("priority 0 → takeover after the skew time only (RFC 5798 §6.4.2)") {
    in.on_advert(now, advert(0), kPeerLo);
    run_until(in, now, now + milliseconds(600));
    CHECK(in.state() == State::Backup);
    run_until(in, now, now + milliseconds(10));
    CHECK(in.state() == State::Master);
    CHECK(io.transitions.back().second == "master resigned (priority 0)");
  }
}

TEST_CASE("v3 backup learns the master's interval") {
  FakeIo io;
  Instance in(config(3, 100, 100), io, kMe);
  Time now{};
  in.start(now);
  in.on_advert(now, advert(150, 10), kPeerLo);
  CHECK(in.master_interval_cs() == 10);
  run_until(in, now, now + milliseconds(350));
  CHECK(in.state() == State::Backup);
  run_until(in, now, now + milliseconds(20));  // 3×0.1 s + 156×0.1/256 s ≈ 0.361 s
  CHECK(in.state() == State::Master);
}

TEST_CASE("preempt: a higher-priority backup takes over from a lower master") {
  FakeIo io;
  auto c = config(3, 150);
  SUBCASE("preempt on (default)") {
    Instance in(c, io, kMe);
    Time now{};
    in.start(now);
    for (int i = 0; i < 4; ++i) {
      in.on_advert(now, advert(100), kPeerLo);
      run_until(in, now, now + seconds(1));
    }
    CHECK(in.state() == State::Master);
  }
  SUBCASE("nopreempt: stays backup under a lower master") {
    c.preempt = false;
    Instance in(c, io, kMe);
    Time now{};
    in.start(now);
    for (int i = 0; i < 10; ++i) {
      in.on_advert(now, advert(100), kPeerLo);
      run_until(in, now, now + seconds(1));
    }
    CHECK(in.state() == State::Backup);
  }
  SUBCASE("preempt_delay: no preemption during the delay after start") {
    c.preempt_delay = seconds(5);
    Instance in(c, io, kMe);
    Time now{};
    in.start(now);
    for (int i = 0; i < 5; ++i) {
      in.on_advert(now, advert(100), kPeerLo);
      run_until(in, now, now + seconds(1));
    }
    CHECK(in.state() == State::Backup);
    for (int i = 0; i < 5; ++i) {
      in.on_advert(now, advert(100), kPeerLo);
      run_until(in, now, now + seconds(1));
    }
    CHECK(in.state() == State::Master);
  }
}

TEST_CASE("master: yields to higher priority, and to equal priority from a higher address") {
  FakeIo io;
  Instance in(config(3, 100), io, kMe);
  Time now{};
  in.start(now);
  run_until(in, now, now + seconds(4));
  REQUIRE(in.state() == State::Master);
  SUBCASE("lower priority is discarded") {
    in.on_advert(now, advert(50), kPeerHi);
    CHECK(in.state() == State::Master);
  }
  SUBCASE("equal priority, lower address is discarded") {
    in.on_advert(now, advert(100), kPeerLo);
    CHECK(in.state() == State::Master);
  }
  SUBCASE("equal priority, higher address wins (RFC 5798 §6.4.3)") {
    in.on_advert(now, advert(100), kPeerHi);
    CHECK(in.state() == State::Backup);
    CHECK_FALSE(io.vips);
  }
  SUBCASE("higher priority") {
    in.on_advert(now, advert(200), kPeerLo);
    CHECK(in.state() == State::Backup);
    CHECK_FALSE(io.vips);
    CHECK(io.releases == 1);
  }
  SUBCASE("priority 0 from another router: advertise at once") {
    auto n = io.sent.size();
    in.on_advert(now, advert(0), kPeerLo);
    CHECK(in.state() == State::Master);
    CHECK(io.sent.size() == n + 1);
  }
}

TEST_CASE("shutdown of a master sends priority 0 and releases the VIPs") {
  FakeIo io;
  Instance in(config(), io, kMe);
  Time now{};
  in.start(now);
  run_until(in, now, now + seconds(4));
  REQUIRE(in.state() == State::Master);
  in.shutdown(now);
  CHECK(in.state() == State::Init);
  CHECK(io.sent.back().priority == 0);
  CHECK_FALSE(io.vips);
  CHECK(in.deadline() == Time::max());
  CHECK(in.stats().priority0_sent == 1);
}

TEST_CASE("tracking: a fault-type track goes to Fault at once with a priority-0 advert") {
  FakeIo io;
  auto c = config();
  c.track = {Track{"lb", 0}, Track{"broker", -60}};
  Instance in(c, io, kMe);
  Time now{};
  in.start(now);
  run_until(in, now, now + seconds(4));
  REQUIRE(in.state() == State::Master);
  auto n = io.sent.size();

  SUBCASE("lb down → Fault, priority 0, VIPs released, no more adverts") {
    in.on_track(now, "lb", false, "all backends down");
    CHECK(in.state() == State::Fault);
    REQUIRE(io.sent.size() == n + 1);
    CHECK(io.sent.back().priority == 0);
    CHECK_FALSE(io.vips);
    run_until(in, now, now + seconds(10));
    CHECK(io.sent.size() == n + 1);
    CHECK(io.transitions.back().second == "tracked module 'lb' down: all backends down");
    SUBCASE("adverts are ignored in Fault") {
      in.on_advert(now, advert(0), kPeerLo);
      run_until(in, now, now + seconds(10));
      CHECK(in.state() == State::Fault);
    }
    SUBCASE("lb back → Backup, then Master if nobody else is there") {
      in.on_track(now, "lb", true, "");
      CHECK(in.state() == State::Backup);
      run_until(in, now, now + seconds(4));
      CHECK(in.state() == State::Master);
    }
  }
  SUBCASE("weighted track lowers the priority and advertises at once") {
    in.on_track(now, "broker", false, "stopping");
    CHECK(in.state() == State::Master);
    CHECK(in.priority() == 40);
    REQUIRE(io.sent.size() == n + 1);
    CHECK(io.sent.back().priority == 40);
    in.on_track(now, "broker", true, "");
    CHECK(in.priority() == 100);
  }
  SUBCASE("unknown module names are ignored") {
    in.on_track(now, "cluster", false, "");
    CHECK(in.state() == State::Master);
  }
  SUBCASE("a repeat of the same health does nothing") {
    in.on_track(now, "lb", true, "");
    CHECK(io.sent.size() == n);
  }
}

TEST_CASE("tracking: down at start → Fault, never Master") {
  FakeIo io;
  auto c = config();
  c.track = {Track{"lb", 0}};
  Instance in(c, io, kMe);
  Time now{};
  in.on_track(now, "lb", false, "not running in this process");
  in.start(now);
  CHECK(in.state() == State::Fault);
  run_until(in, now, now + seconds(10));
  CHECK(in.state() == State::Fault);
  CHECK(io.sent.empty());
  CHECK(io.takes == 0);
}

TEST_CASE("weights clamp to 1..254; the owner keeps 255") {
  FakeIo io;
  auto c = config(3, 20);
  c.track = {Track{"lb", -100}};
  Instance in(c, io, kMe);
  in.on_track(Time{}, "lb", false, "");
  CHECK(in.priority() == 1);
  auto o = config(3, 255);
  o.track = {Track{"lb", -100}};
  Instance owner(o, io, kMe);
  owner.on_track(Time{}, "lb", false, "");
  CHECK(owner.priority() == 255);
  // keepalived: a positive weight is added while the track is up.
  auto h = config(3, 200);
  h.track = {Track{"lb", 100}};
  Instance high(h, io, kMe);
  CHECK(high.priority() == 254);
  high.on_track(Time{}, "lb", false, "");
  CHECK(high.priority() == 200);
}

TEST_CASE("two instances on one fake wire elect the higher priority") {
  // A tiny in-memory network: each instance's adverts are delivered to the other.
  struct Wire : InstanceIo {
    Instance* peer = nullptr;
    IpAddr me;
    Time* now = nullptr;
    bool vips = false;
    void send_advert(const Advert& a) override {
      if (peer) peer->on_advert(*now, a, me);
    }
    void take_vips() override { vips = true; }
    void release_vips() override { vips = false; }
    void on_transition(State, State, std::string_view) override {}
  };
  Time now{};
  Wire wa, wb;
  wa.me = kPeerLo;
  wb.me = kPeerHi;
  wa.now = wb.now = &now;
  Instance a(config(2, 100), wa, kPeerLo), b(config(2, 50), wb, kPeerHi);
  wa.peer = &b;
  wb.peer = &a;
  a.start(now);
  b.start(now);
  for (int i = 0; i < 1000; ++i) {
    Time next = std::min(a.deadline(), b.deadline());
    if (next > Time{} + seconds(20)) break;
    now = next;
    if (a.deadline() <= now) a.on_timer(now);
    if (b.deadline() <= now) b.on_timer(now);
  }
  CHECK(a.state() == State::Master);
  CHECK(b.state() == State::Backup);
  CHECK(wa.vips);
  CHECK_FALSE(wb.vips);
  a.shutdown(now);
  // b takes over after its skew time (206/256 s) instead of 3.8 s.
  Time t0 = now;
  while (b.state() != State::Master && b.deadline() != Time::max()) {
    now = b.deadline();
    b.on_timer(now);
  }
  CHECK(b.state() == State::Master);
  CHECK(now - t0 < seconds(1));
}

TEST_CASE("dump: state, last transition and every counter for the status endpoint") {
  FakeIo io;
  auto c = config();
  c.track = {Track{"lb", 0}};
  Instance in(c, io, kMe);
  Time now{};
  in.start(now);
  in.stats().count_drop(Drop::bad_checksum);
  in.on_track(now, "lb", false, "no server available in backend amqp");
  nlohmann::json j;
  in.dump(j);
  CHECK(j["state"] == "fault");
  CHECK(j["last_transition"]["from"] == "backup");
  CHECK(j["last_transition"]["reason"] == "tracked module 'lb' down: no server available in backend amqp");
  CHECK(j["track"]["lb"]["up"] == false);
  CHECK(j["stats"]["became_fault"] == 1);
  CHECK(j["stats"]["dropped"]["bad_checksum"] == 1);
  CHECK(j["stats"]["dropped"].size() == 14);
}

TEST_CASE("metrics: the counters of driven instances in Prometheus text, one family at a time") {
  FakeIo io;
  Instance a(config(3, 100), io, kMe);
  auto cb = config(3, 50);
  cb.name = "VI_2";
  cb.vips = {Vip{IpAddr::v4(0x0ad60065), 24}};
  Instance b(cb, io, kMe);
  Time now{};
  a.start(now);
  b.start(now);
  run_until(a, now, now + seconds(4));  // a: master after 3.61 s, one advert at the takeover
  a.on_advert(now, advert(150), kPeerHi);  // a higher master: a goes back to Backup
  a.stats().count_drop(Drop::bad_ttl);
  a.stats().count_drop(Drop::bad_ttl);
  b.stats().count_drop(Drop::other_vrid);
  REQUIRE(a.state() == State::Backup);

  mqnode::core::MetricsWriter w;
  const Instance* both[] = {&a, &b};
  write_metrics(w, both);
  const std::string& t = w.text();
  auto has = [&](const std::string& line) {
    INFO(t);
    CHECK_MESSAGE(t.find(line + "\n") != std::string::npos, line);
  };
  has("# TYPE mqnode_vrrp_state gauge");
  has(R"(mqnode_vrrp_state{instance="VI_1",state="backup"} 1)");
  has(R"(mqnode_vrrp_state{instance="VI_1",state="master"} 0)");
  has(R"(mqnode_vrrp_state{instance="VI_2",state="backup"} 1)");
  has(R"(mqnode_vrrp_priority{instance="VI_2"} 50)");
  has("# TYPE mqnode_vrrp_adverts_sent_total counter");
  has(R"(mqnode_vrrp_adverts_sent_total{instance="VI_1"} 1)");
  has(R"(mqnode_vrrp_adverts_received_total{instance="VI_1"} 1)");
  has(R"(mqnode_vrrp_became_master_total{instance="VI_1"} 1)");
  has(R"(mqnode_vrrp_became_backup_total{instance="VI_1"} 2)");  // startup, then the higher master
  has(R"(mqnode_vrrp_master_changes_total{instance="VI_1"} 2)");  // itself, then 10.214.0.3
  has(R"(mqnode_vrrp_became_master_total{instance="VI_2"} 0)");
  has(R"(mqnode_vrrp_adverts_dropped_total{instance="VI_1",reason="bad_ttl"} 2)");
  has(R"(mqnode_vrrp_adverts_dropped_total{instance="VI_2",reason="other_vrid"} 1)");
  has(R"(mqnode_vrrp_adverts_dropped_total{instance="VI_2",reason="bad_ttl"} 0)");
  // Each family is announced once and its samples follow it without interruption.
  std::size_t at = 0, families = 0;
  std::string current;
  while (at < t.size()) {
    auto end = t.find('\n', at);
    std::string line = t.substr(at, end - at);
    at = end + 1;
    if (line.rfind("# TYPE ", 0) == 0) {
      ++families;
      current = line.substr(7, line.find(' ', 7) - 7);
    } else if (line[0] != '#') {
      CHECK_MESSAGE(line.rfind(current + "{", 0) == 0, line);
    }
  }
  CHECK(families == 13);  // state, priority, 10 counters, drops
}
