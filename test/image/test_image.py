"""The container image, built and run for real with Debian's podman (root).

The image is assembled as `./build.sh image` does (packaging/image/rootfs.sh on the release
binary, then `podman build` of the Dockerfile), three containers become one cluster on a
podman network of the test's own (`mqnode ctl join_cluster` through `podman exec` for mq2;
mq3 by MQNODE_CLUSTER_SEEDS on its first start, as compose.yaml's nodes do), and a
pika client does a round trip through one of them. Image size and the time from `podman run`
to an open AMQP port are printed (pytest -s shows them). Every wait is bounded; containers,
volumes, the network and the image are removed by name at the end.

MQNODE_RELEASE_BIN: the release build of mqnode (default build/app/mqnode; `./build.sh
test` builds it).

podman runs with a containers.conf of the test's own (CONTAINERS_CONF): the runc runtime
(crun refuses hosts with cgroup v1 controllers beside a v2 mount, as these machines have)
and ulimits no higher than this process's own hard limits (podman's default of 1048576
open files cannot be set by a root without CAP_SYS_RESOURCE).
"""

import json
import os
import subprocess
import sys
import time

import pika
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "test", "support"))
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))
from brokers import free_port, port_open  # noqa: E402
from helpers import wait_until as wait_for  # noqa: E402
TAG = "pid%d" % os.getpid()
IMAGE = "localhost/mqnode-test:" + TAG
NET = "mqnode-test-" + TAG
SUBNET = "10.213.%d" % (os.getpid() % 200 + 20)
USER, PASS = "admin", "s3cret-pw"
COOKIE = "IMAGETESTCOOKIEAAAAAA"


def containers_conf():
    import resource
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 65536 if nofile == resource.RLIM_INFINITY else min(nofile, 65536)
    nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc // 2, 32768)
    path = "/tmp/mqnode-image-test-%d.conf" % os.getpid()
    with open(path, "w") as f:
        f.write('[containers]\ndefault_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]\n'
                '[engine]\nruntime = "runc"\n' % (nofile, nofile, nproc, nproc))
    return path


ENV = dict(os.environ, CONTAINERS_CONF=containers_conf())


def podman(*args, check=True, timeout=120):
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=ENV)
    if check:
        assert r.returncode == 0, "podman %s: rc=%d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr)
    return r


def ip(h):
    return "%s.%d" % (SUBNET, 10 + h)


def name(h):
    return "mqt-%s-%d" % (TAG, h)


@pytest.fixture(scope="module")
def image():
    binary = os.environ.get("MQNODE_RELEASE_BIN", os.path.join(ROOT, "build", "app", "mqnode"))
    assert os.access(binary, os.X_OK), "no release binary at %s: run ./build.sh build (or set MQNODE_RELEASE_BIN)" % binary
    rootfs = os.path.join(ROOT, "build", "image-root")
    subprocess.run([os.path.join(ROOT, "packaging", "image", "rootfs.sh"), binary, rootfs], check=True, timeout=120)
    podman("build", "--format", "docker", "-t", IMAGE, ROOT, timeout=300)
    try:
        yield IMAGE
    finally:
        podman("rmi", "-f", IMAGE, check=False)
        os.unlink(ENV["CONTAINERS_CONF"])


@pytest.fixture
def network():
    podman("network", "create", "--subnet", SUBNET + ".0/24", NET)
    started = []
    try:
        yield started
    finally:
        for c in started:  # shown by pytest when the test failed
            print("--- podman logs %s\n%s" % (c, podman("logs", "--tail", "40", c, check=False).stderr))
            podman("rm", "-f", "-t", "0", c, check=False)
            podman("volume", "rm", "-f", c + "-data", check=False)
        podman("network", "rm", "-f", NET, check=False)


