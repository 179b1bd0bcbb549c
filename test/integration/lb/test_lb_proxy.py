"""The lb role in front of TCP echo backends: balance spreads, health checks marking
servers down/up, maxconn, half-close and large transfers, shutdown-sessions, runtime API."""

import csv
import io
import os
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lbutil import (HAPROXY, EchoServer, HaproxyProcess, banner, free_port, lb_role_missing,  # noqa: E402
                    read_line, wait_for)

pytestmark = pytest.mark.skipif(lb_role_missing() is not None, reason=str(lb_role_missing()))

INTER = 200


@pytest.fixture
def lb_factory(lb_proc):
    def make(servers, balance="roundrobin", frontend=None, backend=None, extra_lb=None, **kw):
        fe_port = free_port()
        fe = {"name": "fe", "bind": "127.0.0.1:%d" % fe_port, "backend": "be"}
        fe.update(frontend or {})
        be = {"name": "be", "balance": balance,
              "check": {"type": "tcp", "inter_ms": INTER, "rise": 2, "fall": 3},
              "servers": servers}
        be.update(backend or {})
        section = {"frontends": [fe], "backends": [be]}
        section.update(extra_lb or {})
        p = lb_proc(section, **kw)
        p.fe_port = fe_port
        return p

    return make


def srv(e, weight=1, **kw):
    d = {"name": e.name, "address": "127.0.0.1:%d" % e.port, "weight": weight}
    d.update(kw)
    return d


def all_up(lb, names):
    rows = {r["svname"]: r for r in lb.csv_rows()}
    return all(rows[n]["status"] == "UP" for n in names)


def test_roundrobin_weights_spread(echoes, lb_factory):
    a, b, c = echoes("a", "b", "c")
    lb = lb_factory([srv(a, 1), srv(b, 2), srv(c, 3)])
    wait_for(lambda: all_up(lb, "abc"), 15, what="servers UP")
    seen = [banner(lb.fe_port) for _ in range(60)]
    assert {n: seen.count(n) for n in "abc"} == {"a": 10, "b": 20, "c": 30}
    rows = {r["svname"]: r for r in lb.csv_rows()}
    assert rows["c"]["stot"] == "30"
    assert rows["FRONTEND"]["stot"] == "60"
    assert rows["BACKEND"]["weight"] == "6"


def test_static_rr_rotates_in_order(echoes, lb_factory):
    a, b, c = echoes("a", "b", "c")
    lb = lb_factory([srv(a), srv(b), srv(c)], balance="static-rr")
    wait_for(lambda: all_up(lb, "abc"), 15, what="servers UP")
    seen = "".join(banner(lb.fe_port) for _ in range(9))
    assert seen in ("abcabcabc", "bcabcabca", "cabcabcab")
    assert lb.row("be", "BACKEND")["algo"] == "static-rr"


def test_leastconn_prefers_the_idle_server(echoes, lb_factory):
    a, b = echoes("a", "b")
    lb = lb_factory([srv(a), srv(b)], balance="leastconn")
    wait_for(lambda: all_up(lb, "ab"), 15, what="servers UP")
    held = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=5)
    try:
        first = read_line(held)
        other = "b" if first == "a" else "a"
        for _ in range(3):
            assert banner(lb.fe_port) == other
            # The next pick must see this session gone, or it is a tie.
            wait_for(lambda: lb.row("fe", "FRONTEND")["scur"] == "1", 10, what="session end")
    finally:
        held.close()


def test_killed_server_goes_down_then_up_after_rise(echoes, lb_factory):
    a, b = echoes("a", "b")
    lb = lb_factory([srv(a), srv(b)])
    wait_for(lambda: all_up(lb, "ab"), 15, what="servers UP")
    port = a.port
    t0 = time.monotonic()
    a.stop()
    wait_for(lambda: lb.row("be", "a")["status"] == "DOWN", 15, what="a DOWN")
    took = time.monotonic() - t0
    # fall=3 checks every 200 ms: about 0.6 s; the bound is generous, not a timing test.
    assert took < 10
    row = lb.row("be", "a")
    assert row["check_status"] == "L4CON"
    assert int(row["chkdown"]) >= 1
    assert [banner(lb.fe_port) for _ in range(6)] == ["b"] * 6
    assert lb.row("be", "BACKEND")["act"] == "1"
    revived = EchoServer("a", port).start()
    try:
        wait_for(lambda: lb.row("be", "a")["status"] == "UP", 15, what="a UP again")
        assert set(banner(lb.fe_port) for _ in range(4)) == {"a", "b"}
    finally:
        revived.stop()


