"""Faults on a cluster of three disc nodes (cluster_net.Cluster): kill -9 of a follower and
of the leader (metadata writes go on, the victim catches up on restart), a node cut off
the bridge (it refuses writes with a clear error in bounded time and catches up when the
link is back), all three stopped and started (every durable definition back), a wiped
node that rejoins with join_cluster; then a bounded run in the style of Jepsen: random
faults while clients declare and delete queues, ending with the same metadata on every
node and no client told success for a change that is not there.
Every wait is bounded; processes are killed by pid.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

import vrrp_net
import cluster_net
from cluster_net import NODES, same_view
from vrrp_net import wait_for

FULL = {"disk_nodes": ["mq1", "mq2", "mq3"], "ram_nodes": [], "running_nodes": ["mq1", "mq2", "mq3"]}


@pytest.fixture
def cluster():
    for lan in vrrp_net.lan_fixture_hosts(3):
        yield from cluster_net.cluster_fixture(lan)


def declare(c, h, queue, timeout=30):
    return c.amqp(h, "ch.queue_declare(%r, durable=True)" % queue, timeout=timeout)


def declared(c, h, queue):
    return declare(c, h, queue).returncode == 0


def test_kill_partition_restart_wipe(cluster):
    signal.alarm(300)  # conftest's 120 s is for one-scenario tests
    c = cluster
    c.form()
    r = c.amqp(1, "ch.exchange_declare('ex1', 'topic', durable=True)\n"
                  "ch.queue_declare('q0', durable=True)\n"
                  "ch.queue_bind('q0', 'ex1', 'a.#')")
    assert r.returncode == 0, r.stderr
    c.ctl(1, "set_policy", "lim", "^q", '{"max-length": 10}', "--apply-to", "queues")

    # kill -9 of a follower: the other two go on; the follower catches up on restart.
    leader = wait_for(c.leader, 20, step=0.2, what="a leader")
    follower, third = [h for h in NODES if h != leader]
    c.kill9(follower)
    r = declare(c, leader, "after-follower-kill")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: c.visible(third, queue="after-follower-kill"), 20, step=0.3, what="the declare on mq%d" % third)
    c.start(follower)
    wait_for(lambda: c.visible(follower, queue="after-follower-kill"), 30, step=0.3,
             what="the restarted mq%d caught up" % follower)

    # kill -9 of the leader: the others elect one; a write through either of them goes on.
    c.kill9(leader)
    survivors = [h for h in NODES if h != leader]
    wait_for(lambda: c.leader(survivors) in survivors, 20, step=0.2, what="a new leader among %s" % survivors)
    wait_for(lambda: declared(c, survivors[1], "after-leader-kill"), 30, step=0.5, what="a write after the leader died")
    c.start(leader)
    wait_for(lambda: c.visible(leader, queue="after-leader-kill"), 30, step=0.3,
             what="the old leader mq%d caught up" % leader)
    wait_for(lambda: same_view(c, FULL), 30, step=0.5, what="three running nodes")

    # The leader cut off: it is a minority of one. A write there gets a clear error within a
    # bounded time and is nowhere afterwards; the majority elects a leader and goes on.
    cut = wait_for(c.leader, 20, step=0.2, what="a leader")
    rest = [h for h in NODES if h != cut]
    c.isolate(cut)
    r = declare(c, cut, "in-minority", timeout=60)
    assert r.returncode != 0, "a write on a minority node succeeded"
    assert "retry" in r.stderr and ("leader" in r.stderr or "unknown" in r.stderr), r.stderr[-2000:]
    wait_for(lambda: declared(c, rest[0], "in-majority"), 30, step=0.5, what="a write on the majority side")
    assert not c.visible(cut, queue="in-majority")
    c.heal(cut)
    wait_for(lambda: c.visible(cut, queue="in-majority"), 30, step=0.3, what="mq%d caught up after the cut" % cut)
    for h in NODES:
        assert not c.visible(h, queue="in-minority"), "mq%d has the refused declare" % h

    # All three stopped and started: every durable definition is back.
    for h in NODES:
        assert c.procs[h].stop() == 0, c.procs[h].output()[-3000:]
    for h in NODES:
        c.start(h)
    wait_for(lambda: same_view(c, FULL), 60, step=0.5, what="the cluster back after a full stop")
    for h in NODES:
        for q in ("q0", "after-follower-kill", "after-leader-kill", "in-majority"):
            wait_for(lambda: c.visible(h, exchange="ex1", queue=q), 20, step=0.3, what="%s on mq%d" % (q, h))
        assert "lim" in c.ctl(h, "list_policies").stdout

    # A node whose data dir is wiped rejoins with join_cluster, replacing its old self.
    c.kill9(3)
    shutil.rmtree(c.data(3))
    c.start(3)
    c.ctl(3, "stop_app")
    c.ctl(3, "join_cluster", "rabbit@mq1")
    c.ctl(3, "start_app")
    wait_for(lambda: same_view(c, FULL), 60, step=0.5,
             what="the wiped mq3 back, its old id gone (now %s)" % [c.status(h) for h in NODES])
    wait_for(lambda: c.visible(3, exchange="ex1", queue="after-leader-kill"), 30, step=0.3,
             what="definitions on the rejoined mq3")
    assert "lim" in c.ctl(3, "list_policies").stdout

    for h in NODES:
        assert c.procs[h].stop() == 0, c.procs[h].output()[-3000:]


# ---- Jepsen-style bounded run ------------------------------------------------------------

CLIENT = r'''
import json, os, random, sys, time
import pika
cid, stop_path, out_path, seed = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
rnd = random.Random(seed)
names = ["c%d-q%d" % (cid, i) for i in range(6)]
log, conn, ch = [], None, None
while not os.path.exists(stop_path):
    if ch is None:
        try:
            if conn is None or not conn.is_open:
                conn = pika.BlockingConnection(pika.ConnectionParameters(
                    "127.0.0.1", 5672, socket_timeout=3, connection_attempts=1, heartbeat=0))
            ch = conn.channel()
        except Exception:
            conn, ch = None, None
            time.sleep(0.3)
            continue
    name, op = rnd.choice(names), rnd.choice(["declare", "delete"])
    try:
        if op == "declare":
            ch.queue_declare(name, durable=True)
        else:
            ch.queue_delete(name)
        log.append([name, op, "ok", ""])
    except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as e:
        log.append([name, op, "error", str(e)])
        ch = None
    except Exception as e:
        log.append([name, op, "unknown", repr(e)])
        conn, ch = None, None
    time.sleep(0.02)
with open(out_path, "w") as f:
    json.dump(log, f)
'''


def start_client(c, h, seed):
    script = os.path.join(c.lan.workdir, "jepsen_client.py")
    with open(script, "w") as f:
        f.write(CLIENT)
    out = os.path.join(c.lan.workdir, "client%d.json" % h)
    stop = os.path.join(c.lan.workdir, "clients.stop")
    p = subprocess.Popen(["ip", "netns", "exec", c.lan.ns(h), "/usr/bin/python3", script, str(h), stop, out,
                          str(seed + h)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(out + ".err", "w"))
    return p, out


def expected_states(logs):
    """name -> True/False: the state the acknowledged operations imply, for the names
    whose last operation was acknowledged (after an error or an unknown outcome, both
    states are possible)."""
    out = {}
    for log in logs:
        last = {}
        for name, op, result, _ in log:
            last[name] = (op, result)
        for name, (op, result) in last.items():
            if result == "ok":
                out[name] = op == "declare"
    return out


def test_jepsen_bounded(cluster):
    signal.alarm(420)
    c = cluster
    seed = int(os.environ.get("MQNODE_JEPSEN_SEED", time.time()))
    print("jepsen seed", seed, file=sys.stderr)
    rnd = random.Random(seed)
    c.form()
    stop_file = os.path.join(c.lan.workdir, "clients.stop")
    clients = [start_client(c, h, seed) for h in NODES]
    faults = []
    try:
        for i in range(30):
            kind = rnd.choice(["kill", "isolate", "isolate-leader"])
            if kind == "isolate-leader":
                h = c.leader() or rnd.choice(NODES)
            else:
                h = rnd.choice(NODES)
            faults.append((kind, h))
            if kind == "kill":
                c.kill9(h)
                time.sleep(rnd.uniform(0.2, 1.0))
                c.start(h)
            else:
                c.isolate(h)
                time.sleep(rnd.uniform(1.0, 2.5))
                c.heal(h)
            time.sleep(rnd.uniform(0.3, 1.0))
    finally:
        for h in NODES:
            c.heal(h)
        with open(stop_file, "w"):
            pass
    print("faults", faults, file=sys.stderr)
    logs = []
    for p, out in clients:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError("a client hung on a metadata operation for over 60 s (faults %s)" % faults)
        assert p.returncode == 0, open(out + ".err").read()[-2000:]
        with open(out) as f:
            logs.append(json.load(f))
    ops = sum(len(l) for l in logs)
    acked = sum(1 for l in logs for e in l if e[2] == "ok")
    print("operations", ops, "acknowledged", acked, file=sys.stderr)
    assert acked > 30, "too few operations got through: %d of %d" % (acked, ops)

    wait_for(lambda: same_view(c, FULL), 60, step=0.5, what="the cluster whole after the faults")
    names = sorted({e[0] for l in logs for e in l})
    views = {}

    def converged():
        for h in NODES:
            views[h] = c.existing(h, names)
        return all(views[h] is not None for h in NODES) and views[1] == views[2] == views[3]

    wait_for(converged, 30, step=0.5, what="the same queues on every node (now %s)" % views)
    present = set(views[1])
    wrong = {n: want for n, want in expected_states(logs).items() if (n in present) != want}
    assert not wrong, ("a client was told success for a change that is not there (name: acknowledged state): %s; "
                       "seed %d, faults %s" % (wrong, seed, faults))
    for h in NODES:
        assert c.procs[h].stop() == 0, c.procs[h].output()[-3000:]
