"""The `vip` role (VRRP) on a private LAN of network namespaces: election, failover,
priority-0 on shutdown, preempt/nopreempt, hostile packets, gratuitous ARP and
interoperability with Debian's keepalived in both directions and both versions.

Timeouts are generous bounds only (the failover speed is measured in bench/failover.py).
"""

import os
import re

import pytest

import vrrp_net as V


lan = pytest.fixture(name="lan")(V.lan_fixture)


def test_election_failover_on_kill_and_leftover_vip(lan):
    m1 = lan.mqnode(1, [lan.instance(150)])
    m2 = lan.mqnode(2, [lan.instance(100)])
    lan.only_holder(1)
    lan.stays(1, 1.0)
    # SIGKILL: no priority-0 advert, the VIP stays on h1's interface; take h1's link down
    # as a dead host would, so only the master-down timer can move it.
    m1.kill()
    lan.exec(1, ["ip", "link", "set", "eth0", "down"])
    V.wait_for(lambda: lan.has(2, lan.vip()), 10, what="VIP on h2 after the master was killed")
    assert lan.has(1, lan.vip())  # what SIGKILL left behind
    lan.exec(1, ["ip", "link", "set", "eth0", "up"])
    # The returning node (now a backup: priority 50) finds its old VIP on the interface and
    # removes it at start: a backup never holds it, so the VIP is on h2 alone.
    m1b = lan.mqnode(1, [lan.instance(50)])
    lan.only_holder(2)
    lan.stays(2, 1.0)
    assert m2.stop() == 0
    lan.only_holder(1)  # priority 0 from h2 → h1 takes over
    assert m1b.stop() == 0
    assert lan.holders(lan.vip()) == []


def test_priority0_advert_on_shutdown(lan):
    # v2, 1 s adverts: the backup's master-down interval is 3.6 s; after a priority-0
    # advert it is the skew time only (0.6 s).
    sn = lan.sniffer(3)
    m1 = lan.mqnode(1, [lan.instance(150, version=2, advert_int=1)])
    m2 = lan.mqnode(2, [lan.instance(100, version=2, advert_int=1)])
    lan.only_holder(1, timeout=20)
    assert m1.stop() == 0
    V.wait_for(lambda: lan.has(2, lan.vip()), 10, what="VIP on h2 after h1's shutdown")
    pk = lan.sniffed(sn)
    from_h1 = [p for p in pk if p["src"] == lan.ip(1)]
    assert from_h1 and from_h1[-1]["priority"] == 0, from_h1[-3:]
    assert all(p["ttl"] == 255 and p["version"] == 2 and p["vrid"] == 51 for p in pk)
    assert not lan.has(1, lan.vip())
    assert m2.stop() == 0


@pytest.mark.parametrize("preempt", [False, True])
def test_preempt_and_nopreempt(lan, preempt):
    m2 = lan.mqnode(2, [lan.instance(100)])
    lan.only_holder(2)
    m1 = lan.mqnode(1, [lan.instance(150, preempt=preempt)])
    if preempt:
        lan.only_holder(1)
    else:
        lan.stays(2, 2.0)  # > 5 master-down intervals at 0.1 s adverts
    assert m1.stop() == 0
    assert m2.stop() == 0


def test_bad_packets_are_ignored(lan):
    m1 = lan.mqnode(1, [lan.instance(100, version=2, advert_int=1, auth_pass="1111")])
    lan.only_holder(1, timeout=20)
    src, vip = lan.ip(3), lan.vip()

    def burst(**kw):
        return [V.vrrp_packet(src, vip, 51, 254, auth_pass=kw.pop("auth_pass", "1111"), **kw)] * 5

    for bad in (dict(auth_pass="2222"), dict(ttl=64), dict(corrupt_checksum=True), dict(advert_int=2),
                dict(auth_pass=None), dict(version=3)):
        lan.inject(3, burst(**bad))
        lan.stays(1, 0.3)
    # The same packet done right makes the master step down: the test can fail.
    lan.inject(3, burst())
    V.wait_for(lambda: not lan.has(1, vip), 5, what="h1 to yield to a valid priority-254 advert")
    # Nobody advertises any more: h1 takes the VIP back after the master-down interval.
    lan.only_holder(1, timeout=10)
    assert m1.stop() == 0


