"""The operator's cluster verbs on three mqnode processes (cluster_net.Cluster): the whole
cluster_status, await_startup, change_cluster_node_type, reset that leaves the cluster (a
new node id, the others drop the old one), forget_cluster_node, force_reset,
update_cluster_nodes, and their refusals with rabbitmqctl's texts and exit codes.
Every wait is bounded; processes are killed by pid.
"""

import json
import os
import signal

import pytest

import vrrp_net
import cluster_net
from cluster_net import same_view
from vrrp_net import wait_for

SECTIONS = ("Basics", "Disk Nodes", "RAM Nodes", "Running Nodes", "Versions", "CPU Cores", "Maintenance status",
            "Alarms", "Network Partitions", "Listeners", "Feature flags")


@pytest.fixture
def cluster():
    for lan in vrrp_net.lan_fixture_hosts(3):
        yield from cluster_net.cluster_fixture(lan)


def node_id(c, h):
    with open(os.path.join(c.data(h), "node_id")) as f:
        return int(f.read())


def members(c, h):
    s = c.status(h) or {}
    return sorted(s.get("disk_nodes", [])), sorted(s.get("ram_nodes", []))


def remembered_roles(c, h):
    try:
        with open(os.path.join(c.data(h), "cluster_members.json")) as f:
            return {m["name"]: m["role"] for m in json.load(f)}
    except (OSError, ValueError, KeyError):
        return None


