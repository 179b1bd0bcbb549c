// InstanceRunner over a fake Link and a hand-driven Clock: what goes on the wire and onto
// the interface at each transition, with no sockets and no sleeps.
#include <doctest/doctest.h>

#include <algorithm>
#include <utility>

#include <asio/io_context.hpp>

#include "test_util.hpp"
#include "vrrp/instance_runner.hpp"

using namespace mqnode;
using namespace mqnode::vrrp;
using namespace mqnode::vrrp::test;
using namespace std::chrono;

namespace {

class FakeClock final : public Clock {
 public:
  Time now() const override { return now_; }
  std::unique_ptr<Timer> timer() override { return std::make_unique<FakeTimer>(*this); }

  // Moves time on by <d>, firing each armed timer at its own time, earliest first.
  void advance(microseconds d) {
    const Time until = now_ + d;
    for (;;) {
      auto due = std::min_element(timers_.begin(), timers_.end(), [](const FakeTimer* a, const FakeTimer* b) {
        return a->fn && (!b->fn || a->at < b->at);
      });
      if (due == timers_.end() || !(*due)->fn || (*due)->at > until) break;
      now_ = (*due)->at;
      std::exchange((*due)->fn, nullptr)();
    }
    now_ = until;
  }

 private:
  struct FakeTimer final : Timer {
    explicit FakeTimer(FakeClock& c) : clock(c) { clock.timers_.push_back(this); }
    ~FakeTimer() override { std::erase(clock.timers_, this); }
    void arm(Time t, std::function<void()> f) override {
      at = t;
      fn = std::move(f);
    }
    void cancel() override { fn = nullptr; }
    FakeClock& clock;
    Time at{};
    std::function<void()> fn;
  };

  Time now_ = Time{} + hours(1);
  std::vector<FakeTimer*> timers_;
};

// Records what the runner does to the network; the interface holds kMe/24.
struct FakeLink final : Link {
  std::vector<Vip> addrs{Vip{kMe, 24}};
  std::vector<std::pair<uint8_t, IpAddr>> adverts;  // (priority, destination)
  std::vector<IpAddr> removed;
  int announcements = 0;
  bool opened = false, closed = false;
  std::function<void(const CheckResult&)> deliver;

  std::vector<Vip> addresses() override { return addrs; }
  void open(const IpAddr&) override { opened = true; }
  void receive(Expect, std::function<void(const CheckResult&)> on_advert) override { deliver = std::move(on_advert); }
  void close() override { closed = true; }
  bool send(std::span<const uint8_t> pkt, const IpAddr& dst, std::string&) override {
    adverts.emplace_back(pkt[2], dst);  // the priority octet (RFC 5798 §5.2.4)
    return true;
  }
  Netlink::Outcome add(const Vip& vip, const std::string&, std::string&) override {
    addrs.push_back(vip);
    return Netlink::Outcome::Done;
  }
  Netlink::Outcome remove(const Vip& vip, std::string&) override {
    removed.push_back(vip.addr);
    std::erase_if(addrs, [&](const Vip& a) { return a.addr == vip.addr; });
    return Netlink::Outcome::Done;
  }
  bool announce(const IpAddr&, std::string&) override {
    ++announcements;
    return true;
  }
  bool holds_vip() const {
    return std::any_of(addrs.begin(), addrs.end(), [](const Vip& a) { return a.addr == IpAddr::v4(0x0ad60064); });
  }
};

CheckResult received(uint8_t priority, const IpAddr& src) {
  CheckResult r;
  r.kind = CheckResult::Kind::Ok;
  r.advert = advert(priority);
  r.src = src;
  return r;
}

struct Rig {
  explicit Rig(InstanceConfig c) : cfg(std::move(c)) {
    auto l = std::make_unique<FakeLink>();
    link = l.get();
    runner = std::make_unique<InstanceRunner>(io, cfg, "/vrrp/instances/0",
                                              core::Logger(std::make_shared<core::LogSink>(), "vrrp.VI_1"), std::move(l),
                                              clock, [this] { ++transitions; });
  }
  // Opens and starts the runner, then lets the master-down interval pass: master.
  void become_master() {
    runner->open();
    runner->start();
    clock.advance(runner->instance().master_down_interval() + milliseconds(1));
  }
  asio::io_context io;  // notify hooks only; none configured
  InstanceConfig cfg;
  FakeClock clock;
  FakeLink* link;
  std::unique_ptr<InstanceRunner> runner;
  int transitions = 0;
};

}  // namespace

