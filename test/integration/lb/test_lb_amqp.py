"""The lb role in front of real mqnode brokers (`--role disc`), with pika through the
frontend and the `amqp` health check (protocol header → connection.start)."""

import os
import shutil
import socket
import subprocess
import sys
import threading

import pika
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lbutil import LbProcess, brokers, free_port, lb_role_missing, wait_for  # noqa: E402

pytestmark = [pytest.mark.skipif(lb_role_missing() is not None, reason=str(lb_role_missing())),
              pytest.mark.time_limit(120)]


@pytest.fixture
def cluster():
    """Two mqnode brokers and an lb in front of them (amqp checks, inter 200 ms)."""
    made = {"brokers": [], "lb": None}

    def make(balance="roundrobin", extra_servers=()):
        bs = [brokers.start_broker(prefix="mqlb-broker-") for _ in range(2)]
        made["brokers"].extend(bs)
        fe_port = free_port()
        servers = [{"name": "mq%d" % (i + 1), "address": "127.0.0.1:%d" % b.port} for i, b in enumerate(bs)]
        servers += list(extra_servers)
        lb = LbProcess({
            "frontends": [{"name": "amqp", "bind": "127.0.0.1:%d" % fe_port, "backend": "rabbitmq"}],
            "backends": [{"name": "rabbitmq", "balance": balance,
                          "check": {"type": "amqp", "inter_ms": 200, "rise": 2, "fall": 3},
                          "servers": servers}]})
        lb.fe_port = fe_port
        made["lb"] = lb
        lb.start()
        return bs, lb

    yield make
    problems = made["lb"].stop() if made["lb"] else []
    for b in made["brokers"]:
        b.stop()
        p = b.problems(only_new=False)
        if p and not b.stopped_by_us:
            problems += p
        else:
            shutil.rmtree(b.workdir, ignore_errors=True)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def params(port):
    return pika.ConnectionParameters("127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest"),
                                     connection_attempts=1, socket_timeout=10, blocked_connection_timeout=30)


def cluster_name(conn):
    return conn._impl.server_properties.get("cluster_name")


def test_pika_through_the_lb(cluster):
    bs, lb = cluster()
    wait_for(lambda: all(r["status"] == "UP" for r in lb.csv_rows() if r["svname"].startswith("mq")), 20,
             what="brokers UP")
    assert lb.row("rabbitmq", "mq1")["check_status"] == "L7OK"
    conn = pika.BlockingConnection(params(lb.fe_port))
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"through the lb")
    method, props, body = None, None, None
    for _ in range(50):
        method, props, body = ch.basic_get(q, auto_ack=True)
        if method:
            break
        conn.sleep(0.05)
    assert body == b"through the lb"
    conn.close()
    row = lb.row("amqp", "FRONTEND")
    assert int(row["bin"]) > 0 and int(row["bout"]) > 0


def test_killed_broker_marked_down_and_clients_go_elsewhere(cluster):
    bs, lb = cluster()
    wait_for(lambda: all(r["status"] == "UP" for r in lb.csv_rows() if r["svname"].startswith("mq")), 20,
             what="brokers UP")
    bs[0].terminate()
    wait_for(lambda: lb.row("rabbitmq", "mq1")["status"] == "DOWN", 20, what="mq1 DOWN")
    for _ in range(4):
        conn = pika.BlockingConnection(params(lb.fe_port))
        conn.channel().queue_declare("", exclusive=True)
        conn.close()
    row = lb.row("rabbitmq", "mq2")
    assert int(row["stot"]) >= 4
    assert lb.row("rabbitmq", "BACKEND")["act"] == "1"


