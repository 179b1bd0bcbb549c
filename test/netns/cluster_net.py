"""A cluster of mqnode processes in namespaces on one bridge (vrrp_net.Lan), for the
test_cluster*.py files: start, ctl, cluster_status, pika in a node's namespace, the join
sequence of RabbitMQ's docs, and faults (SIGKILL, a node cut off the bridge).

Node names resolve through a per-namespace /etc/hosts (/etc/netns/<ns>/hosts, which
`ip netns exec` mounts), removed by cleanup(). Every wait is bounded; processes are
killed by pid.
"""

import json
import os
import shutil
import signal

import vrrp_net
from vrrp_net import wait_for

COOKIE = "CLUSTERTESTCOOKIEAAAA"
NODES = (1, 2, 3)


def write_hosts(lan):
    """Names mq1..mqN resolve in every namespace of <lan>; returns the dirs to remove."""
    dirs = []
    lines = "".join("%s mq%d\n" % (lan.ip(h), h) for h in range(1, lan.nhosts + 1))
    for h in range(1, lan.nhosts + 1):
        d = "/etc/netns/%s" % lan.ns(h)
        os.makedirs(d, exist_ok=True)
        dirs.append(d)
        with open(os.path.join(d, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n" + lines)
    return dirs


def remove_hosts(dirs):
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


class Cluster:
    def __init__(self, lan):
        self.lan = lan
        self.procs = {}
        self.hosts_dirs = write_hosts(lan)

    def cleanup(self):
        remove_hosts(self.hosts_dirs)

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


    # ---- faults -------------------------------------------------------------------

    def kill9(self, h):
        p = self.procs[h]
        p.signal(signal.SIGKILL)
        p.proc.wait(10)

    def isolate(self, h):
        """Cuts mq<h> off the bridge, both ways (its port on the bridge goes down)."""
        vrrp_net._run(["ip", "-n", self.lan.ns(0), "link", "set", "p%d" % h, "down"])

    def heal(self, h):
        vrrp_net._run(["ip", "-n", self.lan.ns(0), "link", "set", "p%d" % h, "up"])

    def leader(self, hosts=NODES):
        """The leader's host number as the first answering node sees it, or None."""
        for h in hosts:
            if not self.procs.get(h) or not self.procs[h].alive():
                continue
            s = self.status(h)
            if s and s.get("leader", "").startswith("mq"):
                return int(s["leader"][2:])
        return None

    def form(self, roles=None, hosts=NODES):
        """mq<hosts[0]> bootstraps; the others stop_app, reset, join_cluster it, start_app
        (RabbitMQ's own sequence). <roles>: host -> "disc" | "ram" (default disc)."""
        roles = roles or {}
        for h in hosts:
            self.start(h, role=roles.get(h, "disc"))
        first = hosts[0]
        wait_for(lambda: (self.status(first) or {}).get("running_nodes") == ["mq%d" % first], 30, step=0.2,
                 what="mq%d running alone" % first)
        for h in hosts[1:]:
            self.ctl(h, "stop_app")
            self.ctl(h, "reset")
            flags = ["--ram"] if roles.get(h) == "ram" else []
            self.ctl(h, "join_cluster", *flags, "rabbit@mq%d" % first)
            self.ctl(h, "start_app")
        disc = sorted("mq%d" % h for h in hosts if roles.get(h, "disc") == "disc")
        ram = sorted("mq%d" % h for h in hosts if roles.get(h) == "ram")
        expected = {"disk_nodes": disc, "ram_nodes": ram, "running_nodes": sorted("mq%d" % h for h in hosts)}
        wait_for(lambda: same_view(self, expected, hosts), 60, step=0.5,
                 what="the same cluster_status on every node (now %s)" % [self.status(h) for h in hosts])
        return expected

    def existing(self, h, names, timeout=30):
        """Which of the queues <names> exist on mq<h> (passive declares on its own broker),
        as a sorted list, or None when the node does not answer."""
        prog = ("import json, pika\n"
                "conn = pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', 5672, "
                "socket_timeout=5, blocked_connection_timeout=5))\n"
                "found = []\n"
                "ch = conn.channel()\n"
                "for n in %r:\n"
                "    try:\n"
                "        ch.queue_declare(n, passive=True)\n"
                "        found.append(n)\n"
                "    except pika.exceptions.ChannelClosedByBroker:\n"
                "        ch = conn.channel()\n"
                "print(json.dumps(sorted(found)))\n"
                "conn.close()\n" % list(names))
        r = self.lan.exec(h, ["/usr/bin/python3", "-c", prog], check=False, timeout=timeout)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout.strip().splitlines()[-1])


def cluster_fixture(lan):
    """The body of a `cluster` fixture over a `lan` one: a Cluster, its hosts files removed
    afterwards."""
    c = Cluster(lan)
    try:
        yield c
    finally:
        c.cleanup()


def same_view(c, expected, hosts=NODES):
    views = [c.status(h) for h in hosts]
    return all(v is not None and {k: v[k] for k in expected} == expected for v in views)


