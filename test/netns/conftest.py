"""Network-namespace fixtures: a veth pair between the root namespace (broker side)
and a private namespace (client side), addresses in 10.213.N.0/30 only.

Needs root and iproute2; otherwise every test here is skipped with the reason.
"""

import os
import random
import shutil
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SUPPORT = os.path.join(HERE, "..", "support")
INTEGRATION = os.path.join(HERE, "..", "integration")
sys.path.insert(0, SUPPORT)

import brokers  # noqa: E402

TIME_LIMIT = 120


@pytest.fixture(autouse=True)
def _time_limit():
    def on_alarm(signum, frame):
        raise TimeoutError("netns test exceeded %ds" % TIME_LIMIT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TIME_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=15, check=check)


class NetNS:
    def __init__(self):
        pid = os.getpid()
        self.name = "mqt%d" % pid
        self.veth_host = ("mqh%d" % pid)[:15]
        self.veth_ns = ("mqn%d" % pid)[:15]
        used = _ip("-4", "-o", "addr", "show").stdout
        rnd = random.Random()
        for _ in range(50):
            n = rnd.randint(1, 254)
            if ("10.213.%d." % n) not in used:
                break
        else:
            raise RuntimeError("no free 10.213.N.0/30 subnet")
        self.host_ip = "10.213.%d.1" % n
        self.ns_ip = "10.213.%d.2" % n
        self.created = []

    def create(self):
        _ip("netns", "add", self.name)
        self.created.append("netns")
        _ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
        self.created.append("veth")
        _ip("link", "set", self.veth_ns, "netns", self.name)
        _ip("addr", "add", self.host_ip + "/30", "dev", self.veth_host)
        _ip("link", "set", self.veth_host, "up")
        _ip("-n", self.name, "addr", "add", self.ns_ip + "/30", "dev", self.veth_ns)
        _ip("-n", self.name, "link", "set", self.veth_ns, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def destroy(self):
        if "veth" in self.created:
            _ip("link", "del", self.veth_host, check=False)
        if "netns" in self.created:
            _ip("netns", "del", self.name, check=False)
        self.created = []

    def run_python(self, code, timeout=60):
        """Run /usr/bin/python3 -c CODE inside the namespace (PYTHONPATH: test helpers)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([INTEGRATION, SUPPORT])
        return subprocess.run(["ip", "netns", "exec", self.name, "/usr/bin/python3", "-c", code],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=env)


def _remove_stale():
    """Delete namespaces/veths left by an earlier run of this suite that was killed
    (names carry the pid of the pytest process that made them)."""
    import re
    listing = _ip("netns", "list", check=False).stdout
    for m in re.finditer(r"^mqt(\d+)\b", listing, re.M):
        pid = int(m.group(1))
        if pid == os.getpid() or os.path.exists("/proc/%d" % pid):
            continue
        _ip("link", "del", ("mqh%d" % pid)[:15], check=False)
        _ip("netns", "del", "mqt%d" % pid, check=False)


@pytest.fixture(scope="module")
def netns():
    if os.geteuid() != 0:
        pytest.skip("network namespace tests need root (ip netns / veth)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 'ip' command not installed")
    _remove_stale()
    ns = NetNS()
    try:
        ns.create()
    except subprocess.CalledProcessError as e:
        ns.destroy()
        pytest.skip("cannot create a network namespace here: %s" % (e.stderr or e))
    try:
        yield ns
    finally:
        ns.destroy()


@pytest.fixture(scope="module")
def remote_broker(netns):
    """A broker listening only on the root-side veth address (not on loopback)."""
    b = brokers.start_broker(host=netns.host_ip, prefix="mqtest-netns-")
    yield b
    b.stop()
    problems = b.problems()
    if problems:
        pytest.fail("netns broker: %s (workdir kept: %s)\n%s"
                    % ("; ".join(problems), b.workdir, b.describe_failure()), pytrace=False)
    shutil.rmtree(b.workdir, ignore_errors=True)
