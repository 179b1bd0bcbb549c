"""Three mqnode processes become one cluster, as RabbitMQ's three-host deployment does:
node 1 bootstraps, nodes 2 and 3 `stop_app; reset; join_cluster [--ram] mq1; start_app`.
Definitions made through any node are on every node; a follower killed with SIGKILL
catches up after its restart; a node with another cookie cannot join and is told why.

Hosts are namespaces on one bridge (vrrp_net.Lan); node names resolve through a per-
namespace /etc/hosts (/etc/netns/<ns>/hosts, which `ip netns exec` mounts), removed at
the end. Every wait is bounded; processes are killed by pid.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import vrrp_net
from vrrp_net import wait_for

COOKIE = "CLUSTERTESTCOOKIEAAAA"
NODES = (1, 2, 3)


@pytest.fixture
def lan():
    yield from vrrp_net.lan_fixture_hosts(4)


class Cluster:
    def __init__(self, lan):
        self.lan = lan
        self.procs = {}
        self.hosts_dirs = []
        lines = "".join("%s mq%d\n" % (lan.ip(h), h) for h in range(1, lan.nhosts + 1))
        for h in range(1, lan.nhosts + 1):
            d = "/etc/netns/%s" % lan.ns(h)
            os.makedirs(d, exist_ok=True)
            self.hosts_dirs.append(d)
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write("127.0.0.1 localhost\n" + lines)

    def cleanup(self):
        for d in self.hosts_dirs:
            shutil.rmtree(d, ignore_errors=True)

    def data(self, h):
        return os.path.join(self.lan.workdir, "mq%d.data" % h)

    def start(self, h, cookie=COOKIE, role="disc"):
        data = self.data(h)
        os.makedirs(data, exist_ok=True)
        cookie_path = os.path.join(data, ".cookie")
        if not os.path.exists(cookie_path):
            with open(cookie_path, "w") as f:
                f.write(cookie)
            os.chmod(cookie_path, 0o400)
        cfg = {"node": {"name": "mq%d" % h, "data_dir": data},
               "broker": {"listeners": [{"bind": "0.0.0.0:5672"}]},
               "cluster": {"bind": "%s:25672" % self.lan.ip(h), "election_timeout_ms": 1000,
                           "heartbeat_timeout_ms": 100}}
        path = os.path.join(self.lan.workdir, "mq%d.json" % h)
        with open(path, "w") as f:
            json.dump(cfg, f)
        argv = [os.path.abspath(os.environ["MQNODE_BIN"]), "--role", role, "--config", path,
                "--log-level", "info"]
        p = self.lan.start(h, argv, "mq%d-%d" % (h, len(self.lan.procs)))
        self.procs[h] = p
        wait_for(lambda: self.ctl(h, "cluster_status", check=False).returncode in (0, 69) and
                 os.path.exists(os.path.join(data, "mqnode.sock")), 30, step=0.2,
                 what="mq%d's control socket" % h)
        return p

    def ctl(self, h, *args, check=True, timeout=30):
        r = self.lan.exec(h, [os.path.abspath(os.environ["MQNODE_BIN"]), "ctl", "--data-dir", self.data(h)] + list(args),
                          check=False, timeout=timeout)
        if check:
            assert r.returncode == 0, "mq%d ctl %s: rc=%d\n%s%s" % (h, args, r.returncode, r.stdout, r.stderr)
        return r

    def status(self, h):
        r = self.ctl(h, "cluster_status", "--formatter", "json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def amqp(self, h, code, timeout=30):
        """Runs pika <code> in mq<h>'s namespace against its own broker (guest, loopback)."""
        prog = ("import pika\n"
                "conn = pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', 5672))\n"
                "ch = conn.channel()\n" + code + "\nconn.close()\n")
        return self.lan.exec(h, ["/usr/bin/python3", "-c", prog], check=False, timeout=timeout)

    def visible(self, h, exchange=None, queue=None):
        code = ""
        if exchange:
            code += "ch.exchange_declare(%r, passive=True)\n" % exchange
        if queue:
            code += "ch.queue_declare(%r, passive=True)\n" % queue
        return self.amqp(h, code).returncode == 0


def same_view(c, expected):
    views = [c.status(h) for h in NODES]
    return all(v is not None and {k: v[k] for k in expected} == expected for v in views)