def test_all_servers_down_closes_clients_and_counts(echoes, lb_factory):
    (a,) = echoes("a")
    lb = lb_factory([srv(a)])
    a.stop()
    wait_for(lambda: lb.row("be", "BACKEND")["status"] == "DOWN", 15, what="backend DOWN")
    assert banner(lb.fe_port) == ""  # closed without a server
    m = lb.get("/metrics")[1]
    assert 'mqnode_lb_backend_up{proxy="be"} 0' in m


def test_maxconn_refuse_counts_denied(echoes, lb_factory):
    (a,) = echoes("a")
    lb = lb_factory([srv(a)], frontend={"maxconn": 2, "maxconn_mode": "refuse"})
    held = [socket.create_connection(("127.0.0.1", lb.fe_port), timeout=5) for _ in range(2)]
    try:
        assert [read_line(s) for s in held] == ["a", "a"]
        assert banner(lb.fe_port) == ""
        row = lb.row("fe", "FRONTEND")
        assert row["dreq"] == "1"
        assert row["slim"] == "2"
        assert row["scur"] == "2"
    finally:
        for s in held:
            s.close()
    wait_for(lambda: lb.row("fe", "FRONTEND")["scur"] == "0", 10, what="sessions closed")
    assert banner(lb.fe_port) == "a"


def test_maxconn_queue_waits_for_a_slot(echoes, lb_factory):
    (a,) = echoes("a")
    lb = lb_factory([srv(a)], frontend={"maxconn": 1})
    first = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=5)
    assert read_line(first) == "a"
    second = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=10)
    second.settimeout(0.5)
    with pytest.raises(socket.timeout):
        second.recv(1)  # queued: not proxied while the first session lives
    first.close()
    second.settimeout(10)
    assert read_line(second) == "a"
    second.close()
    assert lb.row("fe", "FRONTEND")["smax"] == "1"


def full_server(echoes, lb_factory, timeout_queue_ms):
    """An lb whose only server has maxconn 1, and the session that fills it."""
    (a,) = echoes("a")
    lb = lb_factory([srv(a, maxconn=1)], backend={"timeout_queue_ms": timeout_queue_ms})
    first = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=10)
    assert read_line(first) == "a"
    return lb, first


def test_server_maxconn_queues_then_serves_the_oldest(echoes, lb_factory):
    # HAProxy's server maxconn: with every server full, a new session waits in the
    # backend's queue (not refused, not sent elsewhere) and gets the first free slot.
    lb, first = full_server(echoes, lb_factory, 60000)
    second = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=10)
    wait_for(lambda: lb.row("be", "BACKEND")["qcur"] == "1", 10, what="the second session queued")
    assert (lb.row("be", "a")["scur"], lb.row("be", "a")["stot"]) == ("1", "1")  # not at the server yet
    third = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=10)
    wait_for(lambda: lb.row("be", "BACKEND")["qcur"] == "2", 10, what="the third session queued")
    first.close()
    assert read_line(second) == "a"  # the oldest waiter got the slot
    wait_for(lambda: lb.row("be", "BACKEND")["qcur"] == "1", 10, what="one left in the queue")
    second.sendall(b"ping\n")
    assert read_line(second) == "ping"
    second.close()
    assert read_line(third) == "a"
    third.close()
    wait_for(lambda: lb.row("be", "BACKEND")["scur"] == "0", 10, what="sessions closed")
    row = lb.row("be", "BACKEND")
    assert (row["qcur"], row["qmax"], row["econ"]) == ("0", "2", "0")
    assert lb.row("be", "a")["smax"] == "1"
    assert "mqnode_lb_backend_max_queue{proxy=\"be\"} 2" in lb.get("/metrics")[1]


def test_queue_timeout_closes_and_counts(echoes, lb_factory):
    # HAProxy after `timeout queue`: the connection is closed, termination state sQ,
    # counted as a connection error of the backend.
    lb, first = full_server(echoes, lb_factory, 300)
    second = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=30)
    assert second.recv(1) == b""  # closed by the lb, never proxied
    second.close()
    wait_for(lambda: lb.row("be", "BACKEND")["econ"] == "1", 10, what="the queue timeout counted")
    row = lb.row("be", "BACKEND")
    assert (row["qcur"], row["qmax"]) == ("0", "1")
    assert lb.row("be", "a")["stot"] == "1"
    wait_for(lambda: "term=sQ" in lb.stderr(), 10, what="the session log line with term=sQ")
    first.sendall(b"still served\n")
    assert read_line(first) == "still served"
    first.close()