def test_cluster_operator_verbs(cluster):
    signal.alarm(300)  # conftest's 120 s is for one-scenario tests
    c = cluster
    c.form()
    assert c.ctl(2, "await_startup", "--timeout", "20").returncode == 0

    # cluster_status: every section of rabbitmqctl 3.10, in its order (RAM Nodes only when there are some).
    text = c.ctl(1, "cluster_status").stdout
    present = [s for s in SECTIONS if "\n%s\n" % s in "\n" + text]
    assert present == [s for s in SECTIONS if s != "RAM Nodes"], text
    assert "Node: mq2, status: not under maintenance" in text, text
    assert "Node: mq3, interface: %s, port: 25672, protocol: clustering" % c.lan.ip(3) in text, text
    assert "port: 5672, protocol: amqp" in text, text
    assert "Network Partitions\n\n(none)" in text, text
    s = c.status(1)
    for key in ("cluster_name", "disk_nodes", "ram_nodes", "running_nodes", "versions", "cpu_cores",
                "maintenance_status", "alarms", "partitions", "listeners", "feature_flags"):
        assert key in s, (key, s)
    assert sorted(s["cpu_cores"]) == ["mq1", "mq2", "mq3"] and all(n > 0 for n in s["cpu_cores"].values()), s
    assert s["versions"]["mq2"]["rabbitmq_name"] == "mqnode", s
    assert {l["protocol"] for l in s["listeners"]["mq3"]} == {"amqp", "clustering"}, s

    # Until queues are replicated, ha-mode and quorum do not look like they worked: set_policy
    # warns (and the nodes log it); a quorum declare works (clients depend on it), logged.
    r = c.ctl(2, "set_policy", "ha-all", "^ha\\.", '{"ha-mode": "all"}', "--apply-to", "queues")
    assert "Warning" in r.stderr and "ha-mode" in r.stderr and "not replicate" in r.stderr, r.stderr
    r = c.amqp(3, "ch.queue_declare('qq1', durable=True, arguments={'x-queue-type': 'quorum'})")
    assert r.returncode == 0, r.stderr
    for h in (1, 2, 3):
        c.procs[h].wait_logged("policy with ha-mode", timeout=10)
        c.procs[h].wait_logged("x-queue-type quorum is not replicated yet", timeout=10)
    assert "queue=qq1" in c.procs[1].output()
    c.ctl(1, "clear_policy", "ha-all")

    # forget_cluster_node refuses a running node and an unknown one (rabbitmqctl 3.10's texts and
    # exit codes: its banner first, then the error, 69).
    r = c.ctl(1, "forget_cluster_node", "rabbit@mq3", check=False)
    assert r.returncode == 69 and "failed_to_remove_node" in r.stderr and "Mnesia is running" in r.stderr, r
    r = c.ctl(1, "forget_cluster_node", "rabbit@nosuchnode", check=False)
    assert r.returncode == 69 and "not_a_cluster_node" in r.stderr, r
    assert r.stdout == "Removing node rabbit@nosuchnode from the cluster\n", r
    r = c.ctl(1, "forget_cluster_node", "--offline", "mq3", check=False)
    assert r.returncode == 64 and "requires the target node to be stopped" in r.stderr, r

    # change_cluster_node_type: needs stop_app; done at start_app (raft standby).
    r = c.ctl(3, "change_cluster_node_type", "ram", check=False)
    assert r.returncode == 64 and "requires the 'rabbit' app to be stopped" in r.stderr and "stop_app" in r.stderr, r
    c.ctl(3, "stop_app")
    assert "Turning mq3 into a ram node" in c.ctl(3, "change_cluster_node_type", "ram").stdout
    c.ctl(3, "start_app")
    wait_for(lambda: same_view(c, {"disk_nodes": ["mq1", "mq2"], "ram_nodes": ["mq3"],
                                   "running_nodes": ["mq1", "mq2", "mq3"]}), 30, step=0.3, what="mq3 a ram node")
    assert "\nRAM Nodes\n\nmq3\n" in c.ctl(2, "cluster_status").stdout

    # reset leaves the cluster: the others drop it, and it comes back under a new id.
    old = node_id(c, 3)
    c.ctl(3, "stop_app")
    assert "Resetting node mq3" in c.ctl(3, "reset").stdout
    assert node_id(c, 3) != old
    wait_for(lambda: members(c, 1) == (["mq1", "mq2"], []), 20, step=0.3, what="mq3 gone from mq1's view")
    assert members(c, 2) == (["mq1", "mq2"], [])
    c.ctl(3, "join_cluster", "mq2")  # any member: a follower redirects to the leader
    c.ctl(3, "start_app")
    full = {"disk_nodes": ["mq1", "mq2", "mq3"], "ram_nodes": [], "running_nodes": ["mq1", "mq2", "mq3"]}
    wait_for(lambda: same_view(c, full), 40, step=0.3, what="mq3 back as a disc node")

    # forget_cluster_node of a node whose app is stopped; it then force_resets and joins again.
    c.ctl(3, "stop_app")
    assert "Removing node rabbit@mq3 from the cluster" in c.ctl(2, "forget_cluster_node", "rabbit@mq3").stdout
    wait_for(lambda: members(c, 1) == (["mq1", "mq2"], []), 20, step=0.3, what="mq3 forgotten")
    r = c.ctl(3, "forget_cluster_node", "mq1", check=False)
    assert r.returncode == 69 and "offline_node_no_offline_flag" in r.stderr, r
    assert "Forcefully resetting node mq3" in c.ctl(3, "force_reset").stdout
    c.ctl(3, "join_cluster", "--ram", "mq1")
    c.ctl(3, "start_app")
    wait_for(lambda: same_view(c, {"disk_nodes": ["mq1", "mq2"], "ram_nodes": ["mq3"],
                                   "running_nodes": ["mq1", "mq2", "mq3"]}), 40, step=0.3, what="mq3 back as ram")

    # update_cluster_nodes: the members come from a running node of the same cluster.
    c.ctl(2, "stop_app")
    assert "Will seed mq2 from mq1 on next start" in c.ctl(2, "update_cluster_nodes", "rabbit@mq1").stdout
    with open(os.path.join(c.data(2), "cluster_members.json")) as f:
        assert sorted(m["name"] for m in json.load(f)) == ["mq1", "mq2", "mq3"]

    # mq2 becomes ram too: mq1 is then the only disc node, and can neither be demoted nor reset.
    assert "Turning mq2 into a ram node" in c.ctl(2, "change_cluster_node_type", "ram").stdout
    c.ctl(2, "start_app")
    wait_for(lambda: members(c, 1) == (["mq1"], ["mq2", "mq3"]), 30, step=0.3, what="mq2 a ram node")
    wait_for(lambda: remembered_roles(c, 1) == {"mq1": "disc", "mq2": "ram", "mq3": "ram"}, 10, step=0.2,
             what="mq1 remembers the roles (now %s)" % remembered_roles(c, 1))
    c.ctl(1, "stop_app")
    r = c.ctl(1, "change_cluster_node_type", "ram", check=False)
    assert r.returncode == 69 and "only disc node" in r.stderr, r
    r = c.ctl(1, "reset", check=False)
    assert r.returncode == 69 and "resetting_only_disc_node" in r.stderr, r
    c.ctl(1, "start_app")
    assert c.ctl(1, "await_startup", "--timeout", "30").returncode == 0
    wait_for(lambda: members(c, 3) == (["mq1"], ["mq2", "mq3"]) and
             (c.status(3) or {}).get("running_nodes") == ["mq1", "mq2", "mq3"], 30, step=0.3,
             what="the cluster whole again")

    for h in (3, 2, 1):
        assert c.procs[h].stop() == 0, c.procs[h].output()[-3000:]