def run_node(started, image, h, role="disc", extra_env=()):
    hosts = []
    for other in (1, 2, 3):
        if other != h:
            hosts += ["--add-host", "mq%d:%s" % (other, ip(other))]
    env = ["-e", "MQNODE_NODE_NAME=mq%d" % h, "-e", "MQNODE_ROLE=" + role, "-e", "MQNODE_CLUSTER=1",
           "-e", "MQNODE_COOKIE=" + COOKIE, "-e", "MQNODE_DEFAULT_USER=" + USER, "-e", "MQNODE_DEFAULT_PASS=" + PASS]
    for e in extra_env:
        env += ["-e", e]
    c = name(h)
    started.append(c)
    t0 = time.monotonic()
    podman("run", "-d", "--name", c, "--hostname", "mq%d" % h, "--network", NET, "--ip", ip(h), *hosts,
           "-v", "%s-data:/var/lib/mqnode" % c, *env, image)
    t_returned = time.monotonic()
    wait_for(lambda: port_open(ip(h), 5672), 30, interval=0.005, what="mq%d's AMQP port" % h)
    t_open = time.monotonic()
    return (t_open - t0) * 1000, (t_open - t_returned) * 1000


def ctl(h, *args, check=True):
    r = podman("exec", name(h), "mqnode", "ctl", *args, check=False, timeout=60)
    if check:
        assert r.returncode == 0, "mq%d ctl %s: rc=%d\n%s%s" % (h, args, r.returncode, r.stdout, r.stderr)
    return r