@pytest.mark.skipif(HAPROXY is None, reason="Debian haproxy is not installed")
def test_queue_timeout_counts_as_haproxy_does(echoes, lb_factory):
    # Side by side with Debian's haproxy (server maxconn 1, timeout queue 300ms): the same
    # client-visible outcome and the same queue/error columns in the CSV.
    lb, first = full_server(echoes, lb_factory, 300)
    (b,) = echoes("b")
    hp = HaproxyProcess([("b", b.port, 1)], defaults=["timeout queue 300ms"], server_options="maxconn 1").start()
    try:
        def theirs():
            return {(r["pxname"], r["svname"]): r for r in csv.DictReader(io.StringIO(hp.csv_text()[2:]))}
        wait_for(lambda: theirs()[("be", "b")]["status"] == "UP", 15, what="haproxy b UP")
        hp_first = socket.create_connection(("127.0.0.1", hp.port), timeout=10)
        assert read_line(hp_first) == "b"
        for port in (lb.fe_port, hp.port):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
                assert c.recv(1) == b"", port  # closed after the queue timeout, nothing proxied
        wait_for(lambda: lb.row("be", "BACKEND")["econ"] == "1", 10, what="lb counted the queue timeout")
        t_rows = theirs()
        for (ours_sv, their_sv) in (("BACKEND", "BACKEND"), ("a", "b")):
            o, t = lb.row("be", ours_sv), t_rows[("be", their_sv)]
            for col in ("qcur", "qmax", "econ", "scur"):
                assert o[col] == t[col], (ours_sv, col, o[col], t[col])
        hp_first.close()
        first.close()
    finally:
        hp.stop()


@pytest.mark.parametrize("splice", ["auto", "always", "never"])
def test_client_that_does_not_read_stops_the_sender(echoes, lb_factory, splice):
    # Bounded buffering: the client sends to an echo server but reads nothing. Once the
    # kernel buffers along the path are full (client → lb → server and back) the lb must
    # stop reading, so the client can only get a bounded amount in (an lb that kept
    # reading would take all 256 MiB); then everything comes back intact.
    (a,) = echoes("a")
    lb = lb_factory([srv(a)], extra_lb={"splice": splice})
    s = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=20)
    assert read_line(s) == "a"
    s.setblocking(False)
    chunk = os.urandom(1 << 16)
    twice = chunk * 2
    sent, idle_since = 0, None
    while sent < (256 << 20):
        try:
            off = sent % len(chunk)  # a send may take part of it: go on where it stopped
            sent += s.send(twice[off:off + len(chunk)])
            idle_since = None
        except BlockingIOError:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 2:  # the path is full: the sender is stopped
                break
            time.sleep(0.01)
    assert sent < (96 << 20), "the lb kept reading from a client whose peer is not read: %d bytes in" % sent
    s.setblocking(True)
    s.shutdown(socket.SHUT_WR)
    got = 0
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        start = got % len(chunk)  # every byte back, in order: the chunk repeated
        assert d == (chunk * ((start + len(d)) // len(chunk) + 1))[start:start + len(d)], got
        got += len(d)
    s.close()
    assert got == sent


@pytest.mark.parametrize("splice", ["auto", "always", "never"])
def test_half_close_and_large_transfer(echoes, lb_factory, splice):
    (a,) = echoes("a")
    lb = lb_factory([srv(a)], extra_lb={"splice": splice})
    payload = os.urandom(8 * 1024 * 1024)
    s = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=20)
    assert read_line(s) == "a"
    received = bytearray()

    def reader():
        while True:
            d = s.recv(262144)
            if not d:
                break
            received.extend(d)

    t = threading.Thread(target=reader)
    t.start()
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)  # half-close: the echo must still come back in full
    t.join(60)
    assert not t.is_alive()
    s.close()
    assert bytes(received) == payload
    wait_for(lambda: lb.row("fe", "FRONTEND")["scur"] == "0", 10, what="session end")
    row = lb.row("fe", "FRONTEND")
    assert int(row["bin"]) == len(payload)
    assert int(row["bout"]) == len(payload) + 2
    m = lb.get("/metrics")[1]
    spliced = int([l for l in m.splitlines() if l.startswith("mqnode_lb_spliced_bytes_total ")][0].split()[1])
    # always: every byte both ways; auto: the bulk of 8 MiB each way, not the banner; never: none.
    assert {"always": spliced == 2 * len(payload) + 2, "auto": len(payload) < spliced < 2 * len(payload),
            "never": spliced == 0}[splice], spliced
    assert "mqnode_lb_pipes_in_use 0" in m  # given back when the session ended


