"""systemd integration (packaging/systemd): mqnode speaks sd_notify's protocol itself — on a
datagram socket the test binds as systemd would and names in NOTIFY_SOCKET, READY=1 comes
once the AMQP port accepts, RELOADING=1/READY=1 around SIGHUP, STOPPING=1 on SIGTERM, and
WATCHDOG=1 while the loop turns when WATCHDOG_USEC is set for this process. The units pass
`systemd-analyze verify` in a scratch root and its offline security review, and the vip unit
is the plain unit plus the capabilities VRRP needs. mqnode only."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pika
import pytest

from brokers import DEFAULT_BROKER, free_port, target

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="mqnode's own service integration")

BIN = os.environ.get("MQNODE_BIN", "")
UNITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "packaging", "systemd")
RECV_LIMIT_S = 30  # per datagram: a sanitizer build starts in a second or two


class NotifiedNode:
    """mqnode started with NOTIFY_SOCKET pointing at a datagram socket bound here."""

    def __init__(self, tmp_path, abstract=False, bound=True, env=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if not bound:
            address = str(tmp_path / "nobody-listens")
        elif abstract:
            name = "mqnode-test-%s" % uuid.uuid4().hex
            self.sock.bind("\0" + name)
            address = "@" + name
        else:
            address = str(tmp_path / "notify")
            self.sock.bind(address)
        self.sock.settimeout(RECV_LIMIT_S)
        self.port = free_port()
        config = tmp_path / "mqnode.json"
        config.write_text(json.dumps({"broker": dict(DEFAULT_BROKER, listeners=[{"bind": "127.0.0.1:%d" % self.port}])}))
        self.stderr = tmp_path / "mqnode.stderr"
        self.proc = subprocess.Popen(
            [BIN, "--config", str(config), "--data-dir", str(tmp_path / "data")],
            env=dict(os.environ, NOTIFY_SOCKET=address, **(env or {})),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.stderr, "wb"))
        self.received = []

    def next_message(self):
        """The next datagram, as its set of KEY=VALUE lines."""
        data = self.sock.recv(4096).decode()
        self.received.append(data)
        return set(data.split("\n"))

    def wait_for(self, line, limit=50):
        for _ in range(limit):
            if line in self.next_message():
                return
        raise AssertionError("no %s in %d datagrams: %r" % (line, limit, self.received))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.sock.close()


@pytest.fixture
def node_with_notify(tmp_path):
    nodes = []

    def start(**kw):
        nodes.append(NotifiedNode(tmp_path, **kw))
        return nodes[-1]

    yield start
    for n in nodes:
        n.close()


def round_trip(port):
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest"), connection_attempts=1))
    try:
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", q, b"ready")
        for _ in range(100):
            _, _, body = ch.basic_get(q, auto_ack=True)
            if body is not None:
                return body
            time.sleep(0.02)
    finally:
        conn.close()


def test_ready_once_the_amqp_port_accepts_then_reloading_and_stopping(node_with_notify):
    node = node_with_notify()
    first = node.next_message()
    assert "READY=1" in first and "STATUS=serving roles disc" in first, node.received
    # No retry: the listener was open before READY=1 was sent.
    socket.create_connection(("127.0.0.1", node.port), timeout=5).close()
    assert round_trip(node.port) == b"ready"

    node.proc.send_signal(signal.SIGHUP)
    assert node.next_message() == {"RELOADING=1"}, node.received
    assert node.next_message() == {"READY=1"}, node.received

    node.proc.send_signal(signal.SIGTERM)
    assert node.next_message() == {"STOPPING=1"}, node.received
    assert node.proc.wait(30) == 0, node.stderr.read_text()


def test_abstract_notify_socket(node_with_notify):
    node = node_with_notify(abstract=True)
    assert "READY=1" in node.next_message(), node.received


def test_watchdog_pings_while_the_loop_runs(node_with_notify):
    node = node_with_notify(env={"WATCHDOG_USEC": "100000"})
    node.wait_for("READY=1")
    for _ in range(3):
        node.wait_for("WATCHDOG=1")
    assert round_trip(node.port) == b"ready"


def test_watchdog_for_another_pid_is_not_ours(node_with_notify):
    node = node_with_notify(env={"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
    node.wait_for("READY=1")
    # A fed watchdog sends its first WATCHDOG=1 as the loop starts, before any signal is
    # handled: by the READY=1 after this reload one would have arrived.
    node.proc.send_signal(signal.SIGHUP)
    node.wait_for("RELOADING=1")
    node.wait_for("READY=1")
    assert not any("WATCHDOG=1" in m for m in node.received), node.received


def test_a_notify_socket_nobody_listens_on_is_logged_and_the_node_serves(node_with_notify):
    node = node_with_notify(bound=False)
    # The node is up; its failed READY=1 is a warning.
    for _ in range(300):
        if "cannot notify systemd (READY=1" in node.stderr.read_text():
            break
        time.sleep(0.05)
    assert "cannot notify systemd (READY=1" in node.stderr.read_text()
    assert round_trip(node.port) == b"ready"


def unit_lines(name):
    with open(os.path.join(UNITS, name)) as f:
        return [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#")]


def test_the_vip_unit_is_the_plain_unit_plus_vrrp_capabilities():
    plain, vip = unit_lines("mqnode.service"), unit_lines("mqnode-vip.service")
    only_plain = [l for l in plain if l not in vip]
    only_vip = [l for l in vip if l not in plain]
    assert only_plain == [
        "Description=mqnode (AMQP broker and load balancer)",
        "Conflicts=mqnode-vip.service",
        "Environment=MQNODE_ROLE=disc MQNODE_CONFIG=/etc/mqnode/mqnode.json MQNODE_OPTS=",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    ]
    assert only_vip == [
        "Description=mqnode (AMQP broker, load balancer and VRRP virtual address)",
        "Conflicts=mqnode.service",
        "Environment=MQNODE_ROLE=disc,lb,vip MQNODE_CONFIG=/etc/mqnode/mqnode.json MQNODE_OPTS=",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET",
    ]
    for unit in (plain, vip):
        for key in ("Type=notify", "Restart=on-failure", "ProtectSystem=strict", "NoNewPrivileges=yes",
                    "User=mqnode", "StateDirectory=mqnode", "LogsDirectory=mqnode", "WatchdogSec=30s",
                    "EnvironmentFile=-/etc/default/mqnode", "ExecReload=/bin/kill -HUP $MAINPID"):
            assert key in unit


def scratch_root(tmp_path, units):
    """A root with what `systemd-analyze verify` looks at: the host's system units (targets),
    /bin/kill for ExecReload, an executable at /usr/sbin/mqnode, and <units>."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "bin").mkdir()
    shutil.copy("/bin/kill", root / "bin" / "kill")
    for name in units:
        shutil.copy(os.path.join(UNITS, name), root / "usr/lib/systemd/system" / name)
    return root


needs_systemd_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze") or
                                           not os.path.isdir("/usr/lib/systemd/system"),
                                           reason="systemd-analyze (Debian's systemd package) is not installed")


@needs_systemd_analyze
def test_units_pass_systemd_analyze_verify_and_security(tmp_path):
    units = ["mqnode.service", "mqnode-vip.service"]
    root = scratch_root(tmp_path, units)
    # verify only checks that ExecStart= names an executable (test_deb runs the real one).
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin" / "mqnode").write_text("#!/bin/sh\n")
    (root / "usr/sbin" / "mqnode").chmod(0o755)
    r = subprocess.run(["systemd-analyze", "verify", "--root=%s" % root] + units,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    for unit, limit in (("mqnode.service", 2.0), ("mqnode-vip.service", 2.5)):
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--root=%s" % root, unit],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for %s: ([0-9.]+)" % re.escape(unit), r.stdout)
        assert m, r.stdout + r.stderr
        # 0 is a fully locked-down unit, 10 an unprotected one; both score "OK" (< 4.5).
        assert float(m.group(1)) <= limit, r.stdout
