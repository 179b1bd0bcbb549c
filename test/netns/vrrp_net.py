"""A private LAN for the VRRP tests: one namespace holding a bridge and N host namespaces,
each with an eth0 on that bridge, addresses 10.214.S.1..N/24 and fd00:214:S::1..N/64 (no
duplicate address detection in these namespaces, so IPv6 addresses, link-local included,
are usable at once). Nothing is created in the root namespace (veths are made directly
inside the namespaces), names carry the pid of the pytest process (mqv-<pid>-...), and
destroy() removes everything even after a failure.

Also: launchers for mqnode (--role vip) and Debian's keepalived inside a host namespace,
a VRRP sniffer and packet injectors (plain Python raw sockets), and the `lan` fixture the
test_vrrp*.py files share.
"""

import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

import brokers  # noqa: E402  (die-with-parent, sanitizer markers)

KEEPALIVED = "/usr/sbin/keepalived"
TCPDUMP = "/usr/bin/tcpdump"


def _run(argv, check=True, timeout=15):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=check)


def remove_stale():
    """Namespaces of an earlier run whose pytest process is gone."""
    for m in re.finditer(r"^(mqv-(\d+)-\S+)", _run(["ip", "netns", "list"], check=False).stdout, re.M):
        pid = int(m.group(2))
        if pid != os.getpid() and not os.path.exists("/proc/%d" % pid):
            _run(["ip", "netns", "del", m.group(1)], check=False)