def test_wedged_broker_fails_the_amqp_check(cluster):
    # Accepts TCP but never speaks AMQP: a `tcp` check would call it UP.
    wedged = socket.socket()
    wedged.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    wedged.bind(("127.0.0.1", 0))
    wedged.listen(64)
    held = []
    stop = threading.Event()

    def accept():
        wedged.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = wedged.accept()
                held.append(c)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        bs, lb = cluster(extra_servers=[{"name": "wedged", "address": "127.0.0.1:%d" % wedged.getsockname()[1]}])
        wait_for(lambda: lb.row("rabbitmq", "wedged")["status"] == "DOWN", 20, what="wedged DOWN")
        assert lb.row("rabbitmq", "wedged")["check_status"] == "L7TOUT"
        wait_for(lambda: lb.row("rabbitmq", "mq1")["status"] == "UP", 20, what="mq1 UP")
        for _ in range(3):
            pika.BlockingConnection(params(lb.fe_port)).close()
        assert lb.row("rabbitmq", "wedged")["stot"] == "0"
    finally:
        stop.set()
        t.join(2)
        wedged.close()
        for c in held:
            c.close()


@pytest.fixture
def small_fs():
    """mount_on(path, mib): a tmpfs of <mib> MiB on <path> (its free space is this test's
    alone, unlike the shared disk), unmounted at teardown; skips when mounting is not
    allowed (not root)."""
    mounted = []

    def mount_on(path, mib):
        os.makedirs(path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % mib, "tmpfs", path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs for the broker's data dir: " + r.stderr.strip())
        mounted.append(path)

    yield mount_on
    for p in mounted:
        subprocess.run(["umount", "-l", p], capture_output=True)


def test_local_broker_unhealthy_is_drained(small_fs):
    # One process runs the broker and the lb (--role disc,lb); its backend has that local
    # broker (`local: true`) and another mqnode broker. When the local broker raises a
    # disk alarm (health Degraded on the EventBus), the lb drains it at once — no check
    # would notice, the broker still answers AMQP — and new pika connections all go to
    # the other one; when the alarm clears, the local broker takes sessions again.
    other = brokers.start_broker(prefix="mqlb-broker-")
    lb = None
    try:
        local_port, fe_port = free_port(), free_port()
        broker_section = dict(brokers.DEFAULT_BROKER, listeners=[{"bind": "127.0.0.1:%d" % local_port}],
                              disk_free_limit_bytes=16 << 20)
        lb = LbProcess({
            "frontends": [{"name": "amqp", "bind": "127.0.0.1:%d" % fe_port, "backend": "rabbitmq"}],
            "backends": [{"name": "rabbitmq", "balance": "roundrobin",
                          "check": {"type": "amqp", "inter_ms": 200, "rise": 2, "fall": 3},
                          "servers": [{"name": "local", "address": "127.0.0.1:%d" % local_port, "local": True},
                                      {"name": "other", "address": "127.0.0.1:%d" % other.port}]}]},
            extra={"broker": broker_section})
        data = os.path.join(lb.workdir, "data")
        small_fs(data, 32)
        lb.start(roles="disc,lb")
        wait_for(lambda: lb.row("rabbitmq", "local")["status"] == "UP" and lb.row("rabbitmq", "other")["status"] == "UP",
                 20, what="both brokers UP")
        conns = [pika.BlockingConnection(params(fe_port)) for _ in range(4)]
        stot = lambda name: int(lb.row("rabbitmq", name)["stot"])  # noqa: E731
        assert (stot("local"), stot("other")) == (2, 2)

        # Fill the data dir's filesystem below disk_free_limit: the broker's alarm.
        filler = os.path.join(data, "filler")
        with open(filler, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, 24 << 20)
        wait_for(lambda: lb.row("rabbitmq", "local")["status"] == "DRAIN", 20, what="local broker drained")
        assert "local broker unhealthy" in lb.stderr()
        assert lb.row("rabbitmq", "local")["check_status"] == "L7OK"  # checks alone would keep it
        more = [pika.BlockingConnection(params(fe_port)) for _ in range(4)]
        assert (stot("local"), stot("other")) == (2, 6)
        for c in conns:  # established sessions on the local broker stay
            c.channel().queue_declare("", exclusive=True)

        os.unlink(filler)
        wait_for(lambda: lb.row("rabbitmq", "local")["status"] == "UP", 20, what="local broker back in rotation")
        last = [pika.BlockingConnection(params(fe_port)) for _ in range(2)]
        assert stot("local") == 3
        for c in conns + more + last:
            c.close()
    finally:
        problems = lb.stop() if lb else []
        other.stop()
        shutil.rmtree(other.workdir, ignore_errors=True)
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
