"""conf/seed/mq1..3.json, the tutorial's three hosts as mqnode configs: each is valid for
its roles (`mqnode --check-config`, which reads every section as a start would and binds
nothing) and holds the tutorial's settings; --check-config itself fails on a bad file with
exit 2 and the JSON path. mqnode only."""

import json
import os
import re
import subprocess

import pytest

from brokers import target

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="mqnode's own config files")

BIN = os.environ.get("MQNODE_BIN", "")
SEED = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "seed")
HOSTS = {"mq1": "disc,lb,vip", "mq2": "ram,lb,vip", "mq3": "ram"}


def load_commented(path):
    """The seed files use whole-line // comments only."""
    with open(path) as f:
        return json.loads("".join(l for l in f if not l.lstrip().startswith("//")))


def check(path, roles):
    return subprocess.run([BIN, "--check-config", path, "--role", roles], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_seed_config_is_valid_for_its_roles(host):
    path = os.path.join(SEED, host + ".json")
    with open(path) as f:
        first = f.read(600)
    assert "--role %s" % HOSTS[host] in first, "the header names the roles to run with"
    r = check(path, HOSTS[host])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "config valid" in r.stdout


def test_seed_configs_hold_the_tutorial_settings():
    c = {h: load_commented(os.path.join(SEED, h + ".json")) for h in HOSTS}
    for h, cfg in c.items():
        assert cfg["node"]["name"] == h
        assert "cluster" in cfg
        assert cfg["broker"]["policies"][0]["definition"] == {"ha-mode": "all"}
    assert "lb" not in c["mq3"] and "vrrp" not in c["mq3"]
    for h in ("mq1", "mq2"):
        lb = c[h]["lb"]
        be = lb["backends"][0]
        assert be["balance"] == "static-rr"
        assert be["check"] == {"type": "amqp", "inter_ms": 2000, "rise": 2, "fall": 3}
        assert [s["name"] for s in be["servers"]] == ["rabbitmq1", "rabbitmq2", "rabbitmq3"]
        assert [s["name"] for s in be["servers"] if s.get("local")] == ["rabbitmq" + h[-1]]
        assert lb["frontends"][0]["bind"].endswith(":1234")
        stats = lb["stats"]
        assert stats["uri"] == "/haproxy" and stats["user"] == "admin" and stats["refresh_s"] == 30
        assert stats["password"] != "123456" and len(stats["password"]) >= 12
        vi = c[h]["vrrp"]["instances"][0]
        assert (vi["vrid"], vi["version"], vi["auth_pass"], vi["vips"]) == (80, 2, "1111", ["192.168.188.200/24"])
        assert vi["track"] == ["lb"]
    m, b = c["mq1"]["vrrp"]["instances"][0], c["mq2"]["vrrp"]["instances"][0]
    assert (m["priority"], m.get("preempt", True)) == (100, True)
    assert (b["priority"], b["preempt"]) == (50, False)


def test_seed_user_password_in_the_comment_matches_the_hash(tmp_path):
    """The admin password given in the comment logs in (the hash is of that password)."""
    import hashlib
    import base64
    path = os.path.join(SEED, "mq1.json")
    text = open(path).read()
    password = re.search(r"generated\s+//\s+for this file: (\S+)\.", text).group(1)
    h = base64.b64decode(load_commented(path)["broker"]["users"][0]["password_hash"])
    assert hashlib.sha256(h[:4] + password.encode()).digest() == h[4:]


def test_check_config_names_the_bad_path(tmp_path):
    cfg = load_commented(os.path.join(SEED, "mq1.json"))
    cfg["lb"]["backends"][0]["check"]["rise"] = 0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    r = check(str(path), "disc,lb,vip")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "/lb/backends/0/check/rise" in r.stderr, r.stderr
    # A ram node needs /cluster: checked as a start would.
    del cfg["cluster"]
    cfg["lb"]["backends"][0]["check"]["rise"] = 2
    path.write_text(json.dumps(cfg))
    r = check(str(path), "ram")
    assert r.returncode == 2 and "/cluster" in r.stderr, (r.stdout, r.stderr)
