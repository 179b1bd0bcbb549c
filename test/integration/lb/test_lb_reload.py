"""SIGHUP reload of the lb role: established sessions survive a change of the backend's
servers, new sessions use the new servers, a broken file changes nothing (and the process
keeps running), and a changed frontend bind is rebound."""

import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lbutil import banner, free_port, lb_role_missing, read_line, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(lb_role_missing() is not None, reason=str(lb_role_missing()))


def lb_section(fe_port, servers, balance="roundrobin"):
    return {
        "frontends": [{"name": "fe", "bind": "127.0.0.1:%d" % fe_port, "backend": "be"}],
        "backends": [{"name": "be", "balance": balance,
                      "check": {"type": "tcp", "inter_ms": 200, "rise": 2, "fall": 3},
                      "servers": [{"name": e.name, "address": "127.0.0.1:%d" % e.port} for e in servers]}],
    }


def echo_roundtrip(s, payload):
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        d = s.recv(65536)
        assert d, "session closed"
        got += d
    return got


def rows(lb):
    return {(r["pxname"], r["svname"]): r for r in lb.csv_rows()}


def test_reload_servers_bad_file_and_bind(echoes, lb_proc):
    a, b, c = echoes("a", "b", "c")
    fe_port = free_port()
    lb = lb_proc(lb_section(fe_port, [a]))
    wait_for(lambda: rows(lb)[("be", "a")]["status"] == "UP", 15, what="a UP")

    # An established session on server a.
    old = socket.create_connection(("127.0.0.1", fe_port), timeout=10)
    assert read_line(old) == "a"
    assert echo_roundtrip(old, b"before\n") == b"before\n"

    # 1. The backend's server list changes: a goes, b and c come.
    line = lb.reload(lb_section(fe_port, [b, c]))
    assert "reload failed" not in line, line
    assert echo_roundtrip(old, b"after reload\n") == b"after reload\n"
    seen = [banner(fe_port) for _ in range(10)]
    assert set(seen) == {"b", "c"}, seen
    r = rows(lb)
    assert ("be", "a") not in r and ("be", "b") in r and ("be", "c") in r
    assert r[("be", "b")]["sid"] != r[("be", "c")]["sid"]

    # 2. A broken file: logged with its JSON path, nothing changes, the process lives.
    bad = lb_section(fe_port, [b, c])
    bad["backends"][0]["servers"][0]["address"] = "not-an-address"
    line = lb.reload(bad)
    assert "reload failed" in line and "/lb/backends/0/servers/0/address" in line, line
    line = lb.reload(raw="{ this is not json")
    assert "reload failed" in line and "not valid JSON" in line, line
    assert lb.proc.poll() is None
    assert echo_roundtrip(old, b"still here\n") == b"still here\n"
    assert set(banner(fe_port) for _ in range(6)) == {"b", "c"}

    # 3. A bind change: the new address accepts, the old one is closed, the old session
    # (accepted on the old address) keeps working.
    new_port = free_port()
    line = lb.reload(lb_section(new_port, [b]))
    assert "reload failed" not in line, line
    assert banner(new_port) == "b"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", fe_port), timeout=2).close()
    assert echo_roundtrip(old, b"old bind\n") == b"old bind\n"

    # The old session still ends cleanly (half-close through the proxy) and is logged
    # against server a, which the running config no longer has.
    old.shutdown(socket.SHUT_WR)
    rest = b""
    while True:
        d = old.recv(65536)
        if not d:
            break
        rest += d
    old.close()
    wait_for(lambda: "server=a " in lb.stderr(), 10, what="the old session's log line")


def test_reload_keeps_health_state_of_remaining_servers(echoes, lb_proc):
    a, b = echoes("a", "b")
    fe_port = free_port()
    lb = lb_proc(lb_section(fe_port, [a, b]))
    wait_for(lambda: all(rows(lb)[("be", n)]["status"] == "UP" for n in "ab"), 15, what="servers UP")
    a.stop()
    wait_for(lambda: rows(lb)[("be", "a")]["status"] == "DOWN", 15, what="a DOWN")
    # Reload with a changed weight and balance: a stays DOWN (state kept by name), b takes all.
    sec = lb_section(fe_port, [a, b], balance="static-rr")
    sec["backends"][0]["servers"][1]["weight"] = 5
    line = lb.reload(sec)
    assert "reload failed" not in line, line
    r = rows(lb)
    assert r[("be", "a")]["status"] == "DOWN"
    assert r[("be", "b")]["weight"] == "5"
    assert set(banner(fe_port) for _ in range(5)) == {"b"}


def test_bind_conflict_keeps_old_config(echoes, lb_proc):
    a, b = echoes("a", "b")
    fe_port = free_port()
    lb = lb_proc(lb_section(fe_port, [a]))
    wait_for(lambda: rows(lb)[("be", "a")]["status"] == "UP", 15, what="a UP")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    try:
        sec = lb_section(fe_port, [b])
        sec["frontends"][0]["bind"] = ["127.0.0.1:%d" % fe_port, "127.0.0.1:%d" % taken]
        line = lb.reload(sec)
        assert "reload failed" in line and str(taken) in line, line
        assert banner(fe_port) == "a"  # old servers still in use
    finally:
        blocker.close()


def test_reload_moves_the_stats_listener(echoes, lb_proc):
    (a,) = echoes("a")
    fe_port = free_port()
    lb = lb_proc(lb_section(fe_port, [a]))
    wait_for(lambda: rows(lb)[("be", "a")]["status"] == "UP", 15, what="a UP")
    held = socket.create_connection(("127.0.0.1", fe_port), timeout=10)
    assert read_line(held) == "a"
    old_port, new_port = lb.stats_port, free_port()

    sec = lb_section(fe_port, [a])
    sec["stats"] = dict(lb.config["lb"]["stats"], bind="127.0.0.1:%d" % new_port, uri="/lbstats")
    line = lb.reload(sec)
    assert "reload failed" not in line, line
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", old_port), timeout=2).close()
    lb.stats_port = new_port
    status, body = lb.get("/lbstats;csv")
    assert status == 200 and body.startswith("# pxname,svname,"), body[:200]
    assert lb.get("/haproxy;csv")[0] == 404  # the old uri is gone with the old routes
    assert echo_roundtrip(held, b"proxied through the move\n") == b"proxied through the move\n"
    csv_row = [r for r in body.splitlines() if r.startswith("be,a,")][0].split(",")
    assert csv_row[4] == "1"  # scur: the held session is still counted

    # A bind that cannot be had fails the reload as a whole: the listener stays.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        sec2 = lb_section(fe_port, [a])
        sec2["stats"] = dict(sec["stats"], bind="127.0.0.1:%d" % blocker.getsockname()[1])
        line = lb.reload(sec2)
        assert "reload failed" in line and "/lb/stats/bind" in line, line
        assert lb.get("/lbstats;csv")[0] == 200
    finally:
        blocker.close()
    held.close()
