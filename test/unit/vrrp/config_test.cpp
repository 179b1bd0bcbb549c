#include <doctest/doctest.h>

#include "support/config_parse.hpp"

#include "vrrp/config.hpp"

using namespace mqnode;
using namespace mqnode::vrrp;

namespace {

VrrpConfig parse(const char* text) { return test::parse_json(parse_vrrp_config, text, "/vrrp"); }

std::string error_of(const char* text) { return test::config_error_of(parse_vrrp_config, text, "/vrrp"); }

}  // namespace

TEST_CASE("a keepalived-style instance") {
  auto c = parse(R"({"instances": [{"name": "VI_1", "interface": "eth0", "vrid": 80, "version": 2,
      "priority": 100, "advert_int": 1, "preempt": false, "auth_pass": "1111",
      "vips": ["192.168.188.200/24", "192.168.188.201"], "track": ["lb", {"module": "broker", "weight": -30}],
      "garp": {"count": 5, "interval_ms": 50}, "vip_label": "eth0:vip"}]})");
  REQUIRE(c.instances.size() == 1);
  const auto& i = c.instances[0];
  CHECK(i.vrid == 80);
  CHECK(i.version == 2);
  CHECK(i.interval_cs == 100);
  CHECK_FALSE(i.preempt);
  CHECK(i.auth_type == 1);
  CHECK(i.auth[0] == '1');
  CHECK(i.auth[4] == 0);
  REQUIRE(i.vips.size() == 2);
  CHECK(i.vips[0].prefix == 24);
  CHECK(i.vips[1].prefix == 32);
  REQUIRE(i.track.size() == 2);
  CHECK(i.track[0].name == "lb");
  CHECK(i.track[0].weight == 0);
  CHECK(i.track[1].weight == -30);
  CHECK(i.garp_count == 5);
  CHECK(i.vip_label == "eth0:vip");
}

TEST_CASE("v3 defaults and centisecond adverts") {
  auto c = parse(R"({"instances": [{"name": "a", "interface": "eth0", "vrid": 1, "advert_int": 0.1,
      "vips": ["10.0.0.1/24"], "unicast_peers": ["10.0.0.3"], "source": "10.0.0.2", "preempt_delay": 2.5}]})");
  const auto& i = c.instances[0];
  CHECK(i.version == 3);
  CHECK(i.priority == 100);
  CHECK(i.interval_cs == 10);
  CHECK(i.preempt);
  CHECK(i.preempt_delay == std::chrono::milliseconds(2500));
  CHECK(i.unicast_peers.size() == 1);
  CHECK(i.source == IpAddr::v4(0x0a000002));
  CHECK(parse("{}").instances.empty());
}

