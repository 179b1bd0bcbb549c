"""/node/log_file: the node logs to the file instead of stderr; after logrotate's rename a
SIGUSR1 (or a SIGHUP) opens the path again and the log goes on in the new file; a log file
that cannot be opened stops the start with the JSON path and the reason; a reload that finds
/node/log_file (read at start only) changed names it in a warning. mqnode only."""

import json
import os
import signal
import subprocess

import pytest

from brokers import DEFAULT_BROKER, free_port, port_open, target
from helpers import wait_until

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="mqnode's own log file")

BIN = os.environ.get("MQNODE_BIN", "")


def write_config(path, port, log_file):
    path.write_text(json.dumps({"node": {"log_file": str(log_file)},
                                "broker": dict(DEFAULT_BROKER, listeners=[{"bind": "127.0.0.1:%d" % port}])}))


@pytest.fixture
def node(tmp_path):
    port = free_port()
    config = tmp_path / "mqnode.json"
    log = tmp_path / "logs" / "mqnode.log"
    log.parent.mkdir()
    write_config(config, port, log)
    proc = subprocess.Popen([BIN, "--config", str(config), "--data-dir", str(tmp_path / "data")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: port_open("127.0.0.1", port) or proc.poll() is not None, timeout=30, what="the AMQP port")
    assert proc.poll() is None, proc.stderr.read().decode()
    yield proc, config, log, port
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def text(path):
    return path.read_text() if path.exists() else ""


def test_log_goes_to_the_file_and_reopens_after_rotation(node):
    proc, _config, log, _port = node
    assert "starting mqnode" in text(log) and "listening for AMQP" in text(log)
    assert oct(log.stat().st_mode & 0o777) == "0o640"

    rotated = log.with_name("mqnode.log.1")
    os.rename(log, rotated)
    proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: "log file %s opened again" % log in text(log), timeout=20, what="the reopened log")
    assert "opened again" not in text(rotated)

    os.rename(log, log.with_name("mqnode.log.2"))
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: reloading" in text(log), timeout=20, what="the reload's lines in the new file")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "stopped" in text(log)
    # Nothing of the log went to stderr.
    assert "starting mqnode" not in proc.stderr.read().decode()


def test_a_changed_log_file_is_named_in_the_reload_warning(node):
    proc, config, log, port = node
    write_config(config, port, log.with_name("elsewhere.log"))
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload: /node/log_file changed; it applies at the next restart" in text(log),
               timeout=20, what="the restart warning")
    assert not log.with_name("elsewhere.log").exists()
    assert port_open("127.0.0.1", port)


def test_a_log_file_that_cannot_be_opened_stops_the_start(tmp_path):
    config = tmp_path / "mqnode.json"
    write_config(config, free_port(), tmp_path / "no-such-dir" / "mqnode.log")
    r = subprocess.run([BIN, "--config", str(config), "--data-dir", str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "mqnode: cannot start: /node/log_file: cannot open %s: No such file or directory" % (
        tmp_path / "no-such-dir" / "mqnode.log") in r.stderr


def test_sigusr1_without_a_log_file_keeps_serving(broker_factory):
    b = broker_factory()
    b.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: "SIGUSR1: no /node/log_file" in b.stderr_text(), timeout=20, what="the SIGUSR1 line")
    assert b.alive()