def test_unicast_peers(lan):
    i1 = lan.instance(150, unicast_peers=[lan.ip(2)])
    i2 = lan.instance(100, unicast_peers=[lan.ip(1)])
    m1 = lan.mqnode(1, [i1])
    m2 = lan.mqnode(2, [i2])
    lan.only_holder(1)
    lan.stays(1, 1.0)
    assert m1.stop() == 0
    lan.only_holder(2)
    assert m2.stop() == 0


def test_gratuitous_arp_in_capture(lan):
    if not os.access(V.TCPDUMP, os.X_OK):
        pytest.skip("tcpdump not installed (build.sh test installs it)")
    cap = lan.start(3, [V.TCPDUMP, "-n", "-l", "-e", "-i", "eth0", "arp"], "tcpdump")
    V.wait_for(lambda: "listening on" in cap.output(), 10, what="tcpdump to start")
    m1 = lan.mqnode(1, [lan.instance(150, garp={"count": 3, "interval_ms": 50})])
    lan.only_holder(1)
    mac = lan.exec(1, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    # Sender = target = VIP, from h1's MAC to broadcast (tcpdump prints the broadcast target
    # hardware address in parentheses).
    vip = re.escape(lan.vip())
    want = re.compile(r"^.*%s > ff:ff:ff:ff:ff:ff, .*Request who-has %s (\(ff:ff:ff:ff:ff:ff\) )?tell %s,"
                      % (re.escape(mac), vip, vip), re.M)
    V.wait_for(lambda: len(want.findall(cap.output())) >= 3, 5,
               what="3 gratuitous ARPs in the capture:\n" + cap.output())
    assert m1.stop() == 0
    cap.kill()


def test_tracking_in_process(lan):
    # h1 tracks "lb", which this process does not run: fail safe, Fault, never the VIP,
    # although its priority is the highest.
    m1 = lan.mqnode(1, [lan.instance(200, track=["lb"])])
    # h3 runs the broker too and tracks it: the broker's health is Ok, so it is master.
    m3 = lan.mqnode(3, [lan.instance(150, track=["broker"])], roles="disc,vip")
    m2 = lan.mqnode(2, [lan.instance(100)])
    lan.only_holder(3)
    lan.stays(3, 1.0)
    # Stopping h3: its modules stop in reverse order, vrrp first (priority 0) → h2, never h1.
    assert m3.stop() == 0
    lan.only_holder(2)
    lan.stays(2, 0.5)
    assert m2.stop() == 0
    assert m1.stop() == 0


def test_missing_capabilities_is_a_clear_error(lan):
    if not os.access("/usr/sbin/capsh", os.X_OK) and not os.access("/sbin/capsh", os.X_OK):
        pytest.skip("capsh (libcap2-bin) not installed")
    capsh = "/usr/sbin/capsh" if os.access("/usr/sbin/capsh", os.X_OK) else "/sbin/capsh"
    argv = lan.mqnode_argv([lan.instance(150)], "nocaps")
    r = lan.exec(1, [capsh, "--drop=cap_net_raw,cap_net_admin", "--", "-c", " ".join(argv)],
                 check=False, timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "needs CAP_NET_RAW CAP_NET_ADMIN" in r.stderr


@pytest.mark.parametrize("version", [2, 3])
def test_keepalived_interop(lan, version):
    """keepalived and mqnode as peers: each direction of failover, both VRRP versions."""
    if not os.access(V.KEEPALIVED, os.X_OK):
        pytest.skip("keepalived not installed (build.sh test installs it)")
    auth = "1111" if version == 2 else None
    kw = dict(version=version, advert_int=1)
    if auth:
        kw["auth_pass"] = auth
    # 1. mqnode master (150), keepalived backup (100): keepalived accepts our adverts.
    m1 = lan.mqnode(1, [lan.instance(150, **kw)])
    lan.only_holder(1, timeout=20)
    k2 = lan.keepalived(2, 100, version=version, auth_pass=auth)
    V.wait_for(lambda: "Entering BACKUP STATE" in k2.output(), 10, what="keepalived in BACKUP")
    lan.stays(1, 4.5)  # longer than keepalived's master-down interval
    # 2. mqnode stops (priority 0) → keepalived takes over.
    assert m1.stop() == 0
    lan.only_holder(2, timeout=10)
    # 3. mqnode returns with a lower priority: it must accept keepalived's adverts and stay
    # backup (a dual master would show the VIP on both hosts).
    m1b = lan.mqnode(1, [lan.instance(50, **kw)])
    lan.stays(2, 4.5)
    # 4. keepalived stops (it sends priority 0 too) → mqnode takes over.
    k2.stop()
    lan.only_holder(1, timeout=10)
    assert "dropped advert" not in m1b.output(), m1b.output()
    assert m1b.stop() == 0


# --- track_script, notify hooks, the lb role tracked in-process ---------------------------

@pytest.mark.parametrize("weight", [0, -60])
def test_track_script_moves_vip(lan, weight):
    """keepalived's vrrp_script: a script that starts failing moves the VIP (weight 0: Fault
    and a priority-0 advert; weight -60: 150 → 90 < 100, the backup preempts); rise brings it
    back."""
    flag = os.path.join(lan.workdir, "lb-broken")
    scripts = {"chk_haproxy": {"script": "/bin/sh -c 'test ! -e %s'" % flag, "interval": 0.1,
                               "timeout": 2, "fall": 2, "rise": 2, "weight": weight}}
    m1 = lan.mqnode(1, [lan.instance(150, track_script=["chk_haproxy"])],
                    extra={"vrrp": {"track_scripts": scripts}})
    m2 = lan.mqnode(2, [lan.instance(100)])
    lan.only_holder(1)
    lan.stays(1, 0.5)
    open(flag, "w").close()
    lan.only_holder(2, timeout=10)
    out = m1.output()
    assert "status down: exit 1 (fall 2)" in out, out
    if weight == 0:
        assert re.search(r"to=fault .*reason=\"track_script 'chk_haproxy' failed: exit 1\"", out), out
    else:
        m1.wait_logged("to=backup priority=90")
    os.unlink(flag)
    lan.only_holder(1, timeout=10)  # preempt: back to the higher priority
    assert m1.stop() == 0
    assert m2.stop() == 0


def test_track_script_timeout_is_a_failure(lan):
    scripts = {"slow": {"script": ["/bin/sleep", "30"], "interval": 0.2, "timeout": 0.3}}
    m1 = lan.mqnode(1, [lan.instance(150, track_script=["slow"])],
                    extra={"vrrp": {"track_scripts": scripts}})
    m2 = lan.mqnode(2, [lan.instance(100)])
    lan.only_holder(2, timeout=15)
    V.wait_for(lambda: "status down: timed out after" in m1.output(), 10, what="the timeout in h1's log")
    lan.stays(2, 1.0)
    assert m1.stop() == 0
    assert m2.stop() == 0
    # Every sleep was killed with its process group: none is left in h1's namespace.
    left = lan.exec(1, ["sh", "-c", "ps -eo pid,args | grep '[/]bin/sleep 30' || true"]).stdout
    assert left.strip() == "", left


def test_notify_hooks(lan):
    """notify_master/backup/fault/stop and notify (keepalived's INSTANCE <name> <STATE> <prio>)
    run on transitions; their exit status and output are logged."""
    out_file = os.path.join(lan.workdir, "notify.out")
    hook = os.path.join(lan.workdir, "notify.sh")
    with open(hook, "w") as f:
        f.write('#!/bin/sh\necho "$@" >> %s\necho "notified $3"\n' % out_file)
    os.chmod(hook, 0o755)
    flag = os.path.join(lan.workdir, "broken")
    scripts = {"chk": {"script": ["/bin/sh", "-c", "test ! -e %s" % flag], "interval": 0.1}}
    inst = lan.instance(150, track_script=["chk"], notify=hook,
                        notify_master=["/bin/sh", "-c", "echo to-master >> %s" % out_file],
                        notify_backup=["/bin/sh", "-c", "echo to-backup >> %s" % out_file],
                        notify_fault="/bin/sh -c 'echo to-fault >> %s; exit 3'" % out_file,
                        notify_stop=["/bin/sh", "-c", "echo stopped >> %s" % out_file])
    m1 = lan.mqnode(1, [inst], extra={"vrrp": {"track_scripts": scripts}})

    def lines():
        try:
            with open(out_file) as f:
                return f.read().split("\n")[:-1]
        except OSError:
            return []

    lan.only_holder(1)
    V.wait_for(lambda: "INSTANCE VI_1 MASTER 150" in lines(), 5, what="notify MASTER: %s" % lines())
    open(flag, "w").close()
    V.wait_for(lambda: "INSTANCE VI_1 FAULT 150" in lines(), 5, what="notify FAULT: %s" % lines())
    assert m1.stop() == 0
    # Per instance the hooks run one at a time, in transition order: notify_<state> first.
    assert lines() == ["to-backup", "INSTANCE VI_1 BACKUP 150", "to-master", "INSTANCE VI_1 MASTER 150",
                       "to-fault", "INSTANCE VI_1 FAULT 150", "stopped", "INSTANCE VI_1 STOP 150"], lines()
    log = m1.output()
    assert "notify_fault failed: exit 3" in log, log
    assert re.search(r'notify ran: exit 0 .*output="notified MASTER"', log), log


def test_track_script_config_errors_name_the_path(lan):
    argv = lan.mqnode_argv([lan.instance(150, track_script=["nope"])], "badref",
                           extra={"vrrp": {"track_scripts": {"chk": {"script": "/bin/true"}}}})
    r = lan.exec(1, argv, check=False, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert '/vrrp/instances/0/track_script/0: no track script named "nope"' in r.stderr, r.stderr
    argv = lan.mqnode_argv([lan.instance(150, track_script=["chk"])], "badpath",
                           extra={"vrrp": {"track_scripts": {"chk": {"script": "/nonexistent/chk.sh -x"}}}})
    r = lan.exec(1, argv, check=False, timeout=30)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "/vrrp/track_scripts/chk/script: cannot execute /nonexistent/chk.sh" in r.stderr, r.stderr


BACKEND = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""


def lb_config(port, inter_ms=100):
    return {"frontends": [{"name": "amqp", "bind": "0.0.0.0:5670", "backend": "rabbitmq"}],
            "backends": [{"name": "rabbitmq",
                          "check": {"type": "tcp", "inter_ms": inter_ms, "rise": 1, "fall": 1},
                          "servers": [{"name": "local", "address": "127.0.0.1:%d" % port}]}]}


def test_lb_unhealthy_moves_vip(lan):
    """--role lb,vip on two hosts, each lb with its own local backend. The master's backend
    dies: its lb reports Down on the EventBus, the vip role goes to Fault in the same turn
    of the loop (priority-0 advert) and the backup takes the VIP after its skew time."""
    backs = {h: lan.start(h, ["/usr/bin/python3", "-u", "-c", BACKEND, "5999"], "backend-h%d" % h) for h in (1, 2)}
    for b in backs.values():
        V.wait_for(lambda: "listening" in b.output(), 10, what="backend listening")
    m1 = lan.mqnode(1, [lan.instance(150, track=["lb"])], roles="lb,vip", extra={"lb": lb_config(5999)})
    m2 = lan.mqnode(2, [lan.instance(100, track=["lb"])], roles="lb,vip", extra={"lb": lb_config(5999)})
    lan.only_holder(1)
    lan.stays(1, 0.5)
    backs[1].kill()
    lan.only_holder(2, timeout=10)
    out = m1.output()
    assert re.search(r"to=fault .*reason=\"tracked module 'lb' down: no server available in backend rabbitmq\"", out), out
    # The backup took over on h1's priority-0 advert (after its skew time), not because h1's
    # adverts stopped (master-down interval): how fast that is, bench/failover.py measures.
    m2.wait_logged('to=master priority=100 reason="master resigned (priority 0)"')
    # The lb on h1 comes back → Backup (priority 150 preempts: the VIP returns).
    backs[1] = lan.start(1, ["/usr/bin/python3", "-u", "-c", BACKEND, "5999"], "backend-h1b")
    lan.only_holder(1, timeout=10)
    assert m1.stop() == 0
    assert m2.stop() == 0
