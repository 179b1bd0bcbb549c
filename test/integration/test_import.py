"""`mqnode import` (the subcommand runs packaging/mqnode-import): the tutorial's files, as they stand on its three
hosts (import_tutorial/hostN, written from the tutorial's text), become mqnode configs that
mqnode accepts for the roles the importer names; what cannot be carried over is listed with
file and line; and the configs behave as the old daemons did:
- haproxy.cfg → the lb listens on the frontend's port and balances static-rr over the
  backend's servers (three real TCP servers on loopback), with the stats page behind the
  same basic auth;
- rabbitmq.conf + definitions.json → a broker on the listener's port where the exported
  users log in with their RabbitMQ password hashes, with their vhosts and policies.
Debian's own HAProxy and keepalived example configs import without a traceback.
mqnode only."""

import base64
import glob
import hashlib
import json
import os
import re
import socket
import stat
import subprocess
import threading
import urllib.request

import pika
import pytest

from brokers import free_port, port_open, target
from helpers import wait_until

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="imports into mqnode's config")

BIN = os.environ.get("MQNODE_BIN", "")
HERE = os.path.dirname(os.path.abspath(__file__))
TUTORIAL = os.path.join(HERE, "import_tutorial")


def run_import(*args):
    return subprocess.run([BIN, "import", *args], capture_output=True, text=True, timeout=60)


def load_commented(path):
    with open(path) as f:
        return json.loads("".join(l for l in f if not l.lstrip().startswith("//")))


def roles_of(path):
    with open(path) as f:
        return re.search(r"^// Run: mqnode --role (\S+)", f.read(), re.M).group(1)


