#!/usr/bin/env python3
"""Three-node clusters side by side: mqnode and Debian's RabbitMQ, each as three processes in
three network namespaces on one bridge (the netns tests' harness), one after the other in
the same run. Per cluster:

  idle         CPU (% of a core) and RSS of each node at rest, over --idle-seconds
  metadata     one pika client on node 2 (a follower for mqnode: writes go through the
               leader): queue.declare + queue.bind + queue.delete, --meta-rounds times;
               p50 / p99 of the three together
  direct       mqnode-bench throughput (1 KiB, persistent, confirms window 1000, manual ack,
               rabbitmq-c's amqp_basic_publish: one message per send) on node 1, the queue's
               home
  non-home     the same with the generator on node 2, the queue declared on node 1 first

Prints a markdown table (ratios mqnode / RabbitMQ) on stdout, progress on stderr.
Root only (namespaces). Standard library plus Debian's python3-pika for the metadata client.

  sudo /usr/bin/python3 bench/cluster_run.py --mqnode-bin build-rel/app/mqnode \\
       --bench-bin build-rel/bench/mqnode-bench [--seconds 10] [--skip-rabbit]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "netns"))
import cluster_net  # noqa: E402  (the netns tests' namespace harness)
import vrrp_net  # noqa: E402
from vrrp_net import wait_for  # noqa: E402

HOSTS = (1, 2, 3)
COOKIE = "BENCHCLUSTERCOOKIEXYZ"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def proc_stats(pids):
    """CPU seconds and RSS (KiB) summed over <pids> and their descendants."""
    seen, todo = set(), list(pids)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    cpu, rss = 0.0, 0
    tick = os.sysconf("SC_CLK_TCK")
    for p in seen:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return cpu, rss


class MqnodeCluster:
    name = "mqnode"

    def __init__(self, lan, binary):
        self.lan, self.binary, self.procs = lan, os.path.abspath(binary), {}

    def data(self, h):
        return os.path.join(self.lan.workdir, "mq%d.data" % h)

    def ctl(self, h, *args):
        r = self.lan.exec(h, [self.binary, "ctl", "--data-dir", self.data(h)] + list(args), check=False, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("mq%d ctl %s: %s%s" % (h, args, r.stdout, r.stderr))
        return r.stdout

    def start(self):
        for h in HOSTS:
            os.makedirs(self.data(h), exist_ok=True)
            cookie = os.path.join(self.data(h), ".cookie")
            with open(cookie, "w") as f:
                f.write(COOKIE)
            os.chmod(cookie, 0o400)
            cfg = {"node": {"name": "mq%d" % h, "data_dir": self.data(h)},
                   "broker": {"listeners": [{"bind": "0.0.0.0:5672"}]},
                   "cluster": {"bind": "%s:25672" % self.lan.ip(h)}}
            path = os.path.join(self.lan.workdir, "mq%d.json" % h)
            with open(path, "w") as f:
                json.dump(cfg, f)
            self.procs[h] = self.lan.start(h, [self.binary, "--role", "disc", "--config", path], "mqnode-%d" % h)
            wait_for(lambda: os.path.exists(os.path.join(self.data(h), "mqnode.sock")), 30, step=0.1,
                     what="mq%d's control socket" % h)
        for h in (2, 3):
            self.ctl(h, "stop_app")
            self.ctl(h, "reset")
            self.ctl(h, "join_cluster", "mq1")
            self.ctl(h, "start_app")
        wait_for(lambda: all(json.loads(self.ctl(h, "cluster_status", "--formatter", "json")).get("running_nodes")
                             == ["mq1", "mq2", "mq3"] for h in HOSTS), 60, step=0.5, what="the mqnode cluster")

    def pids(self, h):
        return [self.procs[h].proc.pid]

    def stop(self):
        for p in self.procs.values():
            p.stop()


class RabbitCluster:
    name = "RabbitMQ"

    def __init__(self, lan):
        self.lan, self.procs, self.env = lan, {}, {}

    def ctl(self, h, *args, check=True):
        r = self.lan.exec(h, ["env"] + ["%s=%s" % kv for kv in self.env[h].items()] +
                          [RABBITMQCTL, "-n", "rabbit@mq%d" % h] + list(args), check=False, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError("rabbit@mq%d rabbitmqctl %s: %s%s" % (h, args, r.stdout, r.stderr))
        return r

    def start(self):
        for h in HOSTS:
            base = os.path.join(self.lan.workdir, "rabbit%d" % h)
            for d in ("home", "mnesia", "log"):
                os.makedirs(os.path.join(base, d), exist_ok=True)
            cookie = os.path.join(base, "home", ".erlang.cookie")
            with open(cookie, "w") as f:
                f.write(COOKIE)
            os.chmod(cookie, 0o400)
            with open(os.path.join(base, "rabbitmq.conf"), "w") as f:
                f.write("listeners.tcp.default = 5672\nloopback_users = none\n")
            with open(os.path.join(base, "enabled_plugins"), "w") as f:
                f.write("[].\n")
            open(os.path.join(base, "rabbitmq-env.conf"), "w").close()
            self.env[h] = {
                "HOME": os.path.join(base, "home"),
                "RABBITMQ_NODENAME": "rabbit@mq%d" % h,
                "RABBITMQ_MNESIA_BASE": os.path.join(base, "mnesia"),
                "RABBITMQ_LOG_BASE": os.path.join(base, "log"),
                "RABBITMQ_CONFIG_FILE": os.path.join(base, "rabbitmq.conf"),
                "RABBITMQ_CONF_ENV_FILE": os.path.join(base, "rabbitmq-env.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(base, "enabled_plugins"),
                "RABBITMQ_PID_FILE": os.path.join(base, "rabbitmq.pid"),
            }
            self.procs[h] = self.lan.start(h, [RABBITMQ_SERVER], "rabbit-%d" % h, env=self.env[h])
        for h in HOSTS:
            wait_for(lambda: self.ctl(h, "await_startup", "--timeout", "5", check=False).returncode == 0, 180,
                     step=1, what="rabbit@mq%d started" % h)
        for h in (2, 3):
            self.ctl(h, "stop_app")
            self.ctl(h, "reset")
            self.ctl(h, "join_cluster", "rabbit@mq1")
            self.ctl(h, "start_app")
        wait_for(lambda: "rabbit@mq3" in self.ctl(1, "cluster_status").stdout, 60, step=1, what="the RabbitMQ cluster")

    def pids(self, h):
        try:
            with open(self.env[h]["RABBITMQ_PID_FILE"]) as f:
                return [int(f.read().strip())]
        except (OSError, ValueError):
            return [self.procs[h].proc.pid]

    def stop(self):
        for h, p in self.procs.items():
            self.ctl(h, "stop", check=False)
            p.stop(timeout=30)
        # epmd, one per namespace, started by the nodes
        for h in HOSTS:
            self.lan.exec(h, ["pkill", "-x", "epmd"], check=False)


def idle(cluster, seconds):
    before = {h: proc_stats(cluster.pids(h)) for h in HOSTS}
    time.sleep(seconds)
    out = {}
    for h in HOSTS:
        cpu, rss = proc_stats(cluster.pids(h))
        out[h] = {"cpu_pct": 100.0 * (cpu - before[h][0]) / seconds, "rss_mib": rss / 1024.0}
    return out


METADATA = """
import json, time, pika
conn = pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', 5672, heartbeat=0))
ch = conn.channel()
ch.exchange_declare('bench-meta', 'direct')
lat = []
for i in range(%d):
    t = time.perf_counter()
    ch.queue_declare('bench-meta-%%d' %% i)
    ch.queue_bind('bench-meta-%%d' %% i, 'bench-meta', 'k')
    ch.queue_delete('bench-meta-%%d' %% i)
    lat.append((time.perf_counter() - t) * 1000)
