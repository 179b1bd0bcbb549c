"""VRRPv3 over IPv6 (RFC 5798) on the private LAN: election and failover between two mqnodes
with the adverts and unsolicited Neighbor Advertisements checked in a capture, hostile
packets (hop limit, checksum over the IPv6 pseudo-header), and keepalived as the peer in
both directions.

Timeouts are generous bounds only (the failover speed is measured in bench/failover.py).
"""

import os
import re

import pytest

import vrrp_net as V


lan = pytest.fixture(name="lan")(V.lan_fixture)


def inst6(lan, priority, **kw):
    kw.setdefault("vips", [lan.vip6() + "/64"])
    return lan.instance(priority, **kw)


def test_ipv6_election_failover_and_neighbor_advertisements(lan):
    if not os.access(V.TCPDUMP, os.X_OK):
        pytest.skip("tcpdump not installed (build.sh test installs it)")
    vip = lan.vip6()
    # Adverts (protocol 112) and neighbor advertisements (ICMPv6 type 136) seen from h3.
    cap = lan.start(3, [V.TCPDUMP, "-n", "-l", "-v", "-i", "eth0", "ip6 proto 112 or (icmp6 and ip6[40] == 136)"],
                    "tcpdump")
    V.wait_for(lambda: "listening on" in cap.output(), 10, what="tcpdump to start")
    m1 = lan.mqnode(1, [inst6(lan, 150)])
    m2 = lan.mqnode(2, [inst6(lan, 100)])
    lan.only_holder(1, vip=vip)
    lan.stays(1, 1.0, vip=vip)
    # Added with its prefix length and without duplicate address detection (never tentative).
    shown = lan.exec(1, ["ip", "-6", "addr", "show", "dev", "eth0"]).stdout
    assert re.search(r"inet6 %s/64 scope global nodad" % re.escape(vip), shown), shown
    ll1, ll2 = lan.link_local(1), lan.link_local(2)
    # RFC 5798 §5.1.2: from the link-local address, to ff02::12, hop limit 255.
    advert = re.compile(r"hlim 255, next-header VRRP \(112\).*\n?\s*%s > ff02::12: VRRPv3, Advertisement, vrid 51, "
                        r"prio 150, intvl 10cs, length 24, addrs: %s" % (re.escape(ll1), re.escape(vip)))
    V.wait_for(lambda: advert.search(cap.output()), 5, what="h1's adverts in the capture:\n" + cap.output())
    # The takeover is announced with unsolicited NAs from the VIP to all nodes, Override set.
    na = re.compile(r"hlim 255, next-header ICMPv6 \(58\).*\n?\s*%s > ff02::1: .*neighbor advertisement, length 32, "
                    r"tgt is %s, Flags \[override\]" % (re.escape(vip), re.escape(vip)))
    V.wait_for(lambda: len(na.findall(cap.output())) >= 3, 5, what="3 NAs in the capture:\n" + cap.output())
    # h2 is a backup: it received and accepted h1's adverts (nothing dropped, no VIP).
    assert "dropped advert" not in m2.output(), m2.output()

    # Shutdown: priority 0, h2 takes over and announces itself.
    assert m1.stop() == 0
    lan.only_holder(2, vip=vip)
    prio0 = re.compile(r"%s > ff02::12: VRRPv3, Advertisement, vrid 51, prio 0," % re.escape(ll1))
    V.wait_for(lambda: prio0.search(cap.output()), 5, what="h1's priority-0 advert")
    m2.wait_logged('to=master priority=100 reason="master resigned (priority 0)"')
    from_h2 = re.compile(r"%s > ff02::12: VRRPv3, Advertisement, vrid 51, prio 100," % re.escape(ll2))
    V.wait_for(lambda: from_h2.search(cap.output()), 5, what="h2's adverts")

    # The old master returns with the higher priority and preempts.
    m1b = lan.mqnode(1, [inst6(lan, 150)])
    lan.only_holder(1, vip=vip)
    assert m1b.stop() == 0
    lan.only_holder(2, vip=vip)
    assert m2.stop() == 0
    assert lan.holders(vip) == []
    cap.kill()