def check_config(path, roles):
    return subprocess.run([BIN, "--check-config", path, "--role", roles], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("host,roles,self_address", [("host1", "disc,lb,vip", "192.168.188.101"),
                                                     ("host2", "ram,lb,vip", "192.168.188.102"),
                                                     ("host3", "ram", None)])
def test_tutorial_hosts_import_to_valid_configs(tmp_path, host, roles, self_address):
    out = str(tmp_path / "mqnode.json")
    args = ["--root", os.path.join(TUTORIAL, host), "-o", out]
    if self_address:
        args += ["--self-address", self_address]
    r = run_import(*args)
    assert r.returncode == 0, r.stderr
    assert roles_of(out) == roles
    c = check_config(out, roles)
    assert c.returncode == 0, (c.stdout, c.stderr, open(out).read())
    cfg = load_commented(out)
    notes = r.stderr

    # The cookie travels beside the config, owner-read-only, as .erlang.cookie was.
    cookie = tmp_path / ".cookie"
    assert cookie.read_text().strip() == "XAUYZMFBHQWERTYZPLMK"
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o400
    # rabbitmq-env.conf and rabbitmq.config.
    n = host[-1]
    assert cfg["node"]["name"] == "rabbit@rabbitmq-" + n
    assert cfg["broker"]["listeners"] == [{"port": 5672}]
    assert cfg["broker"]["loopback_users"] == []
    assert cfg["broker"]["vm_memory_high_watermark"] == 0.4
    assert cfg["broker"]["disk_free_limit_bytes"] == 50000000
    assert cfg["management"] == {"bind": "0.0.0.0:15672"}
    seeds = cfg["cluster"].get("seeds")
    assert seeds is None if host == "host1" else seeds == [s for s in ("rabbit@rabbitmq-1", "rabbit@rabbitmq-2",
                                                                        "rabbit@rabbitmq-3") if not s.endswith(n)]
    assert "rabbitmq.config:9: cluster_partition_handling autoheal" in notes
    assert "rabbitmq-env.conf:3: MNESIA_BASE" in notes
    if host == "host3":
        assert "lb" not in cfg and "vrrp" not in cfg
        return

    # haproxy.cfg, with everything it could not carry named by line.
    lb = cfg["lb"]
    assert lb["frontends"] == [{"name": "server", "bind": "0.0.0.0:1234", "backend": "rabbitmq", "maxconn": 3,
                                "timeout_client_ms": 60000}]
    be = lb["backends"][0]
    assert (be["balance"], be["retries"], be["timeout_connect_ms"], be["timeout_server_ms"]) == ("static-rr", 3, 10000, 60000)
    # inter 2000s means 2000 seconds to HAProxy: kept, and flagged as a probable typo.
    assert (be["check"]["inter_ms"], be["check"]["rise"], be["check"]["fall"]) == (2000000, 2, 3)
    assert "haproxy.cfg:35: inter 2000s is 2000 seconds" in notes and "typo for 2000 ms" in notes
    assert [(s["name"], s["address"]) for s in be["servers"]] == [
        ("rabbitmq%d" % i, "192.168.188.10%d:5672" % i) for i in (1, 2, 3)]
    assert [s["name"] for s in be["servers"] if s.get("local")] == ["rabbitmq" + n]
    assert lb["stats"] == {"bind": "0.0.0.0:80", "uri": "/haproxy", "user": "admin", "password": "123456", "refresh_s": 30}
    for line, word in ((4, "nbproc 4"), (5, "daemon"), (6, "stats socket"), (3, "global maxconn 4000"),
                       (23, "stats auth admin:123456")):
        assert "haproxy.cfg:%d: %s" % (line, word) in notes, notes

    # keepalived.conf: the curl track_script becomes in-process tracking of the lb.
    vi = cfg["vrrp"]["instances"][0]
    assert (vi["name"], vi["interface"], vi["vrid"], vi["version"], vi["advert_int"], vi["auth_pass"], vi["vips"]) == (
        "VI_1", "ens33", 80, 2, 1, "1111", ["192.168.188.200/24"])
    assert vi["track"] == ["lb"] and "track_scripts" not in cfg["vrrp"]
    assert (vi["priority"], vi.get("preempt", True)) == ((100, True) if host == "host1" else (50, False))
    assert "keepalived.conf:6: vrrp_script check_haproxy" in notes and "stops keepalived" in notes
    assert "state %s" % ("MASTER" if host == "host1" else "BACKUP") in notes


class NamedServers:
    """Three TCP servers on loopback; each writes its name to every connection and closes."""

    def __init__(self, n=3):
        self.socks = []
        for i in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            self.socks.append(s)
            threading.Thread(target=self._serve, args=(s, b"s%d" % (i + 1)), daemon=True).start()

    def _serve(self, s, name):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            with c:
                c.sendall(name)

    def ports(self):
        return [s.getsockname()[1] for s in self.socks]

    def close(self):
        for s in self.socks:
            s.close()


def read_name(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        data = b""
        while True:
            chunk = c.recv(64)
            if not chunk:
                return data.decode()
            data += chunk


def start(argv, tmp_path, ports):
    log = open(tmp_path / "mqnode.log", "w")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: all(port_open("127.0.0.1", x) for x in ports) or p.poll() is not None, 20,
                   what="mqnode's ports %s" % ports)
    except Exception:
        p.kill()
        raise
    assert p.poll() is None, open(tmp_path / "mqnode.log").read()
    return p


def stop(p):
    p.terminate()
    assert p.wait(20) == 0


def test_imported_haproxy_cfg_balances_as_haproxy_did(tmp_path):
    """The tutorial's haproxy.cfg with loopback addresses: the imported lb listens on the
    frontend's port, sends connections round the servers in static-rr order, and serves
    the stats page with the same credentials."""
    servers = NamedServers()
    front, stats = free_port(), free_port()
    text = open(os.path.join(TUTORIAL, "host1", "etc", "haproxy", "haproxy.cfg")).read()
    text = text.replace("*:1234", "127.0.0.1:%d" % front).replace("*:80", "127.0.0.1:%d" % stats)
    for i, port in enumerate(servers.ports(), 1):
        text = text.replace("192.168.188.10%d:5672" % i, "127.0.0.1:%d" % port)
    cfg_in = tmp_path / "haproxy.cfg"
    cfg_in.write_text(text)
    out = tmp_path / "mqnode.json"
    r = run_import("--haproxy", str(cfg_in), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert roles_of(str(out)) == "lb"
    cfg = load_commented(str(out))
    cfg["lb"]["frontends"][0]["maxconn"] = 100   # the tutorial's 3, not the point here
    out.write_text(json.dumps(cfg))
    p = start([BIN, "--role", "lb", "--config", str(out), "--data-dir", str(tmp_path / "data")], tmp_path, [front, stats])
    try:
        order = [read_name(front) for _ in range(6)]
        # static-rr: the servers in their file order, round and round.
        first = order.index("s1")
        assert (order[first:] + order[:first])[:3] == ["s1", "s2", "s3"] and order[3:] == order[:3], order
        url = "http://127.0.0.1:%d/haproxy;csv" % stats
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=5)
        assert e.value.code == 401
        req = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"admin:123456").decode()})
        csv = urllib.request.urlopen(req, timeout=5).read().decode()
        rows = [l.split(",") for l in csv.splitlines() if l.startswith("rabbitmq,rabbitmq")]
        assert [r[1] for r in rows] == ["rabbitmq1", "rabbitmq2", "rabbitmq3"], csv
    finally:
        stop(p)
        servers.close()