ch.exchange_delete('bench-meta')
conn.close()
print('LAT=' + json.dumps(lat))
"""


def metadata(cluster, rounds):
    r = cluster.lan.exec(2, ["/usr/bin/python3", "-c", METADATA % rounds], check=False, timeout=600)
    line = [l for l in r.stdout.splitlines() if l.startswith("LAT=")]
    if r.returncode != 0 or not line:
        raise RuntimeError("metadata client failed: %s%s" % (r.stdout, r.stderr))
    lat = sorted(json.loads(line[0][4:]))
    return {"p50_ms": statistics.median(lat), "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))]}


DECLARE = """
import pika
conn = pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', 5672))
conn.channel().queue_declare('bench-flow', durable=True)
conn.close()
"""


def flow(cluster, bench_bin, host, seconds):
    """mqnode-bench on <host> against its own node; the queue was declared on node 1."""
    pids = [p for h in HOSTS for p in cluster.pids(h)]
    cpu0 = proc_stats(pids)[0]
    t0 = time.monotonic()
    r = cluster.lan.exec(host, [os.path.abspath(bench_bin), "throughput", "--size", "1024", "--ack", "manual",
                                "--persistent", "--confirm-window", "1000", "--publisher", "lib",
                                "--queue", "bench-flow", "--seconds", str(seconds)],
                         check=False, timeout=seconds + 120)
    wall = time.monotonic() - t0
    cpu = proc_stats(pids)[0] - cpu0
    res = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    if not res:
        raise RuntimeError("mqnode-bench: no RESULT (rc %d): %s%s" % (r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    j = json.loads(res[0][len("RESULT "):])
    if not j.get("ok"):
        raise RuntimeError("mqnode-bench failed: %s" % j)
    rate = j["msgs_per_sec"]
    return {"msgs_per_sec": rate, "cluster_cpu_s": cpu,
            "msgs_per_cpu_s": rate * wall / cpu if cpu > 0 else 0.0}


def measure(cluster, args):
    log("== %s: starting three nodes" % cluster.name)
    cluster.start()
    try:
        res = {"idle": idle(cluster, args.idle_seconds)}
        log("%s idle: %s" % (cluster.name, res["idle"]))
        res["metadata"] = metadata(cluster, args.meta_rounds)
        log("%s metadata: %s" % (cluster.name, res["metadata"]))
        r = cluster.lan.exec(1, ["/usr/bin/python3", "-c", DECLARE], check=False, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("declaring bench-flow on node 1: %s" % r.stderr)
        for label, host in (("direct", 1), ("non-home", 2)):
            if label == "non-home":  # the generator deleted it at the end of the direct run
                cluster.lan.exec(1, ["/usr/bin/python3", "-c", DECLARE], check=True, timeout=60)
            res[label] = flow(cluster, args.bench_bin, host, args.seconds)
            log("%s %s: %s" % (cluster.name, label, res[label]))
        return res
    finally:
        cluster.stop()


def table(results):
    names = list(results)
    rows = []
    def row(label, get, better="high"):
        vals = [get(results[n]) for n in names]
        ratio = ""
        if len(vals) == 2 and vals[1]:
            ratio = "%.1f×" % (vals[0] / vals[1] if better == "high" else vals[1] / vals[0])
        rows.append("| %s | %s | %s |" % (label, " | ".join("%.2f" % v if v < 100 else "%.0f" % v for v in vals), ratio))
    row("metadata declare+bind+delete p50 (ms)", lambda r: r["metadata"]["p50_ms"], "low")
    row("metadata declare+bind+delete p99 (ms)", lambda r: r["metadata"]["p99_ms"], "low")
    row("publish→consume on the home node (msg/s)", lambda r: r["direct"]["msgs_per_sec"])
    row("publish→consume through a non-home node (msg/s)", lambda r: r["non-home"]["msgs_per_sec"])
    row("non-home msgs per cluster CPU-second", lambda r: r["non-home"]["msgs_per_cpu_s"])
    row("idle CPU, sum of 3 nodes (% of a core)", lambda r: sum(v["cpu_pct"] for v in r["idle"].values()), "low")
    row("idle RSS, sum of 3 nodes (MiB)", lambda r: sum(v["rss_mib"] for v in r["idle"].values()), "low")
    head = "| | %s | ratio |\n|---|%s---:|" % (" | ".join(names), "---:|" * len(names))
    return head + "\n" + "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mqnode-bin", required=True)
    ap.add_argument("--bench-bin", required=True)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--idle-seconds", type=int, default=20)
    ap.add_argument("--meta-rounds", type=int, default=300)
    ap.add_argument("--skip-rabbit", action="store_true")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("cluster_run.py needs root (network namespaces)")
    vrrp_net.remove_stale()
    lan = vrrp_net.Lan(hosts=3)
    lan.create()
    hosts = cluster_net.write_hosts(lan)
    results = {}
    try:
        results["mqnode"] = measure(MqnodeCluster(lan, args.mqnode_bin), args)
        if not args.skip_rabbit:
            results["RabbitMQ"] = measure(RabbitCluster(lan), args)
    finally:
        cluster_net.remove_hosts(hosts)
        lan.destroy()
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
