// track_script: command splitting, fall/rise counting and the schedule on a fake clock, the
// keepalived weight arithmetic in the instance, and the /vrrp/track_scripts config.
#include <doctest/doctest.h>

#include "vrrp/config.hpp"
#include "vrrp/instance.hpp"
#include "vrrp/track_script.hpp"

using namespace mqnode;
using namespace mqnode::vrrp;
using namespace std::chrono;
using Outcome = ScriptTracker::Outcome;

namespace {

struct NullIo : InstanceIo {
  std::vector<Advert> sent;
  std::vector<State> states;
  void send_advert(const Advert& a) override { sent.push_back(a); }
  void take_vips() override {}
  void release_vips() override {}
  void on_transition(State, State to, std::string_view) override { states.push_back(to); }
};

// One run started at <now> that ends after <took> with <o>; returns whether the status changed.
bool run(ScriptTracker& t, Time& now, Outcome o, milliseconds took = milliseconds(10)) {
  REQUIRE(t.due(now));
  t.started(now);
  now += took;
  bool changed = t.finished(now, o);
  now = t.deadline();
  return changed;
}

std::string config_error(const char* text) {
  try {
    auto j = nlohmann::json::parse(text);
    parse_vrrp_config(core::ConfigNode(j, "/vrrp"));
  } catch (const core::ConfigError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("split_command: keepalived's quoting") {
  std::string err;
  auto a = split_command(R"(/usr/bin/curl -s  -o /dev/null "http://127.0.0.1:8080/haproxy stats" 'a b'\ c)", err);
  REQUIRE(a);
  CHECK(*a == std::vector<std::string>{"/usr/bin/curl", "-s", "-o", "/dev/null", "http://127.0.0.1:8080/haproxy stats", "a b c"});
  CHECK(*split_command(R"(sh -c 'test ! -e "/x y"')", err) == std::vector<std::string>{"sh", "-c", "test ! -e \"/x y\""});
  CHECK_FALSE(split_command("sh 'oops", err));
  CHECK(err == "an unterminated ' quote");
  CHECK_FALSE(split_command("   ", err));
  CHECK(err == "an empty command");
}

TEST_CASE("ScriptTracker: the first result decides, then fall and rise count in a row") {
  ScriptConfig c;
  c.interval = seconds(5);
  c.timeout = seconds(2);
  c.fall = 3;
  c.rise = 2;
  ScriptTracker t(c);
  Time now{};
  t.start(now);
  CHECK(t.up());
  CHECK_FALSE(t.known());
  CHECK(t.deadline() == now);
  CHECK(run(t, now, Outcome::Failure));  // first result: down at once
  CHECK_FALSE(t.up());
  CHECK(now == Time{} + seconds(5));  // next run one interval after the start of the last
  CHECK_FALSE(run(t, now, Outcome::Success));
  CHECK_FALSE(run(t, now, Outcome::Failure));  // resets the success count
  CHECK_FALSE(run(t, now, Outcome::Success));
  CHECK(run(t, now, Outcome::Success));  // rise 2
  CHECK(t.up());
  CHECK_FALSE(run(t, now, Outcome::Failure));
  CHECK_FALSE(run(t, now, Outcome::Failure));
  CHECK(t.failures() == 2);
  CHECK_FALSE(run(t, now, Outcome::Success));  // resets
  CHECK(t.failures() == 0);
  CHECK_FALSE(run(t, now, Outcome::Failure));
  CHECK_FALSE(run(t, now, Outcome::Timeout));
  CHECK(run(t, now, Outcome::Failure));  // fall 3 (a timeout counts as a failure)
  CHECK_FALSE(t.up());
  CHECK(t.runs() == 11);
  CHECK(t.timeouts() == 1);
  CHECK(t.failed_runs() == 7);
}

TEST_CASE("ScriptTracker: schedule, kill deadline, a slow run is followed at once, init_fail") {
  ScriptConfig c;
  c.interval = seconds(1);
  c.timeout = milliseconds(300);
  ScriptTracker t(c);
  Time now{};
  t.start(now);
  t.started(now);
  CHECK(t.running());
  CHECK_FALSE(t.due(now));
  CHECK(t.deadline() == now + milliseconds(300));  // kill at the timeout
  CHECK(t.overdue(now + milliseconds(300)));
  t.finished(now + milliseconds(300), Outcome::Timeout);
  CHECK(t.deadline() == now + seconds(1));
  c.timeout = seconds(5);  // a run longer than the interval: the next starts when it ends
  t.started(now + seconds(1));
  t.finished(now + seconds(3), Outcome::Success);
  CHECK(t.deadline() == now + seconds(3));

  ScriptConfig f;
  f.init_fail = true;
  f.rise = 2;
  ScriptTracker tf(f);
  CHECK_FALSE(tf.up());
  CHECK(tf.known());
  Time n2{};
  tf.start(n2);
  CHECK_FALSE(run(tf, n2, Outcome::Success));  // init_fail: <rise> successes needed
  CHECK(run(tf, n2, Outcome::Success));
}

TEST_CASE("keepalived weights: 0 = Fault, positive added while up, negative while down, reverse") {
  Track t0{"s", 0, Track::Kind::Script};
  CHECK(t0.faults(false));
  CHECK_FALSE(t0.faults(true));
  Track r0{"s", 0, Track::Kind::Script, true};
  CHECK(r0.faults(true));
  Track pos{"s", 20, Track::Kind::Script};
  CHECK(pos.contribution(true) == 20);
  CHECK(pos.contribution(false) == 0);
  Track neg{"s", -20, Track::Kind::Script};
  CHECK(neg.contribution(true) == 0);
  CHECK(neg.contribution(false) == -20);
  Track rpos{"s", 20, Track::Kind::Script, true};
  CHECK(rpos.contribution(true) == -20);
  Track rneg{"s", -20, Track::Kind::Script, true};
  CHECK(rneg.contribution(false) == 20);

  NullIo io;
  InstanceConfig c;
  c.name = "VI_1";
  c.vrid = 51;
  c.priority = 100;
  c.vips = {Vip{IpAddr::v4(0x0ad60064), 24}};
  c.track = {Track{"chk_up", 30, Track::Kind::Script}, Track{"chk_down", -60, Track::Kind::Script},
             Track{"lb", -60}};  // a module of the same name space is another track
  Instance in(c, io, IpAddr::v4(0x0ad60002));
  CHECK(in.priority() == 130);
  in.on_script(Time{}, "chk_down", false, "exit 1");
  CHECK(in.priority() == 70);
  in.on_script(Time{}, "chk_up", false, "exit 1");
  CHECK(in.priority() == 40);
  in.on_track(Time{}, "chk_up", true, "");  // a module named like a script: not that track
  CHECK(in.priority() == 40);
  in.on_script(Time{}, "chk_up", true, "");
  in.on_script(Time{}, "chk_down", true, "");
  CHECK(in.priority() == 130);
}

TEST_CASE("a failing fault-type track_script takes a master to Fault with a priority-0 advert") {
  NullIo io;
  InstanceConfig c;
  c.name = "VI_1";
  c.vrid = 51;
  c.priority = 150;
  c.interval_cs = 10;
  c.vips = {Vip{IpAddr::v4(0x0ad60064), 24}};
  c.track = {Track{"chk_haproxy", 0, Track::Kind::Script}};
  Instance in(c, io, IpAddr::v4(0x0ad60002));
  Time now{};
  in.start(now);
  now += seconds(1);
  in.on_timer(now);
  REQUIRE(in.state() == State::Master);
  in.on_script(now, "chk_haproxy", false, "exit 7");
  CHECK(in.state() == State::Fault);
  CHECK(io.sent.back().priority == 0);
  nlohmann::json j;
  in.dump(j);
  CHECK(j["last_transition"]["reason"] == "track_script 'chk_haproxy' failed: exit 7");
  CHECK(j["track_script"]["chk_haproxy"]["up"] == false);
  in.on_script(now, "chk_haproxy", true, "exit 0");
  CHECK(in.state() == State::Backup);
}

TEST_CASE("config: /vrrp/track_scripts and instance references") {
  auto j = nlohmann::json::parse(R"({
    "track_scripts": {
      "chk_haproxy": {"script": "/usr/bin/curl -s -o /dev/null http://127.0.0.1:8080/haproxy", "interval": 5,
                      "fall": 2, "rise": 3, "weight": -20},
      "chk_argv": {"script": ["/bin/sh", "-c", "exit 0"], "interval": 0.5, "timeout": 0.2, "init_fail": true}},
    "instances": [{"name": "VI_1", "interface": "eth0", "vrid": 80, "vips": ["10.0.0.10/24"],
      "track_script": ["chk_haproxy", {"name": "chk_argv", "weight": 10, "reverse": true}],
      "notify": "/etc/mqnode/notify.sh 'two words'", "notify_master": ["/bin/true"]}]})");
  auto c = parse_vrrp_config(core::ConfigNode(j, "/vrrp"));
  REQUIRE(c.track_scripts.size() == 2);
  const auto* h = c.script("chk_haproxy");
  REQUIRE(h);
  CHECK(h->argv.size() == 5);
  CHECK(h->interval == seconds(5));
  CHECK(h->timeout == seconds(5));  // defaults to the interval
  CHECK(h->fall == 2);
  CHECK(h->rise == 3);
  const auto* a = c.script("chk_argv");
  CHECK(a->timeout == milliseconds(200));
  CHECK(a->init_fail);
  const auto& tr = c.instances[0].track;
  REQUIRE(tr.size() == 2);
  CHECK(tr[0].kind == Track::Kind::Script);
  CHECK(tr[0].weight == -20);  // the script's default
  CHECK(tr[1].weight == 10);
  CHECK(tr[1].reverse);
  CHECK(c.instances[0].notify == std::vector<std::string>{"/etc/mqnode/notify.sh", "two words"});
  CHECK(c.instances[0].notify_master == std::vector<std::string>{"/bin/true"});
}

TEST_CASE("config: track_script errors name the JSON path") {
  auto inst = [](const char* extra) {
    return std::string(R"({"name": "a", "interface": "eth0", "vrid": 1, "vips": ["10.0.0.1/24"])") + extra + "}";
  };
  auto err = [&](const char* scripts, const char* extra) {
    auto text = std::string(R"({"track_scripts": )") + scripts + R"(, "instances": [)" + inst(extra) + "]}";
    return config_error(text.c_str());
  };
  CHECK(err(R"({"c": {}})", "").find("/vrrp/track_scripts/c/script: expected a command line string or an argv array") == 0);
  CHECK(err(R"({"c": {"script": ""}})", "").find("/vrrp/track_scripts/c/script: expected a command line") == 0);
  CHECK(err(R"({"c": {"script": "x 'y"}})", "").find("/vrrp/track_scripts/c/script: expected a command line, got string") == 0);
  CHECK(err(R"({"c": {"script": [3]}})", "").find("/vrrp/track_scripts/c/script/0: expected a non-empty string") == 0);
  CHECK(err(R"({"c": {"script": "x", "weight": 254}})", "").find("/vrrp/track_scripts/c/weight: expected an integer in -253..253") == 0);
  CHECK(err(R"({"c": {"script": "x", "fall": 0}})", "").find("/vrrp/track_scripts/c/fall: expected an integer in 1..1000") == 0);
  CHECK(err(R"({"c": {"script": "x", "intervall": 1}})", "").find("/vrrp/track_scripts/c/intervall: unknown key") == 0);
  CHECK(err(R"([])", "").find("/vrrp/track_scripts: expected an object of named scripts") == 0);
  CHECK(err(R"({"c": {"script": "x"}})", R"(, "track_script": ["d"])")
            .find("/vrrp/instances/0/track_script/0: no track script named \"d\" in /vrrp/track_scripts") == 0);
  CHECK(err(R"({"c": {"script": "x"}})", R"(, "track_script": [{"name": "d"}])")
            .find("/vrrp/instances/0/track_script/0/name: no track script named \"d\"") == 0);
  CHECK(err(R"({"c": {"script": "x"}})", R"(, "track_script": ["c", "c"])")
            .find("/vrrp/instances/0/track_script/1: track script 'c' listed twice") == 0);
  CHECK(err(R"({"c": {"script": "x"}})", R"(, "track_script": [{"name": "c", "wieght": 1}])")
            .find("/vrrp/instances/0/track_script/0/wieght: unknown key") == 0);
  CHECK(err(R"({})", R"(, "notify_master": 5)").find("/vrrp/instances/0/notify_master: expected a command line string") == 0);
}