def rabbit_hash(password, salt=b"\x01\x02\x03\x04"):
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def test_imported_rabbitmq_conf_and_definitions_serve_the_same_users(tmp_path):
    port = free_port()
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text("# rabbitmq.conf, new style\n"
                    "listeners.tcp.default = %d\n"
                    "loopback_users.guest = false\n"
                    "vm_memory_high_watermark.relative = 0.6\n"
                    "disk_free_limit.absolute = 1GB\n"
                    "cluster_partition_handling = pause_minority\n"
                    "log.file.level = info\n" % port)
    defs = tmp_path / "definitions.json"
    defs.write_text(json.dumps({
        "rabbit_version": "3.10.8",
        "users": [{"name": "orders", "password_hash": rabbit_hash("orders-pw"),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "administrator"},
                  {"name": "old", "password_hash": "xyz", "hashing_algorithm": "rabbit_password_hashing_md5", "tags": ""}],
        "vhosts": [{"name": "/"}, {"name": "shop"}],
        "permissions": [{"user": "orders", "vhost": "shop", "configure": ".*", "write": ".*", "read": ".*"}],
        "policies": [{"vhost": "shop", "name": "ttl", "pattern": "^o\\.", "apply-to": "queues",
                      "definition": {"message-ttl": 60000}, "priority": 1}],
        "queues": [{"name": "o.q", "vhost": "shop", "durable": True, "auto_delete": False, "arguments": {}}],
    }))
    out = tmp_path / "mqnode.json"
    r = run_import("--rabbitmq-conf", str(conf), "--definitions", str(defs), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "rabbitmq.conf:6: cluster_partition_handling pause_minority" in r.stderr
    assert "rabbitmq.conf:7: log.file.level is not carried over" in r.stderr
    assert "user old: password hashed with rabbit_password_hashing_md5" in r.stderr
    assert "1 queues: not part of the config" in r.stderr
    cfg = load_commented(str(out))
    assert cfg["broker"]["disk_free_limit_bytes"] == 1000 ** 3
    assert cfg["broker"]["vm_memory_high_watermark"] == 0.6
    cfg["broker"]["disk_free_limit_bytes"] = 1000000    # this machine's disk, not the old host's
    out.write_text(json.dumps(cfg))
    p = start([BIN, "--role", "disc", "--config", str(out), "--data-dir", str(tmp_path / "data")],
              tmp_path, [port])
    try:
        creds = pika.PlainCredentials("orders", "orders-pw")
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, "shop", credentials=creds))
        ch = conn.channel()
        ch.queue_declare("o.q", durable=True)
        ch.basic_publish("", "o.q", b"kept")
        assert ch.basic_get("o.q", auto_ack=True)[2] == b"kept"
        conn.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, "shop",
                                                              credentials=pika.PlainCredentials("orders", "wrong")))
        pol = subprocess.run([BIN, "ctl", "--data-dir", str(tmp_path / "data"), "list_policies", "-p", "shop"],
                             capture_output=True, text=True, timeout=30)
        assert pol.returncode == 0 and "ttl\t^o\\.\tqueues" in pol.stdout, pol.stdout
    finally:
        stop(p)


def test_unreadable_input_is_named_with_its_line(tmp_path):
    bad = tmp_path / "rabbitmq.config"
    bad.write_text("[\n  {rabbit, [\n    {tcp_listeners, [5672]}\n  ]\n].\n")
    r = run_import("--rabbitmq-config", str(bad))
    assert r.returncode == 2 and "rabbitmq.config:5: expected '}', found ']'" in r.stderr, r.stderr
    hap = tmp_path / "haproxy.cfg"
    hap.write_text("frontend f\n    bind *:1\n    mode tcp\n    default_backend nope\n")
    r = run_import("--haproxy", str(hap))
    assert r.returncode == 2 and "uses backend 'nope'" in r.stderr, r.stderr
    ka = tmp_path / "keepalived.conf"
    ka.write_text("vrrp_instance VI_1 {\n  interface eth0\n")
    r = run_import("--keepalived", str(ka))
    assert r.returncode == 2 and "not closed" in r.stderr, r.stderr
    r = run_import("--haproxy", str(tmp_path / "missing.cfg"))
    assert r.returncode == 2 and "missing.cfg: cannot read" in r.stderr, r.stderr


DEBIAN_SAMPLES = sorted(glob.glob("/usr/share/doc/keepalived/samples/keepalived.conf.*") +
                        glob.glob("/usr/share/doc/haproxy/examples/*.cfg"))


def test_debian_example_configs_import(tmp_path):
    """Debian's keepalived and haproxy packages (build.sh installs both) ship example
    configs: every one imports (exit 0) and what it makes is valid for its roles, or the
    importer says why it made nothing."""
    assert len(DEBIAN_SAMPLES) > 20, DEBIAN_SAMPLES
    for sample in DEBIAN_SAMPLES:
        kind = "--keepalived" if "keepalived" in sample else "--haproxy"
        out = tmp_path / (os.path.basename(sample) + ".json")
        r = run_import(kind, sample, "-o", str(out))
        assert r.returncode == 0, (sample, r.stderr)
        assert "Traceback" not in r.stderr
        cfg = load_commented(str(out))
        roles = roles_of(str(out))
        if roles == "disc":   # nothing carried over: every section is listed as such
            assert not cfg and "not carried over" in r.stderr, (sample, r.stderr)
            continue
        c = check_config(str(out), roles)
        assert c.returncode == 0, (sample, c.stderr, open(out).read())


def test_every_argument_goes_to_the_importer():
    r = run_import("--help")
    assert r.returncode == 0, r.stderr
    assert "--self-address" in r.stdout and "--haproxy" in r.stdout
    r = run_import("--no-such-option")
    assert r.returncode == 2 and "--no-such-option" in r.stderr
