#!/usr/bin/python3
"""Benchmark mqnode's `lb` role against Debian's haproxy (mode tcp) and a direct connection.

One mqnode broker (`--role disc`) is the backend for everything. In turn, each of these
"paths" is measured alone, with the same scenarios and parameters:

  direct   the client talks to the broker's port
  lb       mqnode --role lb in front of the broker (one frontend/backend/server, checks on)
  haproxy  Debian's haproxy 2.6, `mode tcp`, `balance static-rr`, in the foreground (-db)

Scenarios: tp-small (16 B, no ack, msgs/s) and tp-large (64 KiB, no ack, MB/s) with
mqnode-bench; latency (publish -> deliver round trips at a fixed rate, measured by a
raw-socket AMQP probe in this script); idle (N AMQP connections held through each proxy,
proxy RSS delta per connection). Markdown table on stdout, progress on stderr, --json OUT
for all numbers. Everything started here is stopped on exit, failure, Ctrl-C, SIGTERM.

Standard library only (Debian /usr/bin/python3). See bench/README.md, "Load balancer".
"""

import argparse
import atexit
import json
import math
import os
import platform
import random
import resource
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))

import run as brun  # noqa: E402  bench/run.py: process helpers, MqnodeBroker, run_flow, run_idle
import amqp_raw as ar  # noqa: E402  minimal raw-socket AMQP 0-9-1 client

PATHS = ("direct", "lb", "haproxy")
ALL_SCENARIOS = ("tp-small", "tp-large", "latency", "idle")