def test_three_nodes_form_one_cluster(lan):
    c = Cluster(lan)
    try:
        run(c)
    finally:
        c.cleanup()


def run(c):
    for h in NODES:
        c.start(h, role="ram" if h == 3 else "disc")
    # Node 1 bootstrapped a cluster of its own (so did 2 and 3, until they join).
    wait_for(lambda: (c.status(1) or {}).get("running_nodes") == ["mq1"], 30, step=0.2, what="mq1 running alone")

    for h, flags in ((2, []), (3, ["--ram"])):
        c.ctl(h, "stop_app")
        c.ctl(h, "reset")
        r = c.ctl(h, "join_cluster", *flags, "rabbit@mq1")
        assert "Clustering node mq%d with mq1" % h in r.stdout
        c.ctl(h, "start_app")

    expected = {"disk_nodes": ["mq1", "mq2"], "ram_nodes": ["mq3"], "running_nodes": ["mq1", "mq2", "mq3"]}
    wait_for(lambda: same_view(c, expected), 60, step=0.5,
             what="the same cluster_status on every node (now %s)" % [c.status(h) for h in NODES])
    text = c.ctl(2, "cluster_status").stdout
    sections = [text.index(s) for s in ("Basics", "Disk Nodes", "RAM Nodes", "Running Nodes", "Versions")]
    assert sections == sorted(sections), text

    # Definitions made through node 1 are on nodes 2 and 3.
    r = c.amqp(1, "ch.exchange_declare('ex1', 'topic', durable=True)\n"
                  "ch.queue_declare('q1', durable=True)\n"
                  "ch.queue_bind('q1', 'ex1', 'a.#')")
    assert r.returncode == 0, r.stderr
    c.ctl(1, "set_policy", "lim", "^q", '{"max-length": 10}', "--apply-to", "queues")
    for h in (2, 3):
        wait_for(lambda: c.visible(h, exchange="ex1", queue="q1"), 20, step=0.3, what="ex1 and q1 on mq%d" % h)
        wait_for(lambda: "lim" in c.ctl(h, "list_policies").stdout, 20, step=0.3, what="policy on mq%d" % h)

    # A declare through a follower is forwarded to the leader.
    r = c.amqp(3, "ch.queue_declare('q3', durable=True)\nch.queue_bind('q3', 'ex1', 'b.#')")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: c.visible(1, queue="q3"), 20, step=0.3, what="q3 on mq1")

    # The RAM node dies: the voters go on; it catches up after its restart.
    victim = c.procs[3]
    victim.signal(signal.SIGKILL)
    victim.proc.wait(10)
    r = c.amqp(1, "ch.queue_declare('q4', durable=True)")
    assert r.returncode == 0, r.stderr
    assert c.visible(2, queue="q4") or wait_for(lambda: c.visible(2, queue="q4"), 20, step=0.3, what="q4 on mq2")
    c.start(3, role="ram")
    wait_for(lambda: c.visible(3, queue="q4"), 30, step=0.3, what="q4 on the restarted mq3")
    wait_for(lambda: same_view(c, expected), 30, step=0.5, what="mq3 running again in every view")

    # A node with another cookie cannot join, and is told what to do.
    c.start(4, cookie="SOMEOTHERCOOKIEBBBBBB")
    c.ctl(4, "stop_app")
    r = c.ctl(4, "join_cluster", "mq1", check=False)
    assert r.returncode == 69, (r.returncode, r.stdout, r.stderr)
    assert "cookie" in r.stderr and ".cookie" in r.stderr, r.stderr
    # Joining itself is refused (70); a running app must be stopped first (69).
    r = c.ctl(4, "join_cluster", "mq4", check=False)
    assert r.returncode == 70 and "itself" in r.stderr, (r.returncode, r.stderr)
    c.ctl(4, "start_app")
    r = c.ctl(4, "join_cluster", "mq1", check=False)
    assert r.returncode == 69 and "stop_app" in r.stderr, (r.returncode, r.stderr)
    assert c.status(1)["disk_nodes"] == ["mq1", "mq2"]

    for h in (4, 3, 2, 1):
        assert c.procs[h].stop() == 0, c.procs[h].output()[-3000:]