TEST_CASE("a backup that hears no master takes over: advert, VIPs, gratuitous ARPs") {
  auto c = config();
  c.garp_count = 3;
  c.garp_interval = milliseconds(100);
  Rig rig(c);
  rig.runner->open();
  CHECK(rig.link->opened);
  rig.runner->start();
  CHECK(rig.runner->instance().state() == State::Backup);
  rig.clock.advance(milliseconds(3600));
  CHECK(rig.link->adverts.empty());
  CHECK_FALSE(rig.link->holds_vip());

  rig.clock.advance(milliseconds(10));  // past the master-down interval, 3.609375 s
  CHECK(rig.runner->instance().state() == State::Master);
  REQUIRE(rig.link->adverts.size() == 1);
  CHECK(rig.link->adverts[0] == std::pair{uint8_t{100}, kGroup4});
  CHECK(rig.link->holds_vip());
  CHECK(rig.link->announcements == 1);
  CHECK(rig.transitions == 2);  // init → backup → master

  rig.clock.advance(milliseconds(250));  // the two repeats, 100 ms apart
  CHECK(rig.link->announcements == 3);
  rig.clock.advance(seconds(5));
  CHECK(rig.link->announcements == 3);
  CHECK(rig.link->adverts.size() == 6);  // one per advert interval
}

TEST_CASE("unicast peers each get the advert") {
  auto c = config(3, 255);
  c.unicast_peers = {kPeerLo, kPeerHi};
  Rig rig(c);
  rig.runner->open();
  rig.runner->start();  // the address owner is master at once
  CHECK(rig.link->adverts == std::vector<std::pair<uint8_t, IpAddr>>{{255, kPeerLo}, {255, kPeerHi}});
}

TEST_CASE("a higher priority master sends a master back to backup: VIPs removed, ARPs stop") {
  auto c = config();
  c.garp_count = 5;
  Rig rig(c);
  rig.become_master();
  REQUIRE(rig.link->holds_vip());
  REQUIRE(rig.link->deliver);
  rig.link->deliver(received(200, kPeerHi));
  CHECK(rig.runner->instance().state() == State::Backup);
  CHECK_FALSE(rig.link->holds_vip());
  const int announced = rig.link->announcements;
  const auto sent = rig.link->adverts.size();
  rig.clock.advance(seconds(1));
  CHECK(rig.link->announcements == announced);
  CHECK(rig.link->adverts.size() == sent);
}

TEST_CASE("invalid adverts are counted and change nothing") {
  Rig rig(config());
  rig.become_master();
  CheckResult bad;
  bad.kind = CheckResult::Kind::Drop;
  bad.reason = Drop::bad_ttl;
  bad.src = kPeerHi;
  rig.link->deliver(bad);
  CHECK(rig.runner->instance().state() == State::Master);
  CHECK(rig.runner->instance().stats().bad_ttl == 1);
}

TEST_CASE("shutdown as master: a priority-0 advert, VIPs removed, link closed, timers stopped") {
  Rig rig(config());
  rig.become_master();
  rig.runner->shutdown();
  REQUIRE_FALSE(rig.link->adverts.empty());
  CHECK(rig.link->adverts.back().first == 0);
  CHECK_FALSE(rig.link->holds_vip());
  CHECK(rig.link->closed);
  const auto sent = rig.link->adverts.size();
  rig.clock.advance(seconds(10));
  CHECK(rig.link->adverts.size() == sent);
}

TEST_CASE("open: a leftover VIP is removed unless this router owns the address") {
  SUBCASE("backup") {
    Rig rig(config());
    rig.link->addrs.push_back(Vip{IpAddr::v4(0x0ad60064), 24});
    rig.runner->open();
    CHECK(rig.link->removed == std::vector<IpAddr>{IpAddr::v4(0x0ad60064)});
  }
  SUBCASE("owner") {
    Rig rig(config(3, 255));
    rig.link->addrs.push_back(Vip{IpAddr::v4(0x0ad60064), 24});
    rig.runner->open();
    CHECK(rig.link->removed.empty());
  }
}

TEST_CASE("open: no address to send from names the config path") {
  Rig rig(config());
  rig.link->addrs.clear();
  CHECK_THROWS_WITH(rig.runner->open(),
                    "/vrrp/instances/0/interface: eth0 has no IPv4 address to send adverts from (set /source)");
}
