"""The lb's stats listener: basic auth, HAProxy's CSV (compared with Debian's haproxy),
JSON, Prometheus, and the HTML page rendered by headless Chromium."""

import json
import os
import re
import socket
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lbutil import HAPROXY, EchoServer, HaproxyProcess, LbProcess, free_port, lb_role_missing, read_line, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(lb_role_missing() is not None, reason=str(lb_role_missing()))

CHROMIUM = shutil.which("chromium")


@pytest.fixture
def setup():
    state = {"echoes": [], "lb": None}

    def make(user="admin", password="s3cret", names=("s1", "s2")):
        es = [EchoServer(n).start() for n in names]
        state["echoes"] = es
        fe_port = free_port()
        lb = LbProcess({
            "frontends": [{"name": "fe", "bind": "127.0.0.1:%d" % fe_port, "backend": "be"}],
            "backends": [{"name": "be", "check": {"inter_ms": 200, "rise": 2, "fall": 3},
                          "servers": [{"name": e.name, "address": "127.0.0.1:%d" % e.port} for e in es]}],
        }, stats_user=user, stats_password=password)
        lb.fe_port = fe_port
        state["lb"] = lb.start()
        wait_for(lambda: all(r["status"] == "UP" for r in lb.csv_rows() if r["svname"] in names), 15,
                 what="servers UP")
        return es, lb

    yield make
    for e in state["echoes"]:
        e.stop()
    if state["lb"]:
        problems = state["lb"].stop()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def test_stats_need_credentials(setup):
    es, lb = setup()
    for path in ("/haproxy", "/haproxy;csv", "/haproxy;json", "/metrics"):
        status, _ = lb.get(path, auth=False)
        assert status == 401, path
        status, _ = lb.get(path, user="admin", password="wrong")
        assert status == 401, path
        status, _ = lb.get(path)
        assert status == 200, path
    status, body = lb.get("/haproxy")
    assert '<meta http-equiv="refresh" content="5">' in body
    assert "refresh" not in lb.get("/haproxy;norefresh")[1].split("<style>")[0]
    assert lb.get("/nothing")[0] == 404


