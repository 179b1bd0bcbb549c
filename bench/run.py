#!/usr/bin/env python3
"""Run the mqnode-bench scenarios against mqnode and a private RabbitMQ node.

Each broker is started by this script, runs alone (never both at once), gets
the same scenarios with the same parameters, and is stopped again. The result
is a markdown table on stdout (progress goes to stderr); --json also writes all
raw numbers. Everything this script starts (mqnode, beam.smp, epmd, temp dirs)
is removed on exit, also on Ctrl-C, SIGTERM or failure.

Standard library only. See bench/README.md.
"""

import argparse
import atexit
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# ---------------------------------------------------------------------------
# Scenarios. "metric" names the RESULT field; "better" is "high" or "low".

# Headline flow scenarios write the way real clients do: one message per
# send() ("--batch 1"), or rabbitmq-c's own amqp_basic_publish (three send()s
# per message, "-lib"). The "batch64-*" scenarios keep the old generator that
# writes 64 pre-encoded messages per send(); they go to a second table.
ONE_PER_SEND = ["--publisher", "batch", "--batch", "1"]
BATCH64 = ["--publisher", "batch", "--batch", "64"]
LIB = ["--publisher", "lib"]
EIGHT = ["--producers", "8", "--consumers", "8", "--queues", "8"]
# (name part, --size, label part, name suffix, --ack, label part) per generated row.
ALL_SIZES = [("16B", "16", "16 B", "noack", "none", "no ack"), ("16B", "16", "16 B", "ack", "manual", "manual ack"),
             ("1KB", "1024", "1 KiB", "noack", "none", "no ack"), ("1KB", "1024", "1 KiB", "ack", "manual", "manual ack")]
SMALL_ONLY = ALL_SIZES[:2]
EIGHT_CASES = ALL_SIZES[:2] + ALL_SIZES[3:]


def throughput(name, label, args, table=None, kind="throughput"):
    """A flow scenario running mqnode-bench <kind> with <args>; <table>: a second table's name."""
    s = {"name": name, "kind": "flow", "label": label, "args": [kind] + args}
    if table:
        s["table"] = table
    return s