def test_ipv6_master_killed_backup_takes_over(lan):
    vip = lan.vip6()
    m1 = lan.mqnode(1, [inst6(lan, 150)])
    m2 = lan.mqnode(2, [inst6(lan, 100)])
    lan.only_holder(1, vip=vip)
    # Linux drops IPv6 addresses when the link goes down unless told to keep them: keep
    # them, so that h1 is left with the VIP as a SIGKILLed daemon leaves it.
    lan.exec(1, ["sysctl", "-q", "-w", "net.ipv6.conf.eth0.keep_addr_on_down=1"])
    m1.kill()
    lan.exec(1, ["ip", "link", "set", "eth0", "down"])
    V.wait_for(lambda: lan.has(2, vip), 10, what="IPv6 VIP on h2 after the master was killed")
    m2.wait_logged('reason="master down timer expired"')
    assert lan.has(1, vip)  # what SIGKILL left behind
    lan.exec(1, ["ip", "link", "set", "eth0", "up"])
    # The leftover VIP on h1 is removed by the next run, which comes back as a backup.
    m1b = lan.mqnode(1, [inst6(lan, 50)])
    m1b.wait_logged("removed leftover vip=%s" % vip)
    lan.only_holder(2, vip=vip)
    assert m2.stop() == 0
    lan.only_holder(1, vip=vip)
    assert m1b.stop() == 0


def test_ipv6_bad_packets_are_ignored(lan):
    vip = lan.vip6()
    m1 = lan.mqnode(1, [inst6(lan, 100, advert_int=1)])
    lan.only_holder(1, vip=vip, timeout=20)
    src = lan.link_local(3)

    def burst(**kw):
        return [V.vrrp6_packet(src, "ff02::12", vip, 51, 254, **kw)] * 5

    lan.inject6(3, src, burst(), hops=254)  # RFC 5798 §5.1.2.3: hop limit must be 255
    lan.stays(1, 0.3, vip=vip)
    lan.inject6(3, src, burst(corrupt_checksum=True))
    lan.stays(1, 0.3, vip=vip)
    # The checksum covers the IPv6 pseudo-header: one computed for another source fails.
    lan.inject6(3, src, [V.vrrp6_packet(lan.link_local(2), "ff02::12", vip, 51, 254)] * 5)
    lan.stays(1, 0.3, vip=vip)
    # The same advert done right makes the master step down: the test can fail.
    lan.inject6(3, src, burst())
    V.wait_for(lambda: not lan.has(1, vip), 5, what="h1 to yield to a valid priority-254 advert")
    lan.only_holder(1, vip=vip, timeout=10)
    assert m1.stop() == 0
    # The first drop is logged (then rate-limited): the hop limit one.
    assert "dropped advert src=%s reason=bad_ttl" % src in m1.output(), m1.output()


def test_ipv6_keepalived_interop(lan):
    """keepalived and mqnode as VRRPv3 peers over IPv6, failover in each direction."""
    if not os.access(V.KEEPALIVED, os.X_OK):
        pytest.skip("keepalived not installed (build.sh test installs it)")
    vip = lan.vip6()
    kw = dict(version=3, advert_int=1)
    # 1. mqnode master (150), keepalived backup (100): keepalived accepts our adverts.
    m1 = lan.mqnode(1, [inst6(lan, 150, **kw)])
    lan.only_holder(1, vip=vip, timeout=20)
    k2 = lan.keepalived(2, 100, vip=vip + "/64", **kw)
    V.wait_for(lambda: "Entering BACKUP STATE" in k2.output(), 10, what="keepalived in BACKUP")
    lan.stays(1, 4.5, vip=vip)  # longer than keepalived's master-down interval
    # 2. mqnode stops (priority 0) → keepalived takes over.
    assert m1.stop() == 0
    lan.only_holder(2, vip=vip, timeout=10)
    # 3. mqnode returns with a lower priority: it must accept keepalived's adverts and stay
    # backup (a dual master would show the VIP on both hosts).
    m1b = lan.mqnode(1, [inst6(lan, 50, **kw)])
    lan.stays(2, 4.5, vip=vip)
    # 4. keepalived stops (it sends priority 0 too) → mqnode takes over.
    k2.stop()
    lan.only_holder(1, vip=vip, timeout=10)
    assert "dropped advert" not in m1b.output(), m1b.output()
    assert m1b.stop() == 0


def test_ipv6_unicast_peers(lan):
    """Unicast over IPv6 to peers named by their global addresses: each side sends from its
    own global address (what the other lists), not the link-local one."""
    vip = lan.vip6()
    m1 = lan.mqnode(1, [inst6(lan, 150, unicast_peers=[lan.ip6(2)])])
    m2 = lan.mqnode(2, [inst6(lan, 100, unicast_peers=[lan.ip6(1)])])
    lan.only_holder(1, vip=vip)
    lan.stays(1, 1.0, vip=vip)
    assert "source=%s" % lan.ip6(1) in m1.output(), m1.output()
    assert "dropped advert" not in m2.output(), m2.output()
    assert m1.stop() == 0
    lan.only_holder(2, vip=vip)
    m2.wait_logged('reason="master resigned (priority 0)"')
    assert m2.stop() == 0
