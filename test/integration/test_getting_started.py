"""docs/getting-started.md, run: every command of its code blocks that can run on one machine
is run, in order, by one shell in a private network namespace with a private /tmp (so the
page's port 5672 and /tmp/mqnode-try are this run's own), with `mqnode` the binary under
test; each command that cannot run here is listed below with the reason. A command added to
the page without being run or listed fails the test. mqnode only."""

import os
import shutil
import signal
import subprocess

import pytest

from brokers import target
from docs_text import code_lines

pytestmark = [
    pytest.mark.skipif(target() != "mqnode", reason="mqnode's own docs"),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a network namespace"),
]

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PAGE = os.path.join(ROOT, "docs", "getting-started.md")
BIN = os.path.abspath(os.environ.get("MQNODE_BIN", ""))

HOST_INSTALL = "installs on this machine, outside the test (test_deb.py installs the package into a scratch root)"
THREE_HOSTS = "needs the three hosts mq1..mq3, their systemd and the network of the example addresses"
NOT_RUN = {
    "./build.sh deb": "the release build and package; ./build.sh test builds them, test_deb.py checks the package",
    "dpkg -i build/mqnode_*.deb": HOST_INSTALL,
    "./build.sh build": "the release build; ./build.sh test makes it before the integration tests",
    "install -m 0640 -g mqnode conf/seed/mq1.json /etc/mqnode/mqnode.json": HOST_INSTALL,
    "echo MQNODE_ROLE=disc,lb,vip >> /etc/default/mqnode": HOST_INSTALL,
    "systemctl disable --now mqnode.service": THREE_HOSTS,
    "systemctl enable --now mqnode-vip.service": THREE_HOSTS,
    "scp -p /var/lib/mqnode/.cookie mq2:/var/lib/mqnode/.cookie": THREE_HOSTS,
    "scp -p /var/lib/mqnode/.cookie mq3:/var/lib/mqnode/.cookie": THREE_HOSTS,
    "chown mqnode:mqnode /var/lib/mqnode/.cookie": THREE_HOSTS,
    "mqnode ctl stop_app": THREE_HOSTS + " (the netns cluster tests run join_cluster)",
    "mqnode ctl reset": THREE_HOSTS,
    "mqnode ctl join_cluster --ram mq1": THREE_HOSTS,
    "mqnode ctl start_app": THREE_HOSTS,
    "mqnode ctl cluster_status": THREE_HOSTS,
    "ip -brief address show ens33": THREE_HOSTS,
    "curl -su admin:65jVHPhFAjgAAiWQ 'http://192.168.188.200:8080/haproxy;csv'": THREE_HOSTS,
    "amqp-publish -u amqp://admin:ngHxK52ubCqwnjsl@192.168.188.200:1234 -r hello -b 'through the VIP'": THREE_HOSTS,
}
# Run only when the release build is there (./build.sh test makes it first).
NEEDS_RELEASE_BUILD = {"build/app/mqnode version"}


def test_every_command_of_the_page_is_run_or_says_why_not(tmp_path):
    commands = code_lines(PAGE)
    assert [c for c in NOT_RUN if c not in commands] == [], "NOT_RUN lists commands the page no longer shows"
    run = [c for c in commands if c not in NOT_RUN]
    if not os.path.exists(os.path.join(ROOT, "build", "app", "mqnode")):
        run = [c for c in run if c not in NEEDS_RELEASE_BUILD]
    assert any(c.startswith("amqp-get") for c in run)
    # The page's `mqnode` is the binary under test: its directory goes first in PATH (not a
    # symlink under /tmp, which the private /tmp hides).
    assert os.path.basename(BIN) == "mqnode", "MQNODE_BIN must be named mqnode for this test"
    # Each command is echoed (set -x) and the first failure ends the script (set -e).
    script = "\n".join(["set -ex", "mount -t tmpfs tmpfs /tmp", "ip link set lo up", "cd '%s'" % ROOT] + run)
    # Output to files, not pipes: a node the page left running must not hold the test.
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(["unshare", "--net", "--mount", "--fork", "sh", "-c", script],
                                env=dict(os.environ, PATH="%s:%s" % (os.path.dirname(BIN), os.environ["PATH"])),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        try:
            proc.wait(timeout=80)
        finally:
            # A node the page started in the background is gone with its process group.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out_path.read_text(), err_path.read_text())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hello, mqnode" in r.stdout
    assert "config valid for roles disc,lb,vip" in r.stdout
