"""The mqnode command line: config validation errors that name the JSON path, the
embedded defaults, hash_password, version and roles. mqnode only: RabbitMQ has another CLI."""

import json
import os
import socket
import subprocess
import time

import pika
import pytest

from brokers import free_port, port_open, target

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="tests mqnode's own command line")

BIN = os.environ.get("MQNODE_BIN", "")


def run(*args, timeout=20):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def config_error(tmp_path, text):
    path = tmp_path / "mqnode.json"
    path.write_text(text)
    p = run("--config", str(path), "--data-dir", str(tmp_path / "data"))
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith("mqnode: config error: "), p.stderr
    return p.stderr.strip().splitlines()[-1][len("mqnode: config error: "):]


@pytest.mark.parametrize("text,expected", [
    ('{"broker": {"listeners": [{"bind": "localhost:5672"}]}}',
     '/broker/listeners/0/bind: expected "address:port" with a numeric IPv4/IPv6 address, '
     'got string "localhost:5672"'),
    ('{"broker": {"heartbeat_s": "60"}}',
     '/broker/heartbeat_s: expected an integer in 0..65535, got string "60"'),
    ('{"broker": {"frame_max": 100}}',
     '/broker/frame_max: expected an integer in 4096..16777216, got number 100'),
    ('{"brokr": {}}', None),
    ('{"node": {"name": 1}}', '/node/name: expected a string, got number 1'),
    ('{"broker": {"users": [{"name": "a", "password": "x"}], "permissions": [{"user": "b"}]}}',
     '/broker/permissions/0/user: expected a user listed in /broker/users, got "b"'),
    ('[1, 2]', '/: expected an object, got array [1,2]'),
])
def test_bad_config_names_the_path(tmp_path, text, expected):
    msg = config_error(tmp_path, text)
    if expected is None:
        assert msg.startswith("/brokr: unknown key (known keys here: "), msg
    else:
        assert msg == expected


def test_invalid_json_and_missing_file(tmp_path):
    msg = config_error(tmp_path, '{"broker": {')
    assert "not valid JSON" in msg
    p = run("--config", str(tmp_path / "nope.json"))
    assert p.returncode == 2 and "cannot open config file" in p.stderr


def test_unknown_and_unbuilt_roles_are_refused():
    p = run("--role", "disc,foo")
    assert p.returncode == 2
    assert "--role: expected a comma list of disc, ram, lb, vip; got \"foo\"" in p.stderr
    p = run("--role", "disc,ram")
    assert p.returncode == 2 and "disc and ram exclude each other" in p.stderr
    p = run("--role", "ram")
    assert p.returncode == 2 and "--role ram: a RAM node is a member of a cluster; add the /cluster section" in p.stderr, \
        p.stderr


def test_version():
    p = run("version")
    assert p.returncode == 0
    assert p.stdout.startswith("mqnode ")


def test_hash_password_works_in_the_config(tmp_path):
    p = run("hash_password", "s3cret")
    assert p.returncode == 0
    h = p.stdout.strip()
    assert h and h != "s3cret"
    port = free_port()
    cfg = {"broker": {"listeners": [{"bind": "127.0.0.1:%d" % port}],
                      "users": [{"name": "ops", "password_hash": h}],
                      "permissions": [{"user": "ops"}]}}
    (tmp_path / "c.json").write_text("// comments are allowed\n" + json.dumps(cfg))
    proc = subprocess.Popen([BIN, "--config", str(tmp_path / "c.json"), "--data-dir", str(tmp_path)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 15
        while not port_open("127.0.0.1", port) and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        params = pika.ConnectionParameters("127.0.0.1", port, credentials=pika.PlainCredentials("ops", "s3cret"))
        conn = pika.BlockingConnection(params)
        assert conn.is_open
        conn.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(pika.ConnectionParameters(
                "127.0.0.1", port, credentials=pika.PlainCredentials("ops", "wrong")))
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_defaults_without_config_listen_on_5672(tmp_path):
    # The embedded defaults: port 5672, guest/guest. Skip when another broker holds 5672.
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", 5672))
    except OSError:
        pytest.skip("port 5672 is in use on this machine; the default listener cannot be tested")
    finally:
        s.close()
    proc = subprocess.Popen([BIN, "--data-dir", str(tmp_path)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 15
        while not port_open("127.0.0.1", 5672) and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
        props = conn._impl.server_properties
        assert props["product"] == b"RabbitMQ" or props["product"] == "RabbitMQ"
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", q, b"default")
        assert ch.basic_get(q, auto_ack=True)[2] == b"default"
        conn.close()
        # The default listener is RabbitMQ's [::]:5672: IPv6 too (guest from ::1 is loopback).
        conn = pika.BlockingConnection(pika.ConnectionParameters("::1", 5672))
        assert conn.channel().queue_declare("", exclusive=True).method.queue
        conn.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