def cluster_status(h):
    r = ctl(h, "cluster_status", "--formatter", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def connect(h):
    creds = pika.PlainCredentials(USER, PASS)
    return pika.BlockingConnection(pika.ConnectionParameters(ip(h), 5672, credentials=creds,
                                                             connection_attempts=3, retry_delay=0.5))


def test_image_three_node_cluster(image, network):
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
    cfg = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    print("\nimage size: %.1f MB" % (size / 1e6))
    assert size < 60e6, size
    # Non-root by default; every port exposed; a health check of mqnode's own.
    assert cfg["User"] == "999:999"
    assert set(cfg["ExposedPorts"]) >= {"5672/tcp", "15672/tcp", "25672/tcp", "5670/tcp", "8080/tcp"}
    assert "/var/lib/mqnode" in cfg["Volumes"]

    timings = {}
    timings[1] = run_node(network, image, 1)
    timings[2] = run_node(network, image, 2)
    # mq3 joins by itself on its first start, as compose.yaml's nodes do.
    timings[3] = run_node(network, image, 3, role="ram", extra_env=["MQNODE_CLUSTER_SEEDS=mq1"])
    for h, (total, after) in timings.items():
        print("mq%d: AMQP port open %.0f ms after `podman run` was invoked, %.0f ms after it returned" % (h, total, after))

    # The process runs as the mqnode user, the data dir is the named volume.
    top = podman("top", name(1), "user", "args").stdout.splitlines()
    user, args = top[1].split(None, 1)
    assert user == "mqnode" and args.startswith("/usr/local/bin/mqnode --role disc"), top
    uids = podman("exec", name(1), "sh", "-c",
                  'while read -r k v; do [ "$k" = Uid: ] && echo "$v"; done < /proc/1/status; exit 0').stdout.split()
    assert uids and set(uids) == {"999"}, uids
    mounts = json.loads(podman("inspect", name(1)).stdout)[0]["Mounts"]
    assert any(m["Destination"] == "/var/lib/mqnode" and m.get("Name") == name(1) + "-data" for m in mounts), mounts

    # mq2 joins as the tutorial's hosts do, through `podman exec`.
    wait_for(lambda: "mq1" in (cluster_status(1) or {}).get("running_nodes", []), 30, interval=0.3, what="mq1 running")
    ctl(2, "stop_app")
    # The HEALTHCHECK follows mqnode's own health: a stopped broker is unhealthy.
    assert podman("healthcheck", "run", name(2), check=False).returncode == 1
    ctl(2, "reset")
    r = ctl(2, "join_cluster", "mq1")
    assert "Clustering node mq2 with mq1" in r.stdout, r.stdout
    ctl(2, "start_app")
    wait_for(lambda: podman("healthcheck", "run", name(2), check=False).returncode == 0, 30, interval=0.5,
             what="mq2 healthy again after start_app")
    expected = {"disk_nodes": ["mq1", "mq2"], "ram_nodes": ["mq3"], "running_nodes": ["mq1", "mq2", "mq3"]}
    wait_for(lambda: all({k: (cluster_status(h) or {}).get(k) for k in expected} == expected for h in (1, 2, 3)),
             60, interval=0.5, what="one cluster of three in every node's cluster_status")

    # The default user from the environment logs in from outside the container; a
    # definition made through mq1 is seen through mq3; a round trip through mq3.
    conn = connect(1)
    conn.channel().exchange_declare("img.ex", "topic", durable=True)
    conn.close()

    def declared_on_mq3():
        c = connect(3)
        try:
            c.channel().exchange_declare("img.ex", passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            if c.is_open:
                c.close()
    wait_for(declared_on_mq3, 30, interval=0.5, what="img.ex through mq3")

    conn = connect(3)
    ch = conn.channel()
    ch.queue_declare("img.q")
    ch.queue_bind("img.q", "img.ex", "a.#")
    ch.confirm_delivery()
    ch.basic_publish("img.ex", "a.b", b"through the container", pika.BasicProperties(delivery_mode=2))
    method, _, body = wait_for(lambda: (lambda r: r if r[0] else None)(ch.basic_get("img.q", auto_ack=True)),
                               10, what="the message back from img.q")
    assert body == b"through the container"
    # Guest does not exist when a default user is given.
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika.ConnectionParameters(ip(3), 5672, credentials=pika.PlainCredentials("guest", "guest")))

    assert podman("healthcheck", "run", name(3), check=False).returncode == 0

    # `podman stop` (SIGTERM, then SIGKILL after 10 s) of the RAM node: the open connection
    # is closed with 320 and the node exits 0, so it stopped on SIGTERM, before the SIGKILL.
    podman("stop", "-t", "10", name(3), timeout=60)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        conn.process_data_events(time_limit=5)
    assert closed.value.reply_code == 320, closed.value
    state = json.loads(podman("inspect", name(3)).stdout)[0]["State"]
    assert state["ExitCode"] == 0, state
    # The two voters go on as a cluster: a declare through mq2 is routed through mq1's
    # exchange definition.
    conn = connect(2)
    ch = conn.channel()
    ch.queue_declare("img.q2")
    ch.queue_bind("img.q2", "img.ex", "b.#")
    ch.basic_publish("img.ex", "b.c", b"after mq3 left")
    method, _, body = wait_for(lambda: (lambda r: r if r[0] else None)(ch.basic_get("img.q2", auto_ack=True)),
                               10, what="the message back from img.q2")
    assert body == b"after mq3 left"
    conn.close()


def test_compose_appliance(image):
    """compose.yaml with podman-compose: three nodes, mq2 and mq3 joined to mq1 by
    MQNODE_CLUSTER_SEEDS, names resolved by the compose network; a round trip through a
    published port on loopback; `down -v` removes it all."""
    project = "mqtc" + TAG
    ports = {k: free_port() for k in ("MQ1_AMQP_PORT", "MQ1_MGMT_PORT", "MQ2_AMQP_PORT", "MQ3_AMQP_PORT")}
    env = dict(ENV, MQNODE_IMAGE=image, MQNODE_COOKIE=COOKIE, MQNODE_DEFAULT_USER=USER, MQNODE_DEFAULT_PASS=PASS,
               **{k: str(v) for k, v in ports.items()})
    compose = ["podman-compose", "-f", os.path.join(ROOT, "compose.yaml"), "-p", project]

    def status():
        r = podman("exec", project + "_mq1_1", "mqnode", "ctl", "cluster_status", "--formatter", "json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else {}
    try:
        r = subprocess.run(compose + ["up", "-d"], capture_output=True, text=True, timeout=180, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: status().get("running_nodes") == ["mq1", "mq2", "mq3"], 60, interval=0.5,
                 what="mq1, mq2 and mq3 running in one cluster (now %s)" % status())
        assert status()["ram_nodes"] == ["mq3"]
        creds = pika.PlainCredentials(USER, PASS)
        def connect_mq3():
            try:
                return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", ports["MQ3_AMQP_PORT"],
                                                                         credentials=creds))
            except pika.exceptions.AMQPConnectionError:
                return None
        conn = wait_for(connect_mq3, 20, interval=0.5, what="AMQP through mq3's published port")
        ch = conn.channel()
        ch.queue_declare("compose.q")
        ch.basic_publish("", "compose.q", b"compose")
        assert ch.basic_get("compose.q", auto_ack=True)[2] == b"compose"
        conn.close()
    finally:
        r = subprocess.run(compose + ["down", "-v"], capture_output=True, text=True, timeout=180, env=env)
        print("--- podman-compose down\n" + r.stdout[-2000:] + r.stderr[-2000:])
        podman("network", "rm", "-f", project + "_default", check=False)