def test_json_and_prometheus(setup):
    es, lb = setup()
    rows = json.loads(lb.get("/haproxy;json")[1])
    statuses = {}
    for row in rows:
        f = {x["field"]["name"]: x["value"]["value"] for x in row}
        statuses[(f["pxname"], f["svname"])] = f["status"]
    assert statuses[("be", "s1")] == "UP"
    assert statuses[("fe", "FRONTEND")] == "OPEN"
    m = lb.get("/metrics")[1]
    assert 'mqnode_lb_server_up{proxy="be",server="s1"} 1' in m
    assert "# TYPE mqnode_lb_frontend_sessions_total counter" in m


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? '
                    r'(-?[0-9.eE+]+|NaN|[+-]Inf)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """Strict reading of the text format 0.0.4: every sample belongs to a family announced
    once by # HELP then # TYPE (counter|gauge) just before its samples. Returns
    {(name, frozenset(labels)): value} and {name: type}."""
    samples, types, current = {}, {}, None
    lines = text.split("\n")
    assert lines[-1] == "", "the exposition must end with a newline"
    for i, line in enumerate(lines[:-1]):
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in types, "family %s announced twice" % name
            assert lines[i + 1].startswith("# TYPE %s " % name), lines[i + 1]
            current = name
        elif line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert name == current and typ in ("counter", "gauge"), line
            types[name] = typ
        else:
            m = SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            assert m.group(1) == current, "sample %r outside its family %r" % (line, current)
            labels = frozenset(LABEL.findall(m.group(2) or ""))
            key = (m.group(1), labels)
            assert key not in samples, "duplicate sample %r" % line
            samples[key] = float(m.group(3))
    return samples, types


def test_prometheus_parses_and_matches_the_csv(setup):
    es, lb = setup()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", lb.fe_port), timeout=10) as c:
            assert read_line(c) in ("s1", "s2")
            c.sendall(b"0123456789\n")
            assert read_line(c) == "0123456789"
    wait_for(lambda: lb.row("fe", "FRONTEND")["scur"] == "0", 10, what="sessions closed")
    status, text = lb.get("/metrics")
    assert status == 200
    samples, types = parse_prometheus(text)
    fe = lb.row("fe", "FRONTEND")
    px = frozenset({("proxy", "fe")})
    assert samples[("mqnode_lb_frontend_sessions_total", px)] == 3 == float(fe["stot"])
    assert samples[("mqnode_lb_frontend_bytes_in_total", px)] == 33 == float(fe["bin"])
    assert samples[("mqnode_lb_frontend_bytes_out_total", px)] == float(fe["bout"])
    assert types["mqnode_lb_frontend_sessions_total"] == "counter"
    assert types["mqnode_lb_backend_current_queue"] == "gauge"
    s1 = frozenset({("proxy", "be"), ("server", "s1")})
    assert samples[("mqnode_lb_server_up", s1)] == 1
    assert samples[("mqnode_lb_server_sessions_total", s1)] == float(lb.row("be", "s1")["stot"])
    assert samples[("mqnode_lb_backend_sessions_total", frozenset({("proxy", "be")}))] == 3


@pytest.mark.skipif(HAPROXY is None, reason="Debian haproxy is not installed")
def test_csv_matches_haproxy_side_by_side(setup):
    es, lb = setup()
    hp = HaproxyProcess([(e.name, e.port, 1) for e in es]).start()
    try:
        wait_for(lambda: hp.csv_text().count(",UP,") >= 3, 15, what="haproxy servers UP")
        es[0].stop()
        wait_for(lambda: ",s1," in hp.csv_text() and [l for l in hp.csv_text().splitlines() if l.startswith("be,s1,")][0]
                 .split(",")[17] == "DOWN", 15, what="haproxy s1 DOWN")
        wait_for(lambda: lb.row("be", "s1")["status"] == "DOWN", 15, what="lb s1 DOWN")
        theirs = hp.csv_text().splitlines()
        _, ours_text = lb.get("/haproxy;csv")
        ours = ours_text.splitlines()
        assert ours[0] == theirs[0]  # the header, column for column
        ncols = len(theirs[0][2:].split(","))
        assert all(len(l.split(",")) == ncols for l in ours[1:])
        header = theirs[0][2:].split(",")

        def by_name(lines):
            out = {}
            for l in lines[1:]:
                v = dict(zip(header, l.split(",")))
                out[(v["pxname"], v["svname"])] = v
            return out

        t, o = by_name(theirs), by_name(ours)
        for key in [("fe", "FRONTEND"), ("be", "s1"), ("be", "s2"), ("be", "BACKEND")]:
            for col in ("status", "type", "act", "bck", "weight", "check_status", "check_rise", "check_fall",
                        "check_health", "mode", "slim", "sid"):
                if col == "slim" and key[1] in ("FRONTEND", "BACKEND"):
                    continue  # HAProxy's come from global maxconn / fullconn, which we do not have
                assert o[key][col] == t[key][col], (key, col, o[key][col], t[key][col])
    finally:
        hp.stop()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
@pytest.mark.time_limit(120)
def test_stats_page_in_headless_chromium_shows_killed_server_down(setup):
    es, lb = setup(user=None)
    es[0].stop()
    wait_for(lambda: lb.row("be", "s1")["status"] == "DOWN", 15, what="s1 DOWN")
    profile = tempfile.mkdtemp(prefix="mqlb-chromium-")
    try:
        r = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + profile,
             "--dump-dom", "http://127.0.0.1:%d/haproxy" % lb.stats_port],
            capture_output=True, text=True, timeout=90)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = r.stdout
    assert "mqnode lb statistics" in dom, r.stderr[-2000:]
    s1 = [l for l in dom.splitlines() if 'data-server="be/s1"' in l]
    s2 = [l for l in dom.splitlines() if 'data-server="be/s2"' in l]
    assert s1 and s2
    assert 'class="active_down"' in s1[0] and ">DOWN" in s1[0]
    assert 'class="active_up"' in s2[0] and ">UP" in s2[0]
