"""Helpers for the lb integration tests: TCP echo backends, an mqnode `--role lb` process,
the stats endpoints, and Debian's haproxy as a reference peer."""

import base64
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "support"))

import brokers  # noqa: E402

free_port = brokers.free_port
SANITIZER_MARKERS = brokers.SANITIZER_MARKERS


def mqnode_bin():
    b = os.environ.get("MQNODE_BIN")
    return os.path.abspath(b) if b else None


_lb_support = {}


def lb_role_missing():
    """None if $MQNODE_BIN has the lb role, else the reason to skip."""
    b = mqnode_bin()
    if not b or not os.access(b, os.X_OK):
        return "MQNODE_BIN is not set to an executable"
    if b not in _lb_support:
        d = tempfile.mkdtemp(prefix="mqlb-probe-")
        try:
            cfg = os.path.join(d, "c.json")
            with open(cfg, "w") as f:
                json.dump({"lb": {"probe_unknown_key": 1}}, f)
            r = subprocess.run([b, "--role", "lb", "--config", cfg], capture_output=True, text=True, timeout=30)
            ok = r.returncode == 2 and "/lb/probe_unknown_key" in r.stderr
            _lb_support[b] = None if ok else "this mqnode has no lb role: " + r.stderr.strip()[:200]
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return _lb_support[b]


class EchoServer:
    """A TCP server on 127.0.0.1 that sends "<name>\\n" on accept, then echoes; EOF from
    the client is answered with EOF after the echo (half-close). stop_listening() keeps
    established connections (a server that fails checks but still serves)."""

    def __init__(self, name, port=None):
        self.name = name
        self.port = port or free_port()
        self.sock = None
        self.conns = []
        self.accepted = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = None

    def start(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(512)
        s.settimeout(0.2)
        self.sock = s
        self.stopped.clear()
        self.thread = threading.Thread(target=self._accept_loop, args=(s,), daemon=True)
        self.thread.start()
        return self

    def _accept_loop(self, s):
        while not self.stopped.is_set():
            try:
                c, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            c.settimeout(None)
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.sendall(self.name.encode() + b"\n")
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

    def stop_listening(self):
        self.stopped.set()
        if self.sock:
            self.sock.close()
            self.sock = None
        if self.thread:
            self.thread.join(2)

    def stop(self):
        """Stop listening and reset every established connection (a dead host)."""
        self.stop_listening()
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()
            except OSError:
                pass


def banner(port, timeout=5.0):
    """Connects to 127.0.0.1:<port>, returns the backend's name line ('' if closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        return read_line(s)


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            break
        buf += d
    return buf.decode().strip()


def wait_for(pred, timeout, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))


class LbProcess:
    """mqnode --role lb with the given /lb section (stats always on a free port)."""

    def __init__(self, lb, stats_user="admin", stats_password="s3cret", extra=None):
        self.workdir = tempfile.mkdtemp(prefix="mqlb-")
        self.stats_port = free_port()
        lb = json.loads(json.dumps(lb))
        st = {"bind": "127.0.0.1:%d" % self.stats_port, "uri": "/haproxy", "refresh_s": 5}
        if stats_user:
            st.update({"user": stats_user, "password": stats_password})
        st.update(lb.pop("stats", {}))
        lb["stats"] = st
        self.user, self.password = stats_user, stats_password
        self.config = {"lb": lb}
        if extra:
            self.config.update(extra)
        self.proc = None
        self.stderr_path = os.path.join(self.workdir, "lb.stderr")
        self.stopped_by_us = False
        self._reloads = 0

    def start(self, roles="lb", timeout=20):
        cfg = os.path.join(self.workdir, "mqnode.json")
        with open(cfg, "w") as f:
            json.dump(self.config, f, indent=1)
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        self.proc = subprocess.Popen(
            [mqnode_bin(), "--role", roles, "--config", cfg, "--data-dir", os.path.join(self.workdir, "data"),
             "--log-level", "info"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.stderr_path, "wb"),
            start_new_session=True, preexec_fn=brokers._die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("lb exited during startup (%r):\n%s" % (self.proc.returncode, self.stderr()))
            if brokers.port_open("127.0.0.1", self.stats_port):
                return self
            time.sleep(0.1)
        raise AssertionError("lb stats port did not open:\n" + self.stderr())

    def reload(self, lb=None, raw=None, timeout=10):
        """Rewrites the config file (a new /lb section, stats kept, or <raw> text as is),
        sends SIGHUP and waits for the reload's outcome line; returns it."""
        cfg = os.path.join(self.workdir, "mqnode.json")
        if raw is not None:
            text = raw
        else:
            lb = json.loads(json.dumps(lb))
            lb.setdefault("stats", self.config["lb"]["stats"])
            self.config["lb"] = lb
            text = json.dumps(self.config, indent=1)
        with open(cfg + ".tmp", "w") as f:
            f.write(text)
        os.replace(cfg + ".tmp", cfg)
        self.proc.send_signal(signal.SIGHUP)

        def outcome():
            lines = [l for l in self.stderr().splitlines() if ("reload failed" in l or "established sessions keep" in l)]
            return lines[-1] if len(lines) > self._reloads else None
        line = wait_for(outcome, timeout, what="reload outcome in the lb log")
        self._reloads += 1
        return line

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        """SIGTERM; returns a list of problems (crash, sanitizer report, bad exit)."""
        problems = []
        if self.proc and self.proc.poll() is None:
            self.stopped_by_us = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                problems.append("lb did not stop within 20 s of SIGTERM")
            if self.proc.returncode != 0:
                problems.append("lb exit status %r after SIGTERM" % self.proc.returncode)
        elif self.proc:
            problems.append("lb exited on its own with status %r" % self.proc.returncode)
        err = self.stderr()
        for m in SANITIZER_MARKERS:
            if m in err:
                problems.append("sanitizer report %r in lb stderr" % m)
                break
        if problems:
            problems.append("lb stderr tail:\n" + err[-6000:])
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return problems

    # --- stats ---------------------------------------------------------------------------
    def get(self, path, auth=True, user=None, password=None, data=None):
        """(status, body text) of an HTTP request to the stats listener."""
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.stats_port, path), data=data)
        if auth and (user or self.user):
            tok = base64.b64encode(("%s:%s" % (user or self.user, password or self.password)).encode()).decode()
            req.add_header("Authorization", "Basic " + tok)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def csv_rows(self):
        status, body = self.get("/haproxy;csv")
        assert status == 200, body
        assert body.startswith("# pxname,svname,")
        return list(csv.DictReader(io.StringIO(body[2:])))

    def row(self, px, sv):
        for r in self.csv_rows():
            if r["pxname"] == px and r["svname"] == sv:
                return r
        raise AssertionError("no CSV row %s/%s" % (px, sv))

    def runtime(self, cmd):
        status, body = self.get("/haproxy/runtime", data=cmd.encode())
        assert status == 200, body
        return body


HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)


class HaproxyProcess:
    """Debian's haproxy with one tcp frontend/backend and a stats page, as a reference."""

    def __init__(self, servers, balance="roundrobin", inter=200, rise=2, fall=3, maxconn=4000, defaults=(),
                 server_options=""):
        self.workdir = tempfile.mkdtemp(prefix="mqlb-haproxy-")
        self.port = free_port()
        self.stats_port = free_port()
        lines = [
            "global", "  maxconn %d" % maxconn,
            "defaults", "  mode tcp", "  timeout connect 5s", "  timeout client 1h", "  timeout server 1h",
            *("  " + d for d in defaults),
            "listen stats", "  bind 127.0.0.1:%d" % self.stats_port, "  mode http", "  stats enable",
            "  stats uri /haproxy",
            "frontend fe", "  bind 127.0.0.1:%d" % self.port, "  default_backend be",
            "backend be", "  balance %s" % balance,
        ]
        for name, port, weight in servers:
            lines.append("  server %s 127.0.0.1:%d weight %d check inter %d rise %d fall %d %s"
                         % (name, port, weight, inter, rise, fall, server_options))
        self.cfg = os.path.join(self.workdir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=brokers._die_with_parent)
        wait_for(lambda: brokers.port_open("127.0.0.1", self.stats_port), 15, what="haproxy stats port")
        return self

    def csv_text(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/haproxy;csv" % self.stats_port, timeout=10) as r:
            return r.read().decode()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)
