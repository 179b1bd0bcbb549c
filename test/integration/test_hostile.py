"""Hostile and careless clients: slow handshakes (slowloris, a byte a second) on the AMQP,
AMQPS and HTTP listeners are closed and never starve a normal client served meanwhile;
running out of file descriptors (the node's limit lowered with prlimit) refuses new
connections at once while the existing ones keep working. mqnode only: the broker's
config and process are mqnode's."""

import os
import select
import socket
import subprocess
import time
import urllib.request

import pika
import pytest

from brokers import target
from helpers import wait_until

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="drives mqnode's process and config")


def closed_by_peer(sock):
    """True once the peer has closed <sock> (EOF or reset); False while it is open."""
    r, _, _ = select.select([sock], [], [], 0)
    if not r:
        return False
    try:
        return sock.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def trickle(socks, data, until, limit_s):
    """Sends <data> one byte a second to every socket of <socks> that is still open, and
    calls <until>() between bytes; returns how many sockets the peer closed, when <until>
    returned true or after <limit_s> seconds."""
    closed = set()
    deadline = time.monotonic() + limit_s
    i = 0
    while time.monotonic() < deadline:
        for n, s in enumerate(socks):
            if n in closed:
                continue
            if closed_by_peer(s):
                closed.add(n)
                continue
            try:
                s.send(data[i % len(data):i % len(data) + 1])
            except OSError:
                closed.add(n)
        i += 1
        if until(closed):
            break
        time.sleep(1.0)
    return len(closed)


def publish_consume(port, n=20):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, connection_attempts=1,
                                                             socket_timeout=10, stack_timeout=15))
    try:
        ch = conn.channel()
        ch.queue_declare("hostile.q", auto_delete=True)
        for i in range(n):
            ch.basic_publish("", "hostile.q", b"m%d" % i)
        got = []
        for _ in range(200):
            method, _p, body = ch.basic_get("hostile.q", auto_ack=True)
            if method:
                got.append(body)
                if len(got) == n:
                    break
            else:
                conn.sleep(0.05)
        return got
    finally:
        conn.close()


@pytest.mark.time_limit(120)
def test_amqp_slowloris_is_closed_and_others_are_served(broker_factory):
    b = broker_factory(handshake_timeout_ms=3000)
    slow = [socket.create_connection(("127.0.0.1", b.port), timeout=10) for _ in range(30)]
    served = []

    def normal_client_meanwhile(closed):
        if not served:
            # While every slow client is still connected, a normal one is served in full.
            assert not closed
            served.append(publish_consume(b.port))
        return len(closed) == len(slow)

    # The protocol header, then a frame that never ends: a byte a second each.
    n = trickle(slow, b"AMQP\x00\x00\x09\x01\x01\x00\x00\x00\x00\x01\x00", normal_client_meanwhile, 60)
    assert served == [[b"m%d" % i for i in range(20)]]
    assert n == len(slow), "slow clients still connected after 60 s with a 3 s handshake timeout"
    for s in slow:
        s.close()
    assert publish_consume(b.port) == [b"m%d" % i for i in range(20)]


@pytest.mark.time_limit(120)
def test_http_slowloris_is_closed_and_others_are_served(broker_factory):
    b = broker_factory(management=True)
    slow = [socket.create_connection(("127.0.0.1", b.http_port), timeout=10) for _ in range(20)]
    served = []

    def overview(closed):
        if not served:
            assert not closed
            req = urllib.request.Request("http://127.0.0.1:%d/api/overview" % b.http_port)
            req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
            with urllib.request.urlopen(req, timeout=10) as r:
                served.append(r.status)
        return len(closed) == len(slow)

    # Headers that never end; the request timeout (10 s) is not extended by the trickle.
    n = trickle(slow, b"GET /api/overview HTTP/1.1\r\nHost: x\r\nX-a: " + b"a" * 200, overview, 60)
    assert served == [200]
    assert n == len(slow), "slow HTTP clients still connected after 60 s"
    for s in slow:
        s.close()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def amqp_start(port):
    """'served' if the node answers the protocol header with connection.start, 'closed'
    if it closes the connection, 'silent' if neither happens within 5 s."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        data = s.recv(7)
        return ("served" if data[:1] == b"\x01" else "closed"), s
    except (ConnectionResetError, BrokenPipeError):
        return "closed", s
    except socket.timeout:
        return "silent", s


@pytest.mark.time_limit(120)
def test_out_of_file_descriptors_refuses_new_connections_and_keeps_existing(broker_factory):
    # UBSan's vptr check vets an object type it has not seen yet by writing it to a pipe;
    # with no descriptor left that fails and it reports a bad vptr where there is none. So
    # the sanitized node first runs, with descriptors to spare, every path used below.
    b = broker_factory(handshake_timeout_ms=60000)
    pid = b.proc.pid
    existing = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, connection_attempts=1))
    ch = existing.channel()
    ch.queue_declare("fd.q")
    ch.basic_publish("", "fd.q", b"warm-up")
    wait_until(lambda: ch.basic_get("fd.q", auto_ack=True)[2] == b"warm-up", what="the warm-up message")
    pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, connection_attempts=1)).close()
    limit = fd_count(pid) + 4
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%d" % (limit, limit)], check=True)
    results, socks = [], []
    try:
        for _ in range(12):
            r, s = amqp_start(b.port)
            results.append(r)
            socks.append(s)
        # A few fit under the limit; every later one is closed at once, none left hanging.
        assert "served" in results, results
        assert "closed" in results, results
        assert "silent" not in results, results
        assert results.index("closed") > 0 and "served" not in results[results.index("closed"):], results
        # The connection that was up goes on working.
        ch.basic_publish("", "fd.q", b"still here")
        wait_until(lambda: ch.queue_declare("fd.q", passive=True).method.message_count == 1,
                   what="the message published at the limit")
        method, _p, body = ch.basic_get("fd.q", auto_ack=True)
        assert body == b"still here"
    finally:
        for s in socks:
            s.close()
    # Descriptors freed: new connections are served again (the limit is still lowered).
    def served_now():
        r, s = amqp_start(b.port)
        s.close()
        return r == "served"
    wait_until(served_now, timeout=20, what="a new connection served")
    existing.close()
    assert b.alive()