def wait_for(pred, timeout, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


class Proc:
    """A process started in a namespace, its output in files under the LAN's workdir."""

    def __init__(self, lan, host, argv, name, env=None):
        self.name = name
        self.log_path = os.path.join(lan.workdir, "%s.log" % name)
        self.argv = argv
        full_env = dict(os.environ)
        full_env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        full_env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        full_env.update(env or {})
        self.proc = subprocess.Popen(["ip", "netns", "exec", lan.ns(host)] + argv,
                                     stdin=subprocess.DEVNULL, stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT, env=full_env, start_new_session=True,
                                     preexec_fn=brokers._die_with_parent)
        self.stopped_by_us = False

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            if sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
                self.stopped_by_us = True
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=15):
        """SIGTERM and wait; SIGKILL the group if it does not exit. Returns the status."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        self.stopped_by_us = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def wait_logged(self, text, timeout=10):
        """Waits for <text> in the output. A transition is logged just after its effect (the
        VIP added), which a test may have seen first."""
        try:
            wait_for(lambda: text in self.output(), timeout, what="%r in %s's output" % (text, self.name))
        except AssertionError as e:
            raise AssertionError("%s:\n%s" % (e, self.output()[-4000:])) from None

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Lan:
    def __init__(self, hosts=3):
        self.prefix = "mqv-%d-%d" % (os.getpid(), random.randint(0, 99999))
        self.subnet = random.randint(1, 254)
        self.nhosts = hosts
        self.workdir = tempfile.mkdtemp(prefix="mqv-")
        self.procs = []
        self.created = []

    def ns(self, host):
        return "%s-h%d" % (self.prefix, host) if host else "%s-br" % self.prefix

    def ip(self, host):
        return "10.214.%d.%d" % (self.subnet, host)

    def vip(self, n=100):
        return "10.214.%d.%d" % (self.subnet, n)

    def ip6(self, host):
        return "fd00:214:%x::%d" % (self.subnet, host)

    def vip6(self, n=100):
        return "fd00:214:%x::%d" % (self.subnet, n)

    def link_local(self, host):
        out = _run(["ip", "-n", self.ns(host), "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]).stdout
        return re.findall(r"inet6 (fe80:[0-9a-f:]+)/", out)[0]

    def create(self):
        br = self.ns(0)
        _run(["ip", "netns", "add", br])
        self.created.append(br)
        _run(["ip", "-n", br, "link", "add", "br0", "type", "bridge"])
        # No STP/forwarding delay: ports forward as soon as they are up.
        _run(["ip", "-n", br, "link", "set", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"])
        _run(["ip", "-n", br, "link", "set", "br0", "up"])
        for h in range(1, self.nhosts + 1):
            ns = self.ns(h)
            _run(["ip", "netns", "add", ns])
            self.created.append(ns)
            # Before eth0 exists, so that its link-local address skips DAD too.
            _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0"])
            _run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "p%d" % h, "netns", br])
            _run(["ip", "-n", br, "link", "set", "p%d" % h, "master", "br0", "up"])
            _run(["ip", "-n", ns, "addr", "add", self.ip(h) + "/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "addr", "add", self.ip6(h) + "/64", "dev", "eth0", "nodad"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return self

    def destroy(self):
        for p in self.procs:
            if p.alive():
                p.kill()
        for ns in reversed(self.created):
            _run(["ip", "netns", "del", ns], check=False)
        self.created = []

    def exec(self, host, argv, check=True, timeout=15):
        return _run(["ip", "netns", "exec", self.ns(host)] + argv, check=check, timeout=timeout)

    def addrs(self, host, v6=False):
        out = _run(["ip", "-n", self.ns(host), "-6" if v6 else "-4", "-o", "addr", "show", "dev", "eth0"],
                   check=False).stdout
        return re.findall(r"inet6 ([0-9a-f:]+)/" if v6 else r"inet (\d+\.\d+\.\d+\.\d+)/", out)

    def has(self, host, addr):
        return addr in self.addrs(host, ":" in addr)

    def holders(self, addr):
        return [h for h in range(1, self.nhosts + 1) if self.has(h, addr)]

    def only_holder(self, host, timeout=15, vip=None):
        """Waits until <vip> (default the IPv4 VIP) is on <host> and nowhere else."""
        vip = vip or self.vip()
        wait_for(lambda: self.holders(vip) == [host], timeout,
                 what="VIP %s held by h%d only (holders now %s)" % (vip, host, self.holders(vip)))

    def stays(self, host, seconds, vip=None):
        """<vip> stays on <host> alone for <seconds> (checked throughout)."""
        vip = vip or self.vip()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert self.holders(vip) == [host]
            time.sleep(0.1)

    def start(self, host, argv, name, env=None):
        p = Proc(self, host, argv, name, env)
        self.procs.append(p)
        return p

    # --- mqnode --------------------------------------------------------------------
    def mqnode(self, host, instances, name=None, roles="vip", extra=None):
        name = name or "mqnode-h%d-%d" % (host, len(self.procs))
        return self.start(host, self.mqnode_argv(instances, name, roles, extra), name)

    def mqnode_argv(self, instances, name, roles="vip", extra=None):
        """Writes the config file for <name>; returns the command line."""
        binary = os.environ.get("MQNODE_BIN")
        if not binary:
            raise RuntimeError("MQNODE_BIN is not set")
        cfg = {"vrrp": {"instances": instances}}
        for k, v in (extra or {}).items():
            if k == "vrrp":
                cfg["vrrp"].update(v)  # e.g. track_scripts next to the instances
            else:
                cfg[k] = v
        path = os.path.join(self.workdir, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        data = os.path.join(self.workdir, name + ".data")
        os.makedirs(data, exist_ok=True)
        return [os.path.abspath(binary), "--role", roles, "--config", path, "--data-dir", data,
                "--log-level", "info"]

    def instance(self, priority, version=3, advert_int=0.1, vrid=51, **kw):
        inst = {"name": "VI_1", "interface": "eth0", "vrid": vrid, "version": version,
                "priority": priority, "advert_int": advert_int, "vips": [self.vip() + "/24"]}
        inst.update(kw)
        return inst

    # --- keepalived ----------------------------------------------------------------
    def keepalived(self, host, priority, version=2, advert_int=1, vrid=51, auth_pass=None,
                   nopreempt=False, name=None, vip=None):
        """keepalived with one instance holding <vip> ("a.b.c.d/24" or "x::y/64"; default
        the IPv4 VIP /24)."""
        name = name or "keepalived-h%d-%d" % (host, len(self.procs))
        d = os.path.join(self.workdir, name)
        os.makedirs(d, exist_ok=True)
        lines = [
            "global_defs {",
            "  router_id %s" % name,
            "  vrrp_version %d" % version,
            "  enable_script_security",
            "}",
            "vrrp_instance VI_1 {",
            "  state BACKUP",
            "  interface eth0",
            "  virtual_router_id %d" % vrid,
            "  priority %d" % priority,
            "  advert_int %s" % advert_int,
        ]
        if nopreempt:
            lines.append("  nopreempt")
        if auth_pass:
            lines += ["  authentication {", "    auth_type PASS", "    auth_pass %s" % auth_pass, "  }"]
        lines += ["  virtual_ipaddress {", "    %s dev eth0" % (vip or self.vip() + "/24"), "  }", "}"]
        conf = os.path.join(d, "keepalived.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return self.start(host, [KEEPALIVED, "--dont-fork", "--log-console", "--log-detail", "--vrrp",
                                 "-f", conf, "-p", os.path.join(d, "k.pid"),
                                 "-r", os.path.join(d, "v.pid"), "-c", os.path.join(d, "c.pid")], name)

    # --- packets -------------------------------------------------------------------
    def sniffer(self, host, name="sniffer"):
        """Records every VRRP packet seen on <host>'s eth0 as JSON lines (see sniffed())."""
        return self.start(host, ["/usr/bin/python3", "-u", "-c", SNIFFER], name)

    @staticmethod
    def sniffed(proc):
        out = []
        for line in proc.output().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def inject(self, host, packets):
        """Sends raw IPv4 datagrams (hex strings, IP header included) from <host>'s eth0."""
        code = INJECTOR % json.dumps(packets)
        r = self.exec(host, ["/usr/bin/python3", "-c", code], check=False)
        assert r.returncode == 0, r.stderr

    def inject6(self, host, src, packets, hops=255, dst="ff02::12"):
        """Sends VRRP messages (hex; an IPv6 raw socket adds the header) from <host>'s eth0,
        from its address <src>, with hop limit <hops>."""
        code = INJECTOR6 % (json.dumps(packets), src, hops, dst)
        r = self.exec(host, ["/usr/bin/python3", "-c", code], check=False)
        assert r.returncode == 0, r.stderr


