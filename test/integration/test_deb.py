"""The Debian package (packaging/deb/build-deb.sh): built from the binary under test with
dpkg-deb, its control data and contents are what the layout promises, and it installs into a
scratch root with dpkg itself (`dpkg --root --force-script-chrootless`: the maintainer
scripts run with DPKG_ROOT set, the host's own users and files are never touched): the
postinst makes the `mqnode` system user and its directories, the installed binary validates
the installed config and serves AMQP, the installed units pass `systemd-analyze verify`,
remove keeps a changed conffile and purge takes the rest. mqnode only."""

import os
import re
import shutil
import signal
import stat
import subprocess

import pika
import pytest

from brokers import free_port, port_open, target
from helpers import wait_until

pytestmark = [
    pytest.mark.skipif(target() != "mqnode", reason="packages mqnode"),
    pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="dpkg-deb is not installed"),
    # Packing the sanitizer build (when there is no release build) takes a minute or two.
    pytest.mark.time_limit(300),
]

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_DEB = os.path.join(HERE, "..", "..", "packaging", "deb", "build-deb.sh")
# The release build when there is one (./build.sh test makes it), else the test build.
BIN = os.environ.get("MQNODE_RELEASE_BIN") or os.environ.get("MQNODE_BIN", "")


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    r = subprocess.run([BUILD_DEB, BIN, str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    assert os.path.basename(path) == "mqnode_%s_%s.deb" % (version(), arch())
    return path


def version():
    return subprocess.run([BIN, "version"], capture_output=True, text=True, check=True).stdout.split()[1]


def arch():
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def dpkg_deb(*args):
    return subprocess.run(["dpkg-deb"] + list(args), capture_output=True, text=True, check=True, timeout=60).stdout


def test_control_data(deb):
    info = dpkg_deb("-I", deb)
    fields = dict(re.findall(r"^ (\w[\w-]*): (.*)$", info, re.M))
    assert fields["Package"] == "mqnode" and fields["Version"] == version() and fields["Architecture"] == arch()
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert "adduser" in depends
    assert any(re.fullmatch(r"libc6 \(>= [0-9.]+\)", d) for d in depends), depends
    assert any(d.startswith("libsqlite3-0 (>= ") for d in depends), depends
    assert dpkg_deb("--info", deb, "conffiles").split() == ["/etc/mqnode/mqnode.json", "/etc/default/mqnode", "/etc/logrotate.d/mqnode"]
    for script in ("postinst", "prerm", "postrm"):
        assert re.search(r"\b%s\b" % script, info), info


def test_contents(deb):
    listing = dpkg_deb("-c", deb)
    entries = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        entries[path.split(" -> ")[0].lstrip(".")] = (mode, owner)
    expected = {
        "/usr/sbin/mqnode": "-rwxr-xr-x",
        "/etc/mqnode/mqnode.json": "-rw-r--r--",
        "/etc/default/mqnode": "-rw-r--r--",
        "/etc/logrotate.d/mqnode": "-rw-r--r--",
        "/lib/systemd/system/mqnode.service": "-rw-r--r--",
        "/lib/systemd/system/mqnode-vip.service": "-rw-r--r--",
        "/usr/lib/mqnode/mqnode-import": "-rwxr-xr-x",
        "/usr/share/mqnode/seed/mq1.json": "-rw-r--r--",
        "/usr/share/doc/mqnode/deploy.md": "-rw-r--r--",
        "/usr/share/doc/mqnode/zh-CN/deploy.md": "-rw-r--r--",
    }
    for path, mode in expected.items():
        assert path in entries, "%s missing from:\n%s" % (path, listing)
        assert entries[path] == (mode, "root/root"), (path, entries[path])
    # The binary is stripped (the image test checks the size; here: no debug sections).
    sections = subprocess.run(["sh", "-c", "dpkg-deb --fsys-tarfile '%s' | tar -xO ./usr/sbin/mqnode | "
                               "readelf -S --wide -" % deb], capture_output=True, text=True)
    if sections.returncode == 0:
        assert ".debug_info" not in sections.stdout


def scratch_root(tmp_path):
    """An empty root dpkg can install into: its database, and a passwd/group with root."""
    root = tmp_path / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    return root


def dpkg_root(root, *args):
    return subprocess.run(["dpkg", "--root=%s" % root, "--force-script-chrootless", "--force-depends",
                           "--log=/dev/null"] + list(args), capture_output=True, text=True, timeout=120)


def passwd_entry(root, name):
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == name:
            return f
    return None


def test_installs_runs_and_purges_in_a_scratch_root(deb, tmp_path):
    host_passwd = open("/etc/passwd").read()
    root = scratch_root(tmp_path)
    r = dpkg_root(root, "-i", deb)
    assert r.returncode == 0, r.stdout + r.stderr

    user = passwd_entry(root, "mqnode")
    assert user, (root / "etc/passwd").read_text()
    uid, gid, home, shell = int(user[2]), int(user[3]), user[5], user[6]
    assert uid < 1000 and home == "/var/lib/mqnode" and shell == "/usr/sbin/nologin"
    assert "mqnode:x:%d:" % gid in (root / "etc/group").read_text()
    for d in ("var/lib/mqnode", "var/log/mqnode"):
        st = (root / d).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o750), d
    conf = root / "etc/mqnode/mqnode.json"
    st = conf.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o640)
    assert open("/etc/passwd").read() == host_passwd, "the host's users are not touched"

    mqnode = str(root / "usr/sbin/mqnode")
    r = subprocess.run([mqnode, "--check-config", str(conf), "--role", "disc"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "config valid" in r.stdout, r.stdout + r.stderr

    # Installing twice is harmless: the user is made once.
    r = dpkg_root(root, "-i", deb)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "etc/passwd").read_text().count("\nmqnode:") == 1

    # remove keeps a changed conffile; purge removes it, the data and the logs.
    conf.write_text(conf.read_text() + "\n// changed by the operator\n")
    (root / "var/lib/mqnode/mqnode.db").write_text("data")
    r = dpkg_root(root, "-r", "mqnode")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (root / "usr/sbin/mqnode").exists()
    assert "changed by the operator" in conf.read_text()
    r = dpkg_root(root, "-P", "mqnode")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not conf.exists() and not (root / "var/lib/mqnode").exists() and not (root / "var/log/mqnode").exists()


def test_the_installed_binary_serves_amqp(deb, tmp_path):
    root = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True, timeout=60)
    port = free_port()
    conf = tmp_path / "mqnode.json"
    conf.write_text('{"broker": {"listeners": [{"bind": "127.0.0.1:%d"}]}}' % port)
    proc = subprocess.Popen([str(root / "usr/sbin/mqnode"), "--config", str(conf), "--data-dir", str(tmp_path / "data")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_open("127.0.0.1", port) or proc.poll() is not None, timeout=30, what="the AMQP port")
        assert proc.poll() is None
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, connection_attempts=1))
        assert conn.channel().queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read().decode()


@pytest.mark.skipif(not shutil.which("systemd-analyze") or not os.path.isdir("/usr/lib/systemd/system"),
                    reason="systemd-analyze (Debian's systemd package) is not installed")
def test_the_installed_units_verify_with_the_installed_binary(deb, tmp_path):
    root = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True, timeout=60)
    # What the units refer to besides the package: the host's targets and /bin/kill.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "bin").mkdir()
    shutil.copy("/bin/kill", root / "bin/kill")
    r = subprocess.run(["systemd-analyze", "verify", "--root=%s" % root, "mqnode.service", "mqnode-vip.service"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