TEST_CASE("errors name the JSON pointer") {
  const char* base = R"({"instances": [{"name": "a", "interface": "eth0", "vrid": 1, "vips": ["10.0.0.1/24"], %s}]})";
  auto err = [&](const char* extra) {
    char buf[1024];
    std::snprintf(buf, sizeof buf, base, extra);
    return error_of(buf);
  };
  CHECK(err(R"("priority": 0)").find("/vrrp/instances/0/priority: expected an integer in 1..255") == 0);
  CHECK(err(R"("version": 2, "advert_int": 0.5)").find("/vrrp/instances/0/advert_int: expected whole seconds") == 0);
  CHECK(err(R"("advert_int": 0.125)").find("/vrrp/instances/0/advert_int: expected a multiple of 0.01") == 0);
  CHECK(err(R"("auth_pass": "x")").find("/vrrp/instances/0/auth_pass: expected no auth_pass with version 3") == 0);
  CHECK(err(R"("version": 2, "auth_pass": "123456789")").find("/vrrp/instances/0/auth_pass: expected at most 8") == 0);
  CHECK(err(R"("nopreempt": true)").find("/vrrp/instances/0/nopreempt: unknown key") == 0);
  CHECK(err(R"("track": ["lb", 3])").find("/vrrp/instances/0/track/1: expected a module name") == 0);
  CHECK(err(R"("track": [{"module": "lb", "weight": 300}])").find("/vrrp/instances/0/track/0/weight: expected an integer in -254..254") == 0);
  CHECK(err(R"("track": [{"module": "lb", "wieght": 3}])").find("/vrrp/instances/0/track/0/wieght: unknown key") == 0);
  CHECK(err(R"("track": ["lb", "lb"])").find("/vrrp/instances/0/track/1: module 'lb' tracked twice") == 0);
  CHECK(err(R"("unicast_peers": ["10.0.0.300"])").find("/vrrp/instances/0/unicast_peers/0: expected an IPv4 address") == 0);
  CHECK(err(R"("garp": {"count": -1})").find("/vrrp/instances/0/garp/count: expected an integer in 0..100") == 0);
  CHECK(err(R"("vip_label": "eth1:x")").find("/vrrp/instances/0/vip_label: expected a label") == 0);
  CHECK(error_of(R"({"instances": [{"name": "a", "interface": "eth0", "vips": ["10.0.0.1"]}]})")
            .find("/vrrp/instances/0/vrid: expected an integer in 1..255, got nothing") == 0);
  CHECK(error_of(R"({"instances": [{"name": "a", "interface": "eth0", "vrid": 1, "vips": ["10.0.0/24"]}]})")
            .find("/vrrp/instances/0/vips/0: expected an address with an optional prefix length") == 0);
  CHECK(error_of(R"({"instances": [{"name": "a", "interface": "eth0", "vrid": 1, "vips": []}]})")
            .find("/vrrp/instances/0/vips: expected a non-empty array") == 0);
  CHECK(error_of(R"({"instances": [{"name": "a", "interface": "eth0", "vrid": 1, "vips": ["10.0.0.1"]},
                                   {"name": "b", "interface": "eth0", "vrid": 1, "vips": ["10.0.0.2"]}]})")
            .find("/vrrp/instances/1/vrid: VRID 1 is already used on interface eth0") == 0);
  CHECK(error_of(R"({"instance": []})").find("/vrrp/instance: unknown key") == 0);
}

TEST_CASE("IPv6 instances: one family per instance, version 3 only") {
  auto c = parse(R"({"instances": [{"name": "v6", "interface": "eth0", "vrid": 7, "advert_int": 0.1,
      "vips": ["fe80::7/64", "2001:db8::7/64", "2001:db8::8"], "unicast_peers": ["fe80::2"], "source": "fe80::1"}]})");
  const auto& i = c.instances[0];
  CHECK(i.ipv6());
  REQUIRE(i.vips.size() == 3);
  CHECK(i.vips[0].addr.link_local());
  CHECK(i.vips[1].prefix == 64);
  CHECK(i.vips[2].prefix == 128);
  CHECK(i.source.v6);
  CHECK(i.unicast_peers.at(0).v6);

  auto err = [](const char* vips, const char* extra = "") {
    std::string text = std::string(R"({"instances": [{"name": "a", "interface": "eth0", "vrid": 1, "vips": )") + vips + extra +
                       "}]}";
    return error_of(text.c_str());
  };
  CHECK(err(R"(["10.0.0.1/24", "2001:db8::1/64"])") ==
        "/vrrp/instances/0/vips/1: IPv6 address 2001:db8::1 in an instance whose first vip is IPv4; use one instance per family");
  CHECK(err(R"(["2001:db8::1/64", "10.0.0.1"])").find("/vrrp/instances/0/vips/1: IPv4 address 10.0.0.1 in an instance") == 0);
  CHECK(err(R"(["2001:db8::1/64"])", R"(, "version": 2)") ==
        "/vrrp/instances/0/vips/0: IPv6 address 2001:db8::1 needs \"version\": 3 (VRRP v2, RFC 3768, is IPv4 only)");
  CHECK(err(R"(["2001:db8::1/129"])").find("/vrrp/instances/0/vips/0: expected an address with an optional prefix") == 0);
  CHECK(err(R"(["2001:db8::1/64"])", R"(, "source": "10.0.0.2")").find("/vrrp/instances/0/source: expected an IPv6 address") == 0);
  CHECK(err(R"(["2001:db8::1/64"])", R"(, "unicast_peers": ["10.0.0.3"])")
            .find("/vrrp/instances/0/unicast_peers/0: expected an IPv6 address") == 0);
  CHECK(err(R"(["2001:db8::1/64"])", R"(, "vip_label": "eth0:v")").find("/vrrp/instances/0/vip_label: expected no label with IPv6") ==
        0);
}