def log(msg):
    print(f"[lb_run.py {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchFailure(brun.BenchFailure):
    pass


def _raise_nofile():
    """preexec_fn for the proxies: open-files soft limit = hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def listening(port):
    """True if something on this host listens on TCP 127.0.0.1:port (from /proc/net/tcp;
    no connection is made, so no proxied session is created just to probe)."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":
                    return True
    except OSError:
        pass
    return False


# ---------------------------------------------------------------------------
# Paths: what the client connects to. pid/rss/cpu refer to the proxy process.

class Path:
    key = "?"
    name = "?"
    proc = None
    pid = None
    port = None

    def start(self):
        pass

    def stop(self):
        pass

    def alive(self):
        return self.proc is None or self.proc.poll() is None

    def rss_kib(self):
        return brun.rss_kib(self.pid) if self.pid else 0

    def cpu_seconds(self):
        return brun.cpu_seconds(self.pid) if self.pid else 0.0


class Direct(Path):
    key, name = "direct", "direct"

    def __init__(self, broker):
        self.port = broker.port


class ProxyPath(Path):
    """A proxy process in its own session; stop() is idempotent and registered for cleanup."""

    def _spawn(self, cmd, tmp, timeout=20.0):
        self.log_path = os.path.join(tmp, f"{self.key}.log")
        log(f"starting {self.name}: {' '.join(cmd)}")
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=tmp, preexec_fn=_raise_nofile)
        self.pid = self.proc.pid
        brun.on_cleanup(self.stop)
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            if self.proc.poll() is not None:
                raise BenchFailure(f"{self.name} exited with status {self.proc.returncode} during startup; "
                                   f"log tail:\n{brun.tail(self.log_path)}")
            if time.monotonic() > deadline:
                raise BenchFailure(f"{self.name} did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s; "
                                   f"log tail:\n{brun.tail(self.log_path)}")
            time.sleep(0.05)
        with open(f"/proc/{self.pid}/limits") as f:
            lim = [l for l in f if l.startswith("Max open files")]
        log(f"{self.name} up on port {self.port} (pid {self.pid}; {lim[0].split()[3]} open files)")

    def stop(self):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        brun.kill_group(p, self.name, term_wait=15)
        if p.returncode not in (0, -signal.SIGTERM, 143, None):
            log(f"{self.name} exited with status {p.returncode}; log tail:\n{brun.tail(self.log_path)}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class LbPath(ProxyPath):
    key, name = "lb", "mqnode lb"

    def __init__(self, args, broker):
        self.args, self.backend_port = args, broker.port

    def start(self):
        tmp = tempfile.mkdtemp(prefix="lb-bench-lb-")
        if not self.args.keep_tmp:
            brun.on_cleanup(lambda d=tmp: shutil.rmtree(d, ignore_errors=True))
        self.port = brun.pick_port()
        cfg = {"lb": {
            "frontends": [{"name": "amqp", "bind": f"127.0.0.1:{self.port}", "backend": "rabbitmq",
                           "maxconn": self.args.maxconn}],
            "backends": [{"name": "rabbitmq", "balance": "static-rr",
                          "servers": [{"name": "mq1", "address": f"127.0.0.1:{self.backend_port}"}]}],
            "splice": self.args.lb_splice,
        }}
        path = os.path.join(tmp, "lb.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        data = os.path.join(tmp, "data")
        os.mkdir(data)
        self._spawn([self.args.mqnode_bin, "--role", "lb", "--config", path, "--data-dir", data]
                    + self.args.lb_arg, tmp)


class HaproxyPath(ProxyPath):
    key, name = "haproxy", "HAProxy"

    def __init__(self, args, broker):
        self.args, self.backend_port = args, broker.port

    def start(self):
        tmp = tempfile.mkdtemp(prefix="lb-bench-haproxy-")
        if not self.args.keep_tmp:
            brun.on_cleanup(lambda d=tmp: shutil.rmtree(d, ignore_errors=True))
        self.port = brun.pick_port()
        m = self.args.maxconn
        lines = [
            "global", f"  maxconn {m}",
            "defaults", "  mode tcp", "  timeout connect 5s", "  timeout client 1h", "  timeout server 1h",
            "frontend amqp", f"  bind 127.0.0.1:{self.port}", f"  maxconn {m}", "  default_backend rabbitmq",
            "backend rabbitmq", "  balance static-rr",
            f"  server mq1 127.0.0.1:{self.backend_port} check",
        ]
        path = os.path.join(tmp, "haproxy.cfg")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._spawn([self.args.haproxy, "-db", "-f", path], tmp)


# ---------------------------------------------------------------------------
# Latency probe: raw AMQP, one publisher and one consumer connection through the path.

def _percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[k]


def latency_probe(port, rate, seconds, warmup, size, timeout):
    """Publishes `size`-byte messages at `rate`/s for warmup+seconds, consumes them (no ack) on a
    second connection and returns the publish->deliver round trips (ns) after the warm-up."""
    size = max(size, 16)
    q = f"lb-bench-lat-{os.getpid()}-{random.randrange(1 << 30)}"
    pub = ar.RawConnection("127.0.0.1", port, timeout=timeout)
    con = ar.RawConnection("127.0.0.1", port, timeout=timeout)
    try:
        pub.handshake(heartbeat=0, timeout=timeout)
        con.handshake(heartbeat=0, timeout=timeout)
        pub.open_channel(1, timeout)
        con.open_channel(1, timeout)
        con.send_method(1, ar.QUEUE_DECLARE, ar.queue_declare_args(q, auto_delete=True))
        con.expect(ar.QUEUE_DECLARE_OK, timeout, 1)
        con.send_method(1, ar.BASIC_CONSUME, ar.basic_consume_args(q, no_ack=True))
        con.expect(ar.BASIC_CONSUME_OK, timeout, 1)

        prefix = (ar.method_frame(1, ar.BASIC_PUBLISH, ar.basic_publish_args("", q))
                  + ar.header_frame(1, size))
        pad = b"x" * (size - 16)
        body_hdr = struct.pack(">BHI", ar.FRAME_BODY, 1, size)
        end = bytes([ar.FRAME_END])

        csock = con.sock
        csock.setblocking(False)
        buf = bytearray(con.buf)
        total = int((warmup + seconds) * rate)
        skip = int(warmup * rate)
        lat = [None] * total
        received = 0
        interval = 1e9 / rate
        t0 = time.perf_counter_ns() + 1_000_000
        sent = 0
        drain_deadline = None

        def parse(now):
            nonlocal received
            pos = 0
            n = len(buf)
            while n - pos >= 7:
                ftype, _ch, fsize = struct.unpack_from(">BHI", buf, pos)
                if n - pos < fsize + 8:
                    break
                if ftype == ar.FRAME_BODY:
                    seq, ts = struct.unpack_from(">QQ", buf, pos + 7)
                    if seq < total and lat[seq] is None:
                        lat[seq] = now - ts
                        received += 1
                elif ftype == ar.FRAME_METHOD:
                    cm = struct.unpack_from(">HH", buf, pos + 7)
                    if cm in (ar.CONNECTION_CLOSE, ar.CHANNEL_CLOSE, ar.BASIC_CANCEL):
                        raise BenchFailure(f"latency probe: broker sent {cm}: "
                                           f"{ar.Frame(ftype, _ch, bytes(buf[pos + 7:pos + 7 + fsize]))}")
                pos += fsize + 8
            del buf[:pos]

        while received < total:
            now = time.perf_counter_ns()
            if sent < total:
                due = t0 + int(sent * interval)
                if now >= due:
                    body = struct.pack(">QQ", sent, time.perf_counter_ns()) + pad
                    pub.sock.sendall(prefix + body_hdr + body + end)
                    sent += 1
                    continue
                wait = (due - now) / 1e9
            else:
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + timeout
                wait = drain_deadline - time.monotonic()
                if wait <= 0:
                    raise BenchFailure(f"latency probe: {total - received} of {total} messages not delivered "
                                       f"within {timeout:.0f} s")
            r, _, _ = select.select([csock], [], [], wait)
            if r:
                try:
                    chunk = csock.recv(262144)
                except (BlockingIOError, InterruptedError):
                    continue
                now = time.perf_counter_ns()
                if not chunk:
                    raise BenchFailure("latency probe: consumer connection closed")
                buf += chunk
                parse(now)
        samples = lat[skip:]
        # tidy up: delete the queue, close both connections (bounded)
        csock.setblocking(True)
        con.buf = bytes(buf)
        try:
            con.send_method(1, ar.QUEUE_DELETE, struct.pack(">H", 0) + ar.shortstr(q) + ar.bits(False, False, False))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if con.read_method(timeout).method == ar.QUEUE_DELETE_OK:
                    break
            for c in (pub, con):
                c.send_method(0, ar.CONNECTION_CLOSE, ar.close_args())
            for c in (pub, con):
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    if c.read_method(5).method == ar.CONNECTION_CLOSE_OK:
                        break
        except (OSError, ar.PeerClosed, AssertionError, ValueError) as e:
            log(f"latency probe: unclean close ({e}); ignored")
        return samples, sent
    finally:
        pub.close()
        con.close()


def run_latency(args, path):
    log(f"{path.name}: latency: {args.lat_rate:g} msgs/s for {args.lat_seconds:g} s (+{args.lat_warmup:g} s warm-up), "
        f"{args.lat_size} B bodies")
    cpu0 = path.cpu_seconds()
    t = time.monotonic()
    try:
        samples, sent = latency_probe(path.port, args.lat_rate, args.lat_seconds, args.lat_warmup, args.lat_size,
                                      args.timeout)
    except (OSError, ar.PeerClosed, AssertionError, ValueError) as e:
        raise BenchFailure(f"latency probe failed: {type(e).__name__}: {e}")
    wall = time.monotonic() - t
    s = sorted(samples)
    us = lambda v: v / 1000.0  # noqa: E731
    res = {"samples_ns": samples, "count": len(s), "sent": sent,
           "p50_us": us(_percentile(s, 0.50)), "p99_us": us(_percentile(s, 0.99)),
           "p999_us": us(_percentile(s, 0.999)), "max_us": us(s[-1]), "mean_us": us(statistics.fmean(s)),
           "proxy_cpu_pct": 100.0 * (path.cpu_seconds() - cpu0) / wall if path.pid else None}
    log(f"{path.name}: latency: p50 {res['p50_us']:.0f} µs, p99 {res['p99_us']:.0f} µs, "
        f"p99.9 {res['p999_us']:.0f} µs, max {res['max_us']:.0f} µs ({len(s)} samples)")
    return res


# ---------------------------------------------------------------------------
# Flow scenarios (mqnode-bench throughput) and idle (mqnode-bench idle), via bench/run.py.

FLOW = {
    "tp-small": lambda a: {"args": ["throughput", "--size", str(a.small_size), "--ack", "none",
                                    "--publisher", "batch", "--batch", str(a.batch)],
                           "max_lag": a.max_lag_small, "size": a.small_size},
    "tp-large": lambda a: {"args": ["throughput", "--size", str(a.large_size), "--ack", "none",
                                    "--publisher", "batch", "--batch", str(a.batch)],
                           "max_lag": a.max_lag_large, "size": a.large_size},
}


def run_tp(args, path, name, broker):
    spec = FLOW[name](args)
    a = argparse.Namespace(**vars(args))
    a.max_lag = spec["max_lag"]
    broker_cpu0 = broker.cpu_seconds()
    # run_flow measures "the broker" = path (the proxy process; nothing for direct)
    res = brun.run_flow(a, path, {"name": name, "kind": "throughput", "args": spec["args"]})
    broker_cpu = broker.cpu_seconds() - broker_cpu0
    res["mb_per_sec"] = res["msgs_per_sec"] * spec["size"] / 1e6
    # What the same broker spends per message behind each path: a proxy that
    # coalesces the client's small writes makes the broker's reads cheaper.
    res["msgs_per_broker_cpu_s"] = res["received"] / broker_cpu if broker_cpu > 0 else None
    res["msgs_per_proxy_cpu_s"] = res["received"] / res["broker_cpu_seconds"] if path.pid else None
    res["proxy_cpu_pct"] = res.pop("broker_cpu_pct") if path.pid else None
    res["proxy_peak_rss_kib"] = res.pop("broker_peak_rss_kib") if path.pid else None
    log(f"{path.name}: {name}: {res['msgs_per_sec']:.0f} msgs/s = {res['mb_per_sec']:.1f} MB/s"
        + (f" (proxy CPU {res['proxy_cpu_pct']:.0f}%)" if path.pid else ""))
    return res


def run_idle(args, path):
    a = argparse.Namespace(**vars(args))
    a.connections = args.idle_connections
    res = brun.run_idle(a, path)
    res["proxy_rss_before_kib"] = res.pop("rss_before_kib")
    res["proxy_rss_after_kib"] = res.pop("rss_after_kib")
    return res


# ---------------------------------------------------------------------------

def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(args, raw):
    """raw[path][scenario] = list of runs or {'error'}. Returns summary[path][scenario] = dict."""
    out = {}
    for p, scs in raw.items():
        out[p] = {}
        for sc, runs in scs.items():
            if isinstance(runs, dict):  # error
                out[p][sc] = runs
                continue
            if sc in FLOW:
                out[p][sc] = {"msgs_per_sec": median_of(runs, "msgs_per_sec"),
                              "mb_per_sec": median_of(runs, "mb_per_sec"),
                              "proxy_cpu_pct": median_of(runs, "proxy_cpu_pct"),
                              "msgs_per_proxy_cpu_s": median_of(runs, "msgs_per_proxy_cpu_s"),
                              "msgs_per_broker_cpu_s": median_of(runs, "msgs_per_broker_cpu_s"),
                              "runs_msgs_per_sec": [r["msgs_per_sec"] for r in runs]}
            elif sc == "latency":
                pooled = sorted(x for r in runs for x in r["samples_ns"])
                out[p][sc] = {"count": len(pooled),
                              **{k: _percentile(pooled, q) / 1000.0 for k, q in
                                 (("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999))},
                              "max_us": pooled[-1] / 1000.0,
                              "runs_p99_us": [r["p99_us"] for r in runs],
                              "proxy_cpu_pct": median_of(runs, "proxy_cpu_pct")}
            elif sc == "idle":
                r = runs[0]
                out[p][sc] = {k: r.get(k) for k in ("kib_per_connection", "proxy_rss_before_kib",
                                                    "proxy_rss_after_kib", "open_rate", "alive", "closed_ok")}
    return out


def fmt(v, digits=0):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}"


def build_rows(args, s):
    """(label, direct, lb, haproxy, ratio text, target text) with numbers already formatted."""
    rows = []

    def g(p, sc, k):
        r = s.get(p, {}).get(sc)
        if r is None:
            return None
        if "error" in r:
            return "FAILED"
        return r.get(k)

    def num(v):
        return isinstance(v, (int, float))

    def ratio_hi(l, h):  # > 1 = lb better
        return f"{l / h:.2f}×" if num(l) and num(h) and h > 0 else "—"

    for sc, label, key, unit, digits in (
            ("tp-small", f"throughput {args.small_size} B, no ack", "msgs_per_sec", "msgs/s", 0),
            ("tp-large", f"throughput {args.large_size // 1024} KiB, no ack", "mb_per_sec", "MB/s", 1)):
        if sc not in args.only:
            continue
        d, l, h = (g(p, sc, key) for p in PATHS)
        met = "" if not (num(l) and num(h)) else ("met" if l >= h else "**missed**")
        rows.append((f"{label} ({unit})", fmt(d, digits), fmt(l, digits), fmt(h, digits), ratio_hi(l, h),
                     f"lb ≥ HAProxy: {met}" if met else "lb ≥ HAProxy"))
        # Spread: each path's range over the rounds, and lb/HAProxy within each round (the
        # two ran back to back, so a burst of load elsewhere on the machine hits both).
        scale = 1.0 if key == "msgs_per_sec" else (args.small_size if sc == "tp-small" else args.large_size) / 1e6
        runs = {p: g(p, sc, "runs_msgs_per_sec") for p in PATHS}
        spread = [fmt(min(r) * scale, digits) + "–" + fmt(max(r) * scale, digits) if isinstance(r, list) and r else "—"
                  for r in (runs[p] for p in PATHS)]
        per_round = ([x / y for x, y in zip(runs["lb"], runs["haproxy"]) if y]
                     if isinstance(runs["lb"], list) and isinstance(runs["haproxy"], list) else [])
        rows.append((f"  min–max over {args.repeat} rounds", *spread,
                     f"per round {statistics.median(per_round):.2f}× ({min(per_round):.2f}–{max(per_round):.2f})"
                     if per_round else "", ""))
        cd, cl, ch = (g(p, sc, "proxy_cpu_pct") for p in PATHS)
        rows.append((f"  proxy CPU during it (% of one core)", "—", fmt(cl), fmt(ch), "", ""))
        pl, ph = (g(p, sc, "msgs_per_proxy_cpu_s") for p in ("lb", "haproxy"))
        rows.append((f"  msgs per proxy CPU-second", "—", fmt(pl), fmt(ph), ratio_hi(pl, ph), ""))
        bd, bl, bh = (g(p, sc, "msgs_per_broker_cpu_s") for p in PATHS)
        rows.append((f"  msgs per broker CPU-second (the broker behind the path)", fmt(bd), fmt(bl), fmt(bh),
                     ratio_hi(bl, bh), ""))
    if "latency" in args.only:
        for k, lab in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
            d, l, h = (g(p, "latency", k) for p in PATHS)
            rows.append((f"latency {lab} (µs)", fmt(d), fmt(l), fmt(h), "", ""))
        for k, lab in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
            d, l, h = (g(p, "latency", k) for p in PATHS)
            al = l - d if num(l) and num(d) else None
            ah = h - d if num(h) and num(d) else None
            tgt, rt = "", ""
            if num(al) and num(ah):
                rt = f"{al - ah:+,.0f} µs"
                if k == "p99_us":
                    tgt = "lb ≤ HAProxy: " + ("met" if al <= ah else "**missed**")
            elif k == "p99_us":
                tgt = "lb ≤ HAProxy"
            rows.append((f"added latency {lab} = path − direct (µs)", "0", fmt(al), fmt(ah), rt, tgt))
        # Cross-check against noise bursts: per round, path p99 − direct p99 of the same round; median.
        rd = g("direct", "latency", "runs_p99_us")
        per = {}
        for p in ("lb", "haproxy"):
            rp = g(p, "latency", "runs_p99_us")
            per[p] = (statistics.median(x - y for x, y in zip(rp, rd))
                      if isinstance(rp, list) and isinstance(rd, list) and rp and rd else None)
        al, ah = per["lb"], per["haproxy"]
        rows.append(("added latency p99, median over rounds of (path − direct) (µs)", "0", fmt(al), fmt(ah),
                     f"{al - ah:+,.0f} µs" if num(al) and num(ah) else "",
                     ("cross-check: " + ("met" if al <= ah else "**missed**")) if num(al) and num(ah) else ""))
    if "idle" in args.only:
        n = args.idle_connections
        l, h = (g(p, "idle", "kib_per_connection") for p in ("lb", "haproxy"))
        met = ""
        if num(l) and num(h):
            met = "met" if l <= 2 * h else "**missed**"
        rows.append((f"idle: proxy RSS per connection, {n:,} conns (KiB)", "—", fmt(l, 2), fmt(h, 2),
                     f"{l / h:.2f}× (lb/HAProxy)" if num(l) and num(h) and h > 0 else "—",
                     f"lb ≤ 2× HAProxy: {met}" if met else "lb ≤ 2× HAProxy"))
        for k, lab in (("proxy_rss_before_kib", "before"), ("proxy_rss_after_kib", f"with {n:,} conns")):
            l, h = (g(p, "idle", k) for p in ("lb", "haproxy"))
            rows.append((f"idle: proxy RSS {lab} (MiB)", "—", fmt(l / 1024 if num(l) else l, 1),
                         fmt(h / 1024 if num(h) else h, 1),
                         f"{l / h:.2f}× (lb/HAProxy)" if num(l) and num(h) and h > 0 else "", ""))
        l, h = (g(p, "idle", "open_rate") for p in ("lb", "haproxy"))
        rows.append(("idle: AMQP connection setup rate through the proxy (conn/s)", "—", fmt(l), fmt(h),
                     ratio_hi(l, h), ""))
    return rows


def markdown(args, s, raw):
    rows = build_rows(args, s)
    out = ["| scenario | direct | mqnode lb | HAProxy | lb vs HAProxy | target |",
           "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    out.append("")
    per_send = "one message per send()" if args.batch == 1 else f"{args.batch} pre-encoded messages per send()"
    out.append(f"Throughput: mqnode-bench throughput, 1 producer + 1 consumer connection, no ack, {per_send}, "
               f"{args.seconds:g} s of publishing, prefetch {args.prefetch}, max-lag {args.max_lag_small} "
               f"({args.small_size} B) / {args.max_lag_large} ({args.large_size} B); median of {args.repeat} "
               f"run(s); MB/s = msgs/s × body size / 10^6; ratio = lb / HAProxy (> 1 = lb better). "
               f"Latency: publish→deliver on two raw AMQP connections at {args.lat_rate:g} msgs/s, "
               f"{args.lat_size} B bodies, {args.lat_seconds:g} s per run after {args.lat_warmup:g} s warm-up, "
               f"samples of {args.repeat} run(s) pooled; 'lb vs HAProxy' = lb added − HAProxy added "
               f"(< 0 = lb better). Idle: mqnode-bench idle (full AMQP handshake + channel.open, heartbeat 0), "
               f"proxy RSS (VmRSS) delta / connections, each after {args.settle:g} s settling. "
               f"Runs are interleaved (direct, lb, HAProxy) × {args.repeat}; proxies restarted for each run. "
               f"Machine: {os.cpu_count()} CPUs, {platform.platform()}; mqnode `{args.mqnode_bin}` (lb splice {args.lb_splice}); "
               f"haproxy `{args.haproxy_version}`; RLIMIT_NOFILE {args.nofile}.")
    if "idle" in args.only and args.idle_connections < args.idle_requested:
        out.append("")
        out.append(f"Idle: {args.idle_connections:,} instead of {args.idle_requested:,} connections: each proxied "
                   f"connection needs two descriptors in the proxy and the open-files hard limit here is "
                   f"{args.nofile} (it cannot be raised without CAP_SYS_RESOURCE).")
    errors = []
    for p, scs in raw.items():
        for sc, r in scs.items():
            if isinstance(r, dict) and "error" in r:
                errors.append(f"- {p} {sc}: " + str(r["error"]).rstrip().replace("\n", "\n      "))
    if errors:
        out.append("")
        out.append("Failures:")
        out += errors
    return "\n".join(out)


# ---------------------------------------------------------------------------

def default_bin(*cands):
    for c in cands:
        p = os.path.join(ROOT, c)
        if os.access(p, os.X_OK):
            return p
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mqnode-bin", default=default_bin("build-bench/app/mqnode", "build/app/mqnode"),
                    help="mqnode binary, used for the broker (--role disc) and the lb (--role lb) "
                         "(default build-bench/app/mqnode)")
    ap.add_argument("--bench-bin", default=default_bin("build-bench/bench/mqnode-bench", "build/bench/mqnode-bench"),
                    help="mqnode-bench (default build-bench/bench/mqnode-bench)")
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--mqnode-arg", action="append", default=[], help="extra argument for the broker (repeatable)")
    ap.add_argument("--lb-arg", action="append", default=[], help="extra argument for the lb process (repeatable)")
    ap.add_argument("--lb-splice", default="auto", choices=("auto", "always", "never"),
                    help="the lb's /lb/splice (default auto, the lb's default)")
    ap.add_argument("--paths", default=",".join(PATHS), help="comma list of direct, lb, haproxy (default all)")
    ap.add_argument("--only", default=",".join(ALL_SCENARIOS),
                    help="comma list of tp-small, tp-large, latency, idle (default all)")
    ap.add_argument("--seconds", type=float, default=10.0, help="throughput: publish time per run (default 10)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of (direct, lb, haproxy) for throughput and "
                                                          "latency; medians / pooled samples (default 3)")
    ap.add_argument("--small-size", type=int, default=16, help="tp-small body size (default 16)")
    ap.add_argument("--large-size", type=int, default=65536, help="tp-large body size (default 65536)")
    ap.add_argument("--batch", type=int, default=1, help="throughput: messages per send() of the generator "
                                                        "(default 1, as real clients write)")
    ap.add_argument("--max-lag-small", type=int, default=50000, help="tp-small --max-lag (default 50000)")
    ap.add_argument("--max-lag-large", type=int, default=1000,
                    help="tp-large --max-lag (default 1000 = 64 MiB backlog at 64 KiB)")
    ap.add_argument("--prefetch", type=int, default=100)
    ap.add_argument("--lat-rate", type=float, default=1000.0, help="latency: messages per second (default 1000)")
    ap.add_argument("--lat-seconds", type=float, default=10.0, help="latency: measured seconds per run (default 10)")
    ap.add_argument("--lat-warmup", type=float, default=1.0, help="latency: discarded warm-up seconds (default 1)")
    ap.add_argument("--lat-size", type=int, default=16, help="latency: body size, >= 16 (default 16)")
    ap.add_argument("--idle-connections", type=int, default=10000,
                    help="idle: connections through each proxy (default 10000; capped by the fd limit)")
    ap.add_argument("--maxconn", type=int, default=0, help="maxconn of both proxies (default: idle connections "
                                                           "+ 64)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to let RSS settle before sampling")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    ap.add_argument("--timeout", type=float, default=15.0, help="connect/RPC/no-progress timeout (s)")
    ap.add_argument("--json", metavar="OUT", help="also write all results as JSON to OUT")
    ap.add_argument("--keep-tmp", action="store_true", help="keep temp dirs (configs, logs)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show mqnode-bench's own output")
    args = ap.parse_args()

    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    for p in args.paths:
        if p not in PATHS:
            ap.error(f"--paths: unknown {p!r} (have {', '.join(PATHS)})")
    for s in args.only:
        if s not in ALL_SCENARIOS:
            ap.error(f"--only: unknown {s!r} (have {', '.join(ALL_SCENARIOS)})")
    if "latency" in args.only and "direct" not in args.paths:
        log("note: without the direct path the added latency cannot be computed")
    for what in ("mqnode_bin", "bench_bin"):
        v = getattr(args, what)
        if not v or not os.access(v, os.X_OK):
            ap.error(f"--{what.replace('_', '-')}: not found; build with cmake -DMQNODE_BENCH=ON "
                     f"(see bench/README.md)")
        setattr(args, what, os.path.abspath(v))
    if "haproxy" in args.paths and not os.access(args.haproxy, os.X_OK):
        ap.error(f"{args.haproxy}: not found (apt-get install haproxy, or --paths direct,lb)")
    if args.lat_size < 16:
        ap.error("--lat-size must be >= 16")
    # run_flow / run_idle of bench/run.py read these
    args.count, args.producers, args.consumers, args.max_lag = 0, 1, 1, args.max_lag_small

    # Descriptors: the proxies need 2 per proxied connection (+ listeners, checks, pollers);
    # children inherit the raised soft limit (and _raise_nofile sets it again for the proxies).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args.nofile = hard
    args.idle_requested = args.idle_connections
    cap = (hard - 300) // 2
    if args.idle_connections > cap:
        log(f"idle: RLIMIT_NOFILE hard limit is {hard}; a proxy needs 2 descriptors per connection, "
            f"so using {cap} connections instead of {args.idle_connections}")
        args.idle_connections = cap
    if not args.maxconn:
        args.maxconn = args.idle_connections + 64
    args.haproxy_version = "—"
    if "haproxy" in args.paths:
        try:
            args.haproxy_version = subprocess.run([args.haproxy, "-v"], capture_output=True, text=True,
                                                  timeout=10).stdout.splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass

    signal.signal(signal.SIGTERM, brun._signal_to_exit)
    signal.signal(signal.SIGHUP, brun._signal_to_exit)
    atexit.register(brun.run_cleanups)

    raw = {p: {} for p in args.paths}
    rc = 0
    flow_scs = [s for s in ("tp-small", "tp-large", "latency") if s in args.only]
    try:
        broker = brun.MqnodeBroker(args.mqnode_bin, args.keep_tmp, ["--role", "disc"] + args.mqnode_arg)
        broker.start()
        makers = {"direct": lambda: Direct(broker), "lb": lambda: LbPath(args, broker),
                  "haproxy": lambda: HaproxyPath(args, broker)}
        for rnd in range(args.repeat if flow_scs else 0):
            for p in args.paths:
                log(f"--- round {rnd + 1}/{args.repeat}: {p}")
                path = makers[p]()
                try:
                    path.start()
                    time.sleep(args.pause)
                    for sc in flow_scs:
                        if isinstance(raw[p].get(sc), dict):
                            continue  # failed in an earlier round
                        if not broker.alive():
                            raise BenchFailure(f"the broker died; log tail:\n{brun.tail(broker.log_path)}")
                        if not path.alive():
                            raise BenchFailure(f"{path.name} died; log tail:\n{brun.tail(path.log_path)}")
                        try:
                            r = run_latency(args, path) if sc == "latency" else run_tp(args, path, sc, broker)
                            raw[p].setdefault(sc, []).append(r)
                        except brun.BenchFailure as e:
                            log(f"{p}: {sc}: FAILED: {e}")
                            raw[p][sc] = {"error": str(e)}
                        time.sleep(args.pause)
                except brun.BenchFailure as e:
                    log(f"{p}: FAILED: {e}")
                    for sc in flow_scs:
                        raw[p][sc] = {"error": str(e)}
                finally:
                    path.stop()
        if "idle" in args.only:
            for p in args.paths:
                if p == "direct":
                    continue
                path = makers[p]()
                try:
                    path.start()
                    raw[p]["idle"] = [run_idle(args, path)]
                    if not path.alive():
                        raise BenchFailure(f"{path.name} died during idle; log tail:\n{brun.tail(path.log_path)}")
                except brun.BenchFailure as e:
                    log(f"{p}: idle: FAILED: {e}")
                    raw[p]["idle"] = {"error": str(e)}
                finally:
                    path.stop()
                time.sleep(args.pause)
        if not broker.alive():
            log(f"the broker died during the run; log tail:\n{brun.tail(broker.log_path)}")
            rc = 1
    except brun.BenchFailure as e:
        log(f"FAILED: {e}")
        rc = 1
    except KeyboardInterrupt as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); cleaning up")
        brun.run_cleanups()
        return 130
    finally:
        brun.run_cleanups()

    summary = summarize(args, raw)
    print(markdown(args, summary, raw), flush=True)
    if args.json:
        def strip(r):  # keep the JSON small: no per-message samples
            return {k: v for k, v in r.items() if k != "samples_ns"}
        doc = {
            "params": {k: getattr(args, k) for k in (
                "seconds", "repeat", "small_size", "large_size", "max_lag_small", "max_lag_large", "prefetch",
                "lat_rate", "lat_seconds", "lat_warmup", "lat_size", "idle_connections", "idle_requested",
                "maxconn", "settle", "timeout", "nofile", "paths", "only", "mqnode_bin", "bench_bin", "haproxy",
                "haproxy_version")},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "summary": summary,
            "runs": {p: {sc: ([strip(r) for r in runs] if isinstance(runs, list) else runs)
                         for sc, runs in scs.items()} for p, scs in raw.items()},
            "table": [dict(zip(("scenario", "direct", "lb", "haproxy", "lb_vs_haproxy", "target"), r))
                      for r in build_rows(args, summary)],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        log(f"wrote {args.json}")
    for scs in raw.values():
        if any(isinstance(r, dict) and "error" in r for r in scs.values()):
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