SCENARIOS = [
    # idle runs first, on a broker that has done nothing else yet.
    {"name": "idle", "kind": "idle"},
    *[throughput(f"{prefix}-{size_name}-{ack}{suffix}", f"{who}{size_label}, {ack_label}{how}",
                 ["--size", size, "--ack", ack_arg] + extra, table)
      for prefix, who, suffix, how, extra, table, cases in (
          ("tp", "", "", "", ONE_PER_SEND, None, ALL_SIZES),
          ("tp", "", "-lib", ", amqp_basic_publish", LIB, None, SMALL_ONLY),
          ("tp8", "8 producers / 8 consumers / 8 queues, ", "", "", EIGHT + ONE_PER_SEND, None, EIGHT_CASES))
      for size_name, size, size_label, ack, ack_arg, ack_label in cases],
    throughput("fanout", "fanout 1 -> 10 queues, 16 B, no ack",
               ["--size", "16", "--ack", "none", "--queues", "10"] + ONE_PER_SEND, kind="fanout"),
    *[throughput(f"batch64-{size_name}-{ack}", f"{size_label}, {ack_label}", ["--size", size, "--ack", ack_arg] + BATCH64,
                 "batched") for size_name, size, size_label, ack, ack_arg, ack_label in ALL_SIZES],
    throughput("batch64-fanout", "fanout 1 -> 10 queues, 16 B, no ack",
               ["--size", "16", "--ack", "none", "--queues", "10"] + BATCH64, "batched", kind="fanout"),
    # Durability (issue 3). All 1 KiB bodies; "persistent" = delivery-mode 2 to a durable queue.
    {"name": "persist-confirm", "kind": "flow",
     "label": "persistent 1 KiB, confirms (window 1000), manual ack",
     "args": ["throughput", "--size", "1024", "--ack", "manual", "--persistent", "--confirm-window", "1000"]},
    {"name": "backlog-1M", "kind": "backlog", "label": "backlog {count} x 1 KiB persistent",
     "args": ["backlog", "--size", "1024", "--ack", "manual", "--persistent", "--confirm-window", "1000"]},
    {"name": "latency-5k", "kind": "latency", "label": "latency at {rate} msg/s, 1 KiB transient",
     "args": ["latency", "--size", "1024", "--ack", "manual"]},
    {"name": "latency-5k-persistent", "kind": "latency",
     "label": "latency at {rate} msg/s, 1 KiB persistent + confirms",
     "args": ["latency", "--size", "1024", "--ack", "manual", "--persistent", "--confirm-window", "1000"]},
]

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def log(msg):
    print(f"[run.py {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchFailure(Exception):
    pass


# ---------------------------------------------------------------------------
# Cleanup registry: callables run in reverse order at exit / on signals.

_cleanups = []


def on_cleanup(fn):
    _cleanups.append(fn)
    return fn


def run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning up
            log(f"cleanup step failed: {e}")


def _signal_to_exit(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------
# /proc helpers

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def process_tree(pid):
    """pid and all its descendants."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, ValueError, IndexError):
        return 0.0


def tree_rss_kib(pid):
    return sum(rss_kib(p) for p in process_tree(pid))


def tree_cpu_seconds(pid):
    return sum(cpu_seconds(p) for p in process_tree(pid))


def tree_description(pid):
    names = []
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/comm") as f:
                names.append(f"{f.read().strip()}({p})")
        except OSError:
            pass
    return ", ".join(names)


# ---------------------------------------------------------------------------
# Ports and processes

def port_is_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_port(lo=20000, hi=40000, avoid=()):
    """A free port in [lo, hi). RabbitMQ's CLI uses DIST_PORT+10000, so keep
    ports low enough that +10000 is still a valid port."""
    for _ in range(500):
        p = random.randrange(lo, hi)
        if p in avoid:
            continue
        if port_is_free(p):
            return p
    raise BenchFailure("no free TCP port found")


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def kill_group(proc, name, term_wait=15.0):
    """SIGTERM the process group of proc, then SIGKILL; reaps proc."""
    if proc is None or proc.poll() is not None:
        # the leader is gone; still make sure nothing of its group survived
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except OSError:
        pass
    try:
        proc.wait(timeout=term_wait)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop after SIGTERM; sending SIGKILL")
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) did not die")


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
        return "".join(lines[-n:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------
# Brokers

class Broker:
    name = "?"
    pid = None       # process whose tree RSS/CPU is measured
    port = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        return tree_rss_kib(self.pid)

    def cpu_seconds(self):
        return tree_cpu_seconds(self.pid)


class MqnodeBroker(Broker):
    name = "mqnode"

    def __init__(self, binary, keep_tmp=False, extra_args=()):
        self.binary = binary
        self.keep_tmp = keep_tmp
        self.extra_args = list(extra_args)
        self.proc = None
        self.tmp = None

    def start(self, timeout=30.0):
        self.tmp = tempfile.mkdtemp(prefix="mqnode-bench-mqnode-")
        if not self.keep_tmp:
            on_cleanup(lambda d=self.tmp: shutil.rmtree(d, ignore_errors=True))
        self.port = pick_port()
        cfg = os.path.join(self.tmp, "mqnode.json")
        with open(cfg, "w") as f:
            json.dump({"broker": {"listeners": [{"bind": f"127.0.0.1:{self.port}"}]}}, f)
        data = os.path.join(self.tmp, "data")
        os.mkdir(data)
        self.log_path = os.path.join(self.tmp, "mqnode.log")
        cmd = [self.binary, "--config", cfg, "--data-dir", data] + self.extra_args
        log(f"starting mqnode: {' '.join(cmd)}")
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=self.tmp)
        on_cleanup(lambda p=self.proc: kill_group(p, "mqnode"))
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while not port_accepts(self.port):
            if self.proc.poll() is not None:
                raise BenchFailure(f"mqnode exited with status {self.proc.returncode} during startup; "
                                   f"log tail:\n{tail(self.log_path)}")
            if time.monotonic() > deadline:
                raise BenchFailure(f"mqnode did not accept connections on 127.0.0.1:{self.port} within "
                                   f"{timeout:.0f} s; log tail:\n{tail(self.log_path)}")
            time.sleep(0.05)
        log(f"mqnode up on port {self.port} (pid {self.pid})")

    def stop(self):
        kill_group(self.proc, "mqnode")
        if self.proc.returncode not in (0, -signal.SIGTERM, None):
            log(f"mqnode exited with status {self.proc.returncode}; log: {self.log_path}")


class RabbitBroker(Broker):
    name = "RabbitMQ"

    def __init__(self, server=RABBITMQ_SERVER, ctl=RABBITMQCTL, keep_tmp=False):
        self.server = server
        self.ctl = ctl
        self.keep_tmp = keep_tmp
        self.proc = None
        self.epmd = None
        self.tmp = None

    def _ctl(self, *args, timeout=90):
        p = subprocess.Popen([self.ctl, "-n", self.node, *args], env=self.env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                             cwd=self.tmp)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p, "rabbitmqctl", term_wait=2)
            return 124, "rabbitmqctl timed out"
        finally:
            try:  # anything the CLI left behind in its group (inet_gethost...)
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        return p.returncode, out.decode(errors="replace")

    def start(self, timeout=120.0):
        self.tmp = tempfile.mkdtemp(prefix="mqnode-bench-rabbit-")
        if not self.keep_tmp:
            on_cleanup(lambda d=self.tmp: shutil.rmtree(d, ignore_errors=True))
        t = self.tmp
        for d in ("home", "mnesia", "log"):
            os.mkdir(os.path.join(t, d))
        self.port = pick_port()
        dist_port = pick_port(avoid={self.port})
        epmd_port = pick_port(avoid={self.port, dist_port})
        self.node = f"bench-{os.getpid()}@localhost"
        with open(os.path.join(t, "rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        with open(os.path.join(t, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        open(os.path.join(t, "rabbitmq-env.conf"), "w").close()  # don't read /etc/rabbitmq/rabbitmq-env.conf
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": os.path.join(t, "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": os.path.join(t, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(t, "log"),
            "RABBITMQ_CONFIG_FILE": os.path.join(t, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(t, "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(t, "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(t, "enabled_plugins"),
            "RABBITMQ_PID_FILE": os.path.join(t, "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        self.env = env
        # Our own epmd, in the foreground as our child, so we can stop it.
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        self.epmd = subprocess.Popen([epmd, "-port", str(epmd_port)], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, cwd=t)
        on_cleanup(lambda p=self.epmd: kill_group(p, "epmd", term_wait=3))
        deadline = time.monotonic() + 10
        while not port_accepts(epmd_port):
            if self.epmd.poll() is not None or time.monotonic() > deadline:
                raise BenchFailure(f"epmd did not start on port {epmd_port}")
            time.sleep(0.05)

        self.log_path = os.path.join(t, "startup.log")
        log(f"starting RabbitMQ node {self.node} on port {self.port} (dist {dist_port}, epmd {epmd_port}, "
            f"dir {t})")
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen([self.server], env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True, cwd=t)
        on_cleanup(self._stop_quietly)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchFailure(f"rabbitmq-server exited with status {self.proc.returncode}; log tail:\n"
                                   f"{tail(self.log_path)}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchFailure(f"RabbitMQ did not start within {timeout:.0f} s; log tail:\n"
                                   f"{tail(self.log_path)}")
            # await_startup fails at once while the node is not yet registered with epmd
            rc, out = self._ctl("await_startup", "--timeout", str(int(max(left, 1))), timeout=left + 10)
            if rc == 0:
                break
            time.sleep(0.5)
        if not port_accepts(self.port):
            raise BenchFailure(f"RabbitMQ started but does not accept on port {self.port}")
        # The rabbitmq-server script exec()s into erl -> erlexec -> beam.smp,
        # so the Popen pid is the VM; the pid file confirms it.
        self.pid = self.proc.pid
        try:
            with open(env["RABBITMQ_PID_FILE"]) as f:
                self.pid = int(f.read().strip())
        except (OSError, ValueError):
            pass
        log(f"RabbitMQ up: {tree_description(self.pid)}")

    def _stop_quietly(self):
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc, "RabbitMQ", term_wait=20)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            rc, out = self._ctl("stop", timeout=60)
            if rc != 0:
                log(f"rabbitmqctl stop failed ({rc}): {out.strip()[:300]}")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        kill_group(self.proc, "RabbitMQ", term_wait=10)
        kill_group(self.epmd, "epmd", term_wait=3)


# ---------------------------------------------------------------------------
# Running one scenario

class RssSampler(threading.Thread):
    def __init__(self, broker, interval=0.2):
        super().__init__(daemon=True)
        self.broker, self.interval = broker, interval
        self.peak = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.peak = max(self.peak, self.broker.rss_kib())
            self._halt.wait(self.interval)

    def finish(self):
        self._halt.set()
        self.join()
        self.peak = max(self.peak, self.broker.rss_kib())
        return self.peak


def parse_result(stdout):
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return None


def bench_common(args, broker):
    return ["--host", "127.0.0.1", "--port", str(broker.port), "--user", "guest", "--password", "guest",
            "--timeout", str(args.timeout)]


def run_flow(args, broker, sc):
    cmd = [args.bench_bin] + sc["args"] + bench_common(args, broker)
    cmd += ["--prefetch", str(args.prefetch), "--max-lag", str(args.max_lag), "--tag", sc["name"]]
    if sc["args"][0] == "throughput" and "--producers" not in sc["args"]:
        cmd += ["--producers", str(args.producers), "--consumers", str(args.consumers)]
    if sc["kind"] == "latency":
        cmd += ["--rate", str(args.latency_rate), "--seconds", str(args.latency_seconds),
                "--warmup", str(args.latency_warmup)]
        run_s = args.latency_seconds + args.latency_warmup
    else:
        cmd += ["--count", str(args.count)] if args.count else ["--seconds", str(args.seconds)]
        run_s = args.seconds if not args.count else 60
    log(f"{broker.name}: {sc['name']}: {' '.join(cmd[1:])}")
    cpu0 = broker.cpu_seconds()
    sampler = RssSampler(broker)
    sampler.start()
    t0 = time.monotonic()
    limit = run_s * 4 + 4 * args.timeout + 60
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        sampler.finish()
        raise BenchFailure(f"mqnode-bench did not finish within {limit:.0f} s")
    wall = time.monotonic() - t0
    peak = sampler.finish()
    cpu = broker.cpu_seconds() - cpu0
    if args.verbose:
        sys.stderr.write(p.stdout)
    sys.stderr.write(p.stderr)
    res = parse_result(p.stdout)
    if res is None:
        raise BenchFailure(f"mqnode-bench exited with {p.returncode} and no RESULT line:\n{p.stdout}{p.stderr}")
    if p.returncode != 0 or not res.get("ok"):
        raise BenchFailure(f"mqnode-bench reported an error: {res.get('error', p.stderr.strip())}")
    res["broker_cpu_pct"] = 100.0 * cpu / wall if wall > 0 else 0.0
    res["broker_cpu_seconds"] = cpu
    # Messages (fanout: published messages, not deliveries) per second of
    # broker CPU over the whole run: the fair figure when the generator shares
    # the machine's cores with the broker.
    msgs = res["published"] if res["scenario"] == "fanout" else res["received"]
    res["msgs_per_broker_cpu_s"] = msgs / cpu if cpu > 0 else 0.0
    res["broker_peak_rss_kib"] = peak
    log(f"{broker.name}: {sc['name']}: {res['msgs_per_sec']:.0f} msgs/s"
        + (f", {res['deliveries_per_sec']:.0f} deliveries/s" if res["scenario"] == "fanout" else "")
        + (f", latency p50 {res['lat_p50_us']:.0f} / p99 {res['lat_p99_us']:.0f} / p99.9 {res['lat_p999_us']:.0f} / "
           f"max {res['lat_max_us']:.0f} us (producer worst lateness {res['max_send_lag_us']:.0f} us, "
           f"{res['window_full_waits']} sends waited for a full confirm window)"
           if res["scenario"] == "latency" else "")
        + (f", publish+confirm {res['publish_rate']:.0f} msgs/s" if res.get("confirm_window") else "")
        + (f", {res['mean_in_flight']:.0f} in flight = {res['littles_wait_us'] / 1000:.1f} ms send-to-delivery "
           f"(Little's law)" if res["scenario"] != "latency" else "")
        + f" ({res['msgs_per_broker_cpu_s']:.0f} msgs per broker CPU-s; broker CPU {res['broker_cpu_pct']:.0f}%, bench CPU {res['bench_cpu_pct']:.0f}%, "
          f"peak RSS {peak / 1024:.0f} MiB)")
    return res


def settle_rss(broker, seconds):
    """RSS after letting the broker settle; the minimum of a few samples."""
    samples = []
    end = time.monotonic() + seconds
    while True:
        samples.append(broker.rss_kib())
        if time.monotonic() >= end:
            break
        time.sleep(0.25)
    return min(samples[-4:])


def run_idle(args, broker):
    n = args.connections
    before = settle_rss(broker, args.settle)
    cmd = [args.bench_bin, "idle", "--connections", str(n), "--hold-stdin", "--tag", "idle"] + bench_common(args, broker)
    log(f"{broker.name}: idle: {' '.join(cmd[1:])} (broker RSS before {before / 1024:.1f} MiB)")
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    on_cleanup(lambda: p.poll() is None and p.kill())
    lines = []
    ready = threading.Event()   # set on IDLE_READY or on EOF
    got_ready = []

    def reader():
        for line in p.stdout:
            lines.append(line)
            if line.startswith("IDLE_READY"):
                got_ready.append(True)
                ready.set()
        ready.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    limit = max(120.0, n * 0.05)
    if not ready.wait(limit) or not got_ready:
        p.kill()
        p.wait()
        th.join(5)
        res = parse_result("".join(lines))
        raise BenchFailure(f"idle: connections not ready: {res.get('error') if res else p.stderr.read().strip()}")
    after = settle_rss(broker, args.settle)
    try:
        p.stdin.write("done\n")
        p.stdin.flush()
        p.stdin.close()
    except OSError:
        pass
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise BenchFailure("idle: mqnode-bench did not finish closing connections")
    th.join(5)
    err = p.stderr.read()
    sys.stderr.write(err)
    if args.verbose:
        sys.stderr.write("".join(lines))
    res = parse_result("".join(lines))
    if res is None:
        raise BenchFailure(f"idle: no RESULT line (exit {p.returncode}): {err}")
    if p.returncode != 0 or not res.get("ok"):
        raise BenchFailure(f"idle: {res.get('error') or 'connections died or did not close cleanly'}: "
                           f"alive {res.get('alive')}/{n}, closed cleanly {res.get('closed_ok')}/{n}")
    res["rss_before_kib"] = before
    res["rss_after_kib"] = after
    res["kib_per_connection"] = (after - before) / n
    res["open_rate"] = n / res["open_seconds"] if res["open_seconds"] > 0 else 0.0
    log(f"{broker.name}: idle: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB = "
        f"{res['kib_per_connection']:.1f} KiB/connection; opened {res['open_rate']:.0f} conn/s")
    return res


def run_backlog(args, broker, sc):
    """Publish args.backlog_count messages with no consumer, sample the broker's RSS while they are queued,
    then let the generator drain them."""
    n = args.backlog_count
    before = settle_rss(broker, args.settle)
    cmd = [args.bench_bin] + sc["args"] + bench_common(args, broker)
    cmd += ["--count", str(n), "--prefetch", str(args.prefetch), "--consumers", str(args.consumers),
            "--hold-stdin", "--tag", sc["name"]]
    log(f"{broker.name}: {sc['name']}: {' '.join(cmd[1:])} (broker RSS before {before / 1024:.1f} MiB)")
    cpu0 = broker.cpu_seconds()
    sampler = RssSampler(broker)
    sampler.start()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    on_cleanup(lambda: p.poll() is None and p.kill())
    lines = []
    ready = threading.Event()   # set on BACKLOG_READY or on EOF
    got_ready = []
    errs = []

    def reader():
        for line in p.stdout:
            lines.append(line)
            if line.startswith("BACKLOG_READY"):
                got_ready.append(time.monotonic())
                ready.set()
        ready.set()

    def err_reader():
        for line in p.stderr:
            errs.append(line)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    th2 = threading.Thread(target=err_reader, daemon=True)
    th2.start()
    limit = max(600.0, n / 1000.0)   # publishing phase: at least 1000 msgs/s
    if not ready.wait(limit) or not got_ready:
        p.kill()
        p.wait()
        th.join(5)
        th2.join(5)
        sampler.finish()
        res = parse_result("".join(lines))
        raise BenchFailure(f"{sc['name']}: backlog not built: "
                           f"{res.get('error') if res else ''.join(errs).strip() or 'timeout'}")
    publish_wall = got_ready[0] - t0
    # Messages are queued and confirmed; the broker holds them now. Sample while holding.
    held = []
    end = time.monotonic() + args.settle
    while True:
        held.append(broker.rss_kib())
        if time.monotonic() >= end:
            break
        time.sleep(0.25)
    peak_backlog = max(sampler.peak, max(held))
    held_rss = held[-1]
    cpu_pub = broker.cpu_seconds() - cpu0
    try:
        p.stdin.write("drain\n")
        p.stdin.flush()
        p.stdin.close()
    except OSError:
        pass
    try:
        p.wait(timeout=max(300.0, n / 1000.0) + 4 * args.timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        sampler.finish()
        raise BenchFailure(f"{sc['name']}: mqnode-bench did not finish draining")
    wall = time.monotonic() - t0
    peak = sampler.finish()
    cpu = broker.cpu_seconds() - cpu0
    th.join(5)
    th2.join(5)
    sys.stderr.write("".join(errs))
    if args.verbose:
        sys.stderr.write("".join(lines))
    res = parse_result("".join(lines))
    if res is None:
        raise BenchFailure(f"{sc['name']}: no RESULT line (exit {p.returncode}): {''.join(errs)}")
    if p.returncode != 0 or not res.get("ok"):
        raise BenchFailure(f"{sc['name']}: mqnode-bench reported an error: {res.get('error', ''.join(errs).strip())}")
    after = settle_rss(broker, args.settle)
    res.update({
        "rss_before_kib": before, "rss_backlog_peak_kib": peak_backlog, "rss_backlog_held_kib": held_rss,
        "rss_after_drain_kib": after, "bytes_per_queued_msg": (held_rss - before) * 1024.0 / n,
        "broker_cpu_pct": 100.0 * cpu / wall if wall > 0 else 0.0,
        "broker_cpu_publish_pct": 100.0 * cpu_pub / publish_wall if publish_wall > 0 else 0.0,
        "broker_peak_rss_kib": peak,
    })
    log(f"{broker.name}: {sc['name']}: RSS {before / 1024:.0f} MiB before, peak {peak_backlog / 1024:.0f} MiB "
        f"while {n} queued (held {held_rss / 1024:.0f} MiB = {res['bytes_per_queued_msg']:.0f} B/msg), "
        f"{after / 1024:.0f} MiB after drain; publish+confirm {res['publish_rate']:.0f} msgs/s, drain "
        f"{res['drain_rate']:.0f} msgs/s (broker CPU {res['broker_cpu_pct']:.0f}%)")
    return res


def run_one(args, broker, sc):
    if sc["kind"] == "idle":
        return run_idle(args, broker)
    if sc["kind"] == "backlog":
        return run_backlog(args, broker, sc)
    return run_flow(args, broker, sc)


def run_broker(args, broker, scenarios):
    """Start broker, run scenarios, stop broker. Returns {name: result or {'error': ...}}."""
    results = {}
    broker.start()
    try:
        results["_startup"] = {"rss_kib": settle_rss(broker, args.settle),
                               "processes": tree_description(broker.pid)}
        log(f"{broker.name}: RSS after start {results['_startup']['rss_kib'] / 1024:.1f} MiB")
        for sc in scenarios:
            if not broker.alive():
                results[sc["name"]] = {"error": f"{broker.name} is not running any more"}
                continue
            runs = []
            err = None
            reps = 1 if sc["kind"] in ("idle", "backlog") else args.repeat
            for _ in range(reps):
                try:
                    runs.append(run_one(args, broker, sc))
                except BenchFailure as e:
                    err = str(e)
                    log(f"{broker.name}: {sc['name']}: FAILED: {err}")
                    break
                time.sleep(args.pause)
            if err:
                results[sc["name"]] = {"error": err}
            else:
                results[sc["name"]] = median_result(runs)
        if not broker.alive():
            log(f"{broker.name} died during the run; log: {broker.log_path}\n{tail(broker.log_path)}")
    finally:
        broker.stop()
    return results


def median_result(runs):
    if len(runs) == 1:
        return runs[0]
    key = ("lat_p99_us" if "lat_p99_us" in runs[0] else "msgs_per_sec" if "msgs_per_sec" in runs[0]
           else "kib_per_connection")
    ordered = sorted(runs, key=lambda r: r[key])
    med = dict(ordered[len(ordered) // 2])
    med["runs"] = [r[key] for r in runs]
    return med


# ---------------------------------------------------------------------------
# Report

def fmt_num(v, unit):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if unit in ("MiB", "KiB"):
        return f"{v:,.1f} {unit}"
    if unit == "us":
        return f"{v:,.0f} µs"
    return f"{v:,.0f}"


def ratio(mq, rb, better):
    if better is None or not isinstance(mq, (int, float)) or not isinstance(rb, (int, float)):
        return "—"
    num, den = (mq, rb) if better == "high" else (rb, mq)
    if den <= 0:
        return "—"
    return f"{num / den:.2f}×"


def build_rows(args, results):
    """Rows as dicts: label, mqnode, rabbitmq, better, unit, table ("main" or "batched") and, for
    flow rows, mqnode_per_cpu / rabbitmq_per_cpu (messages per broker CPU-second)."""
    mq = results.get("mqnode", {})
    rb = results.get("rabbitmq", {})
    rows = []

    def get(res, name, field, scale=1.0):
        r = res.get(name)
        if r is None:
            return None
        if "error" in r:
            return "FAILED"
        v = r.get(field)
        return None if v is None else v * scale

    def row(label, name, field, better, unit, scale=1.0, table="main", per_cpu=False):
        r = {"label": label, "mqnode": get(mq, name, field, scale), "rabbitmq": get(rb, name, field, scale),
             "better": better, "unit": unit, "table": table}
        if per_cpu:
            r["mqnode_per_cpu"] = get(mq, name, "msgs_per_broker_cpu_s")
            r["rabbitmq_per_cpu"] = get(rb, name, "msgs_per_broker_cpu_s")
        rows.append(r)

    row("RSS after start (MiB, lower is better)", "_startup", "rss_kib", "low", "MiB", 1 / 1024)
    for sc in args.scenarios:
        n = sc["name"]
        if sc["kind"] == "idle":
            row(f"idle: memory per connection, {args.connections} conns (KiB, lower is better)", n,
                "kib_per_connection", "low", "KiB")
            row("idle: connection setup rate (conn/s)", n, "open_rate", "high", "")
        elif sc["kind"] == "backlog":
            lab = sc["label"].format(count=f"{args.backlog_count:,}")
            row(f"{lab}: peak RSS while queued (MiB, lower is better)", n, "rss_backlog_peak_kib", "low", "MiB",
                1 / 1024)
            row(f"{lab}: RSS held with backlog, {args.settle:g} s after the last confirm (MiB)", n,
                "rss_backlog_held_kib", "low", "MiB", 1 / 1024)
            row(f"{lab}: publish rate, confirms window 1000, no consumer (msgs/s)", n, "publish_rate", "high", "")
            row(f"{lab}: drain rate, manual ack (msgs/s)", n, "drain_rate", "high", "")
        elif sc["kind"] == "latency":
            lab = sc["label"].format(rate=f"{args.latency_rate:,.0f}")
            for pct, field in (("p50", "lat_p50_us"), ("p99", "lat_p99_us"), ("p99.9", "lat_p999_us"),
                               ("max", "lat_max_us")):
                row(f"{lab}: {pct} (µs, lower is better)", n, field, "low", "us")
            row(f"{lab}: generator's worst send lateness (µs; noise indicator, no ratio)", n, "max_send_lag_us",
                None, "us")
            if "--confirm-window" in sc["args"]:
                row(f"{lab}: sends that waited for a full confirm window (count, no ratio)", n,
                    "window_full_waits", None, "")
        else:
            table = sc.get("table", "main")
            if sc["args"][0] == "fanout":
                row(f"{sc['label']} (deliveries/s)", n, "deliveries_per_sec", "high", "", table=table)
                row(f"{sc['label']} (msgs/s = deliveries/s / 10)", n, "msgs_per_sec", "high", "", table=table,
                    per_cpu=True)
            else:
                row(f"{sc['label']} (msgs/s)", n, "msgs_per_sec", "high", "", table=table, per_cpu=True)
            if "--confirm-window" in sc["args"]:
                row(f"{sc['label']} (publish rate incl. confirms, msgs/s)", n, "publish_rate", "high", "",
                    table=table)
    return rows


def markdown(args, results):
    rows = build_rows(args, results)
    out = []
    for table, title in (("main", "One message per send() (rabbitmq-c's amqp_basic_publish where it says so):"),
                         ("batched", "Batched generator, 64 pre-encoded messages per send() (no real client "
                                     "writes like this):")):
        mine = [r for r in rows if r["table"] == table]
        if not mine:
            continue
        if out:
            out.append("")
        out.append(title)
        out.append("")
        out.append("| scenario | mqnode | RabbitMQ | ratio | mqnode msgs per broker CPU-s | RabbitMQ msgs per broker "
                   "CPU-s | ratio |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for r in mine:
            m, rb = r["mqnode"], r["rabbitmq"]
            cells = [r["label"], fmt_num(m, r["unit"]), fmt_num(rb, r["unit"]), ratio(m, rb, r["better"])]
            if "mqnode_per_cpu" in r:
                mc, rc = r["mqnode_per_cpu"], r["rabbitmq_per_cpu"]
                cells += [fmt_num(mc, ""), fmt_num(rc, ""), ratio(mc, rc, "high")]
            else:
                cells += ["", "", ""]
            out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("ratio = mqnode / RabbitMQ for rates, RabbitMQ / mqnode for memory and latency; > 1 means mqnode "
               "is better. msgs per broker CPU-s = messages received (fanout: published) / the broker's CPU "
               "seconds over the run.")
    mode = f"--count {args.count}" if args.count else f"{args.seconds:g} s of publishing"
    out.append(f"Flow scenarios: {mode} per run, {args.producers} producer / {args.consumers} consumer "
               f"connection(s) unless the label says 8 (fanout: 1 producer, "
               f"10 consumer connections), prefetch {args.prefetch}, max-lag {args.max_lag}, each message acked "
               f"individually in manual-ack runs, median of {args.repeat} run(s). tp-*/fanout: non-persistent; "
               f"persist-confirm, backlog and *-persistent: delivery-mode 2 to a durable queue with publisher "
               f"confirms (at most 1000 unconfirmed). Latency: {args.latency_rate:g} msg/s, 1 producer, 1 consumer "
               f"(manual ack, prefetch {args.prefetch}), {args.latency_seconds:g} s measured after "
               f"{args.latency_warmup:g} s warm-up. "
               f"Machine: {os.cpu_count()} CPUs, {platform.platform()}.")
    # Details: broker CPU and memory during each flow scenario.
    detail = []
    for sc in args.scenarios:
        if sc["kind"] == "idle":
            continue
        cells = []
        for key in ("mqnode", "rabbitmq"):
            r = results.get(key, {}).get(sc["name"])
            if r is None:
                cells += ["—", "—", "—"]
            elif "error" in r:
                cells += ["FAILED", "—", "—"]
            else:
                cells += [f"{r['broker_cpu_pct']:.0f}%", f"{r['broker_peak_rss_kib'] / 1024:.0f} MiB",
                          f"{r['bench_cpu_pct']:.0f}%"]
        detail.append(f"| {sc['name']} | " + " | ".join(cells) + " |")
    if detail:
        out.append("")
        out.append("| scenario | mqnode CPU | mqnode peak RSS | bench CPU | RabbitMQ CPU | RabbitMQ peak RSS | bench CPU |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        out += detail
        out.append("")
        out.append("CPU = % of one core over the scenario (broker: whole process tree; bench: mqnode-bench "
                   "process). Peak RSS sampled every 0.2 s.")
    errors = []
    for key, res in results.items():
        for name, r in res.items():
            if isinstance(r, dict) and "error" in r:
                errors.append(f"- {key} {name}: " + str(r["error"]).rstrip().replace("\n", "\n      "))
    if errors:
        out.append("")
        out.append("Failures:")
        out += errors
    return "\n".join(out)


# ---------------------------------------------------------------------------

def select_scenarios(only):
    if not only:
        return list(SCENARIOS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    alias = {"throughput": ("tp-", "tp8-")}
    names = {sc["name"] for sc in SCENARIOS}
    picked = []
    for sc in SCENARIOS:
        for w in wanted:
            # An exact name selects only itself (tp-16B-noack, not also tp-16B-noack-lib).
            prefixes = (w,) if w in names else alias.get(w, (w,))
            if sc["name"] == w or (w not in names and sc["name"].startswith(prefixes)):
                picked.append(sc)
                break
    if not picked:
        names = ", ".join(s["name"] for s in SCENARIOS)
        raise SystemExit(f"run.py: --only {only!r} matches no scenario (have: {names}; 'throughput' = all tp-* and tp8-*)")
    return picked


def find_bench_bin():
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(here, "..", "build", "bench", "mqnode-bench"),
                 os.path.join(here, "build", "mqnode-bench")):
        if os.access(cand, os.X_OK):
            return os.path.normpath(cand)
    return shutil.which("mqnode-bench")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mqnode-bin", help="mqnode binary (started as BIN --config CFG --data-dir DIR)")
    ap.add_argument("--mqnode-arg", action="append", default=[], help="extra argument for mqnode (repeatable)")
    ap.add_argument("--bench-bin", default=None, help="mqnode-bench binary (default: build/bench/mqnode-bench)")
    ap.add_argument("--seconds", type=float, default=10.0, help="publish duration per flow run (default 10)")
    ap.add_argument("--count", type=int, default=0, help="fixed message count per flow run instead of --seconds")
    ap.add_argument("--only", help="comma-separated scenario names or prefixes: idle, throughput (= tp-*), "
                                   + ", ".join(s["name"] for s in SCENARIOS))
    ap.add_argument("--skip-rabbit", action="store_true", help="do not run RabbitMQ")
    ap.add_argument("--skip-mqnode", action="store_true", help="do not run mqnode")
    ap.add_argument("--json", metavar="OUT", help="also write all results as JSON to OUT")
    ap.add_argument("--connections", type=int, default=1000, help="idle: number of connections (default 1000)")
    ap.add_argument("--producers", type=int, default=1, help="throughput: producer connections (default 1)")
    ap.add_argument("--consumers", type=int, default=1, help="throughput: consumer connections (default 1)")
    ap.add_argument("--prefetch", type=int, default=100, help="consumer prefetch (default 100)")
    ap.add_argument("--max-lag", type=int, default=50000, help="producer may lead the consumer by this many "
                                                               "messages (default 50000)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per flow scenario; the median is reported "
                                                          "(backlog always runs once)")
    ap.add_argument("--backlog-count", type=int, default=1000000, help="backlog-1M: messages (default 1000000)")
    ap.add_argument("--latency-rate", type=float, default=5000, help="latency-*: msg/s (default 5000)")
    ap.add_argument("--latency-seconds", type=float, default=20, help="latency-*: measured seconds (default 20)")
    ap.add_argument("--latency-warmup", type=float, default=3, help="latency-*: warm-up seconds (default 3)")
    ap.add_argument("--timeout", type=float, default=15.0, help="bench no-progress / network timeout (s)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to let RSS settle before sampling")
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between scenarios")
    ap.add_argument("--rabbitmq-server", default=RABBITMQ_SERVER)
    ap.add_argument("--rabbitmqctl", default=RABBITMQCTL)
    ap.add_argument("--keep-tmp", action="store_true", help="keep broker temp dirs (logs) after the run")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the generator's own output")
    args = ap.parse_args()

    args.scenarios = select_scenarios(args.only)
    if args.skip_mqnode and args.skip_rabbit:
        ap.error("nothing to do: both --skip-mqnode and --skip-rabbit")
    if not args.skip_mqnode:
        if not args.mqnode_bin:
            ap.error("--mqnode-bin is required (or --skip-mqnode)")
        if not os.access(args.mqnode_bin, os.X_OK):
            ap.error(f"--mqnode-bin {args.mqnode_bin}: not an executable")
        args.mqnode_bin = os.path.abspath(args.mqnode_bin)
    args.bench_bin = args.bench_bin or find_bench_bin()
    if not args.bench_bin or not os.access(args.bench_bin, os.X_OK):
        ap.error("mqnode-bench not found; build it (cmake -DMQNODE_BENCH=ON) and pass --bench-bin")
    args.bench_bin = os.path.abspath(args.bench_bin)
    if not args.skip_rabbit and not os.access(args.rabbitmq_server, os.X_OK):
        ap.error(f"{args.rabbitmq_server} not found (apt-get install rabbitmq-server, or --skip-rabbit)")

    # Brokers and the bench need more descriptors than the default for idle.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.connections * 2 + 1024))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < args.connections + 256:
        log(f"warning: RLIMIT_NOFILE hard limit {hard} is low for {args.connections} connections")

    signal.signal(signal.SIGTERM, _signal_to_exit)
    signal.signal(signal.SIGHUP, _signal_to_exit)
    atexit.register(run_cleanups)

    results = {}
    rc = 0
    try:
        plan = []
        if not args.skip_mqnode:
            plan.append(("mqnode", lambda: MqnodeBroker(args.mqnode_bin, args.keep_tmp, args.mqnode_arg)))
        if not args.skip_rabbit:
            plan.append(("rabbitmq", lambda: RabbitBroker(args.rabbitmq_server, args.rabbitmqctl, args.keep_tmp)))
        for key, make in plan:
            try:
                results[key] = run_broker(args, make(), args.scenarios)
            except BenchFailure as e:
                log(f"{key}: FAILED: {e}")
                results[key] = {s["name"]: {"error": f"broker start failed: {str(e).splitlines()[0]}"}
                                for s in args.scenarios}
                results[key]["_startup"] = {"error": str(e)}
                rc = 1
            finally:
                run_cleanups()
    except KeyboardInterrupt as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); cleaning up")
        run_cleanups()
        return 130

    table = markdown(args, results)
    print(table, flush=True)
    if args.json:
        doc = {
            "params": {k: getattr(args, k) for k in ("seconds", "count", "connections", "producers", "consumers",
                                                       "prefetch", "max_lag", "repeat", "timeout",
                                                       "backlog_count", "latency_rate", "latency_seconds",
                                                       "latency_warmup")},
            "scenarios": [s["name"] for s in args.scenarios],
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "results": results,
            "table": build_rows(args, results),
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        log(f"wrote {args.json}")
    for res in results.values():
        if any(isinstance(r, dict) and "error" in r for r in res.values()):
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