def lan_fixture():
    """The body of the `lan` fixture of the test_vrrp*.py files: a 3-host LAN, destroyed
    afterwards; fails the test if a process crashed, exited on its own or reported a
    sanitizer error."""
    yield from lan_fixture_hosts(3)


def lan_fixture_hosts(hosts):
    """lan_fixture() with <hosts> hosts."""
    import pytest
    if os.geteuid() != 0:
        pytest.skip("namespace tests need root (ip netns, raw sockets)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 'ip' command not installed")
    remove_stale()
    n = Lan(hosts=hosts)
    try:
        n.create()
    except subprocess.CalledProcessError as e:
        n.destroy()
        pytest.skip("cannot create network namespaces here: %s" % (e.stderr or e))
    try:
        yield n
    finally:
        problems = []
        for p in n.procs:
            out = p.output()
            if any(m in out for m in brokers.SANITIZER_MARKERS):
                problems.append("%s: sanitizer report" % p.name)
            if p.proc.poll() is not None and not p.stopped_by_us:
                problems.append("%s exited unexpectedly (%s)" % (p.name, p.proc.returncode))
        n.destroy()
        if problems:
            logs = "\n".join("== %s\n%s" % (p.name, p.output()[-4000:]) for p in n.procs)
            pytest.fail("; ".join(problems) + "\n" + logs, pytrace=False)
        shutil.rmtree(n.workdir, ignore_errors=True)


SNIFFER = r"""
import json, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
mreq = struct.pack("4s4si", socket.inet_aton("224.0.0.18"), socket.inet_aton("0.0.0.0"), socket.if_nametoindex("eth0"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
print("ready", flush=True)
while True:
    d = s.recv(2000)
    ihl = (d[0] & 15) * 4
    v = d[ihl:]
    print(json.dumps({"src": socket.inet_ntoa(d[12:16]), "dst": socket.inet_ntoa(d[16:20]),
                      "ttl": d[8], "version": v[0] >> 4, "vrid": v[1], "priority": v[2],
                      "hex": d.hex()}), flush=True)
"""

INJECTOR = r"""
import socket, json
pkts = json.loads(%r)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
for h in pkts:
    b = bytes.fromhex(h)
    s.sendto(b, (socket.inet_ntoa(b[16:20]), 0))
"""


INJECTOR6 = r"""
import socket, json
pkts = json.loads(%r)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 112)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
ifindex = socket.if_nametoindex("eth0")
s.bind((%r, 0, 0, ifindex))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, %d)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
for h in pkts:
    s.sendto(bytes.fromhex(h), (%r, 0, 0, ifindex))
"""


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def vrrp_packet(src, vip, vrid, priority, version=2, advert_int=1, auth_pass=None, ttl=255,
                corrupt_checksum=False, dst="224.0.0.18"):
    """A complete IPv4 datagram carrying one VRRP advert (hex), for the injector."""
    srcb, dstb = socket_aton(src), socket_aton(dst)
    addrs = socket_aton(vip)
    if version == 2:
        auth = (auth_pass or "").encode().ljust(8, b"\0")
        body = struct.pack("!BBBBBBH", 0x21, vrid, priority, 1, 1 if auth_pass else 0, int(advert_int), 0) + addrs + auth
        c = checksum(body)
    else:
        cs = int(round(advert_int * 100))
        body = struct.pack("!BBBBHH", 0x31, vrid, priority, 1, cs & 0x0FFF, 0) + addrs
        c = checksum(srcb + dstb + struct.pack("!BBH", 0, 112, len(body)) + body)
    if corrupt_checksum:
        c ^= 0x5555
    body = body[:6] + struct.pack("!H", c) + body[8:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(body), 0, 0, ttl, 112, 0, srcb, dstb)
    return (hdr + body).hex()


def vrrp6_packet(src, dst, vip, vrid, priority, advert_int=1, corrupt_checksum=False):
    """The VRRPv3 message (hex) of an IPv6 advert from <src> to <dst>, for inject6()."""
    import socket
    s6, d6, addrs = (socket.inet_pton(socket.AF_INET6, a) for a in (src, dst, vip))
    body = struct.pack("!BBBBHH", 0x31, vrid, priority, 1, int(round(advert_int * 100)) & 0x0FFF, 0) + addrs
    c = checksum(s6 + d6 + struct.pack("!I3xB", len(body), 112) + body)
    if corrupt_checksum:
        c ^= 0x5555
    return (body[:6] + struct.pack("!H", c) + body[8:]).hex()


def socket_aton(a):
    import socket
    return socket.inet_aton(a)