def test_shutdown_sessions_when_marked_down(echoes, lb_factory):
    a, b = echoes("a", "b")
    lb = lb_factory([srv(a), srv(b)], balance="static-rr", backend={"on_marked_down": "shutdown-sessions"})
    wait_for(lambda: all_up(lb, "ab"), 15, what="servers UP")
    conns = [socket.create_connection(("127.0.0.1", lb.fe_port), timeout=10) for _ in range(2)]
    names = [read_line(c) for c in conns]
    on_a = conns[names.index("a")]
    on_b = conns[names.index("b")]
    a.stop_listening()  # checks fail; the established session would live on
    wait_for(lambda: lb.row("be", "a")["status"] == "DOWN", 15, what="a DOWN")
    on_a.settimeout(10)
    assert on_a.recv(10) == b""  # the lb closed it
    on_b.sendall(b"still here\n")
    on_b.settimeout(10)
    assert read_line(on_b) == "still here"
    for c in conns:
        c.close()


def test_runtime_api_disable_drain_weight(echoes, lb_factory):
    a, b = echoes("a", "b")
    lb = lb_factory([srv(a), srv(b)])
    wait_for(lambda: all_up(lb, "ab"), 15, what="servers UP")
    assert lb.runtime("disable server be/a") == ""
    assert lb.row("be", "a")["status"] == "MAINT"
    assert [banner(lb.fe_port) for _ in range(4)] == ["b"] * 4
    lb.runtime("enable server be/a")
    wait_for(lambda: lb.row("be", "a")["status"] == "UP", 10, what="a UP after enable")
    lb.runtime("set server be/b state drain")
    assert lb.row("be", "b")["status"] == "DRAIN"
    assert [banner(lb.fe_port) for _ in range(3)] == ["a"] * 3
    lb.runtime("set server be/b state ready")
    assert lb.runtime("set weight be/a 3") == ""
    assert lb.runtime("get weight be/a") == "3 (initial 1)\n"
    seen = [banner(lb.fe_port) for _ in range(8)]
    assert (seen.count("a"), seen.count("b")) == (6, 2)
    assert lb.runtime("set weight be/nope 1") == "No such server.\n"
    assert lb.runtime("disable server zz/a") == "No such backend.\n"
    assert lb.runtime("show stat").startswith("# pxname,svname,")
    # Runtime control needs the credentials too.
    status, _ = lb.get("/haproxy/runtime", auth=False, data=b"disable server be/a")
    assert status == 401
    assert lb.row("be", "a")["status"] == "UP"


def test_idle_timeout_closes_only_idle_sessions(echoes, lb_factory):
    a, = echoes("a")
    lb = lb_factory([srv(a)], frontend={"timeout_client_ms": 400})
    wait_for(lambda: all_up(lb, "a"), 15, what="a UP")
    idle = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=10)
    busy = socket.create_connection(("127.0.0.1", lb.fe_port), timeout=10)
    assert read_line(idle) == "a" and read_line(busy) == "a"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:  # activity keeps pushing the busy session's deadline
        busy.sendall(b"ping\n")
        assert read_line(busy) == "ping"
        time.sleep(0.1)
    assert idle.recv(10) == b""  # closed by the lb after 400 ms without traffic
    busy.sendall(b"still\n")
    assert read_line(busy) == "still"
    busy.close()
    idle.close()
    wait_for(lambda: "term=cD" in lb.stderr(), 5, what="a session logged with term=cD")


def test_connect_timeout_retries_then_gives_up(lb_factory):
    # A listener whose accept queue is full drops SYNs: connects to it hang.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    port = hole.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        lb = lb_factory([{"name": "hole", "address": "127.0.0.1:%d" % port, "check": False}],
                        backend={"timeout_connect_ms": 300, "retries": 1})
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", lb.fe_port), timeout=10) as c:
            assert c.recv(10) == b""  # two attempts of 300 ms, then closed
        took = time.monotonic() - t0
        assert 0.5 < took < 5, took
        wait_for(lambda: "term=sC" in lb.stderr(), 5, what="a session logged with term=sC")
        assert lb.row("be", "hole")["econ"] == "2"
    finally:
        for f in fillers:
            f.close()
        hole.close()
