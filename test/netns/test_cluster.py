"""Three mqnode processes become one cluster, as RabbitMQ's three-host deployment does:
node 1 bootstraps, nodes 2 and 3 `stop_app; reset; join_cluster [--ram] mq1; start_app`.
Definitions made through any node are on every node; a follower killed with SIGKILL
catches up after its restart; a node with another cookie cannot join and is told why.

Hosts are namespaces on one bridge (cluster_net.Cluster over vrrp_net.Lan). Every wait is
bounded; processes are killed by pid.
"""

import signal

import pytest

import vrrp_net
import cluster_net
from cluster_net import NODES, same_view
from vrrp_net import wait_for

@pytest.fixture
def cluster():
    for lan in vrrp_net.lan_fixture_hosts(4):
        yield from cluster_net.cluster_fixture(lan)


def test_three_nodes_form_one_cluster(cluster):
    c = cluster
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
    # Joining itself is refused (70); a running app must be stopped first (64, as rabbitmqctl 3.10).
    r = c.ctl(4, "join_cluster", "mq4", check=False)
    assert r.returncode == 70 and "itself" in r.stderr, (r.returncode, r.stderr)
    c.ctl(4, "start_app")
    r = c.ctl(4, "join_cluster", "mq1", check=False)
    assert r.returncode == 64 and "stop_app" in r.stderr, (r.returncode, r.stderr)
    assert c.status(1)["disk_nodes"] == ["mq1", "mq2"]

    for h in (4, 3, 2, 1):
        assert c.procs[h].stop() == 0, c.procs[h].output()[-3000:]
