"""`mqnode ctl`: rabbitmqctl's policy commands against a running node. The policy effects
(truncation, expiry, dead-lettering on queues that already exist) and the list output
are checked against RabbitMQ too (AMQP_TARGET=rabbitmq runs rabbitmqctl); restart, exit
codes and the control socket are mqnode's own."""

import json
import os
import signal
import subprocess
import time

import pika
import pytest

from brokers import target
from helpers import drain_get, publish, queue_counts, wait_message_count

MQNODE = target() == "mqnode"
mqnode_only = pytest.mark.skipif(not MQNODE, reason="mqnode's own command line and process")
BIN = os.environ.get("MQNODE_BIN", "")


def ok(p):
    assert p.returncode == 0, "exit %r\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr)
    return p


def rx(name):
    """An anchored pattern for exactly this (unique) queue name."""
    return "^%s$" % name.replace(".", "\\.")


@pytest.fixture
def policy(broker):
    """policy(name, pattern, definition, *opts): set_policy, cleared at teardown."""
    made = []

    def set_policy(name, pattern, definition, *opts):
        ok(broker.ctl("set_policy", *opts, name, pattern, json.dumps(definition)))
        made.append(name)

    yield set_policy
    for name in made:
        broker.ctl("clear_policy", name)


def test_max_length_policy_truncates_an_existing_queue(broker, amqp, uname, policy):
    ch = amqp.channel()
    q = uname("q")
    ch.queue_declare(q)
    for i in range(10):
        publish(ch, q, b"%d" % i)
    wait_message_count(ch, q, 10)
    policy(uname("p"), rx(q), {"max-length": 3}, "--apply-to", "queues")
    # The head goes at once (drop-head), not at the next publish.
    wait_message_count(ch, q, 3)
    publish(ch, q, b"10")
    wait_message_count(ch, q, 3)
    assert [b for _, _, b in drain_get(ch, q)] == [b"8", b"9", b"10"]


def test_clear_policy_stops_the_effect(broker, amqp, uname):
    ch = amqp.channel()
    q, name = uname("q"), uname("p")
    ch.queue_declare(q)
    ok(broker.ctl("set_policy", name, rx(q), '{"max-length": 2}'))
    for i in range(5):
        publish(ch, q, b"%d" % i)
    wait_message_count(ch, q, 2)
    ok(broker.ctl("clear_policy", name))
    for i in range(5):
        publish(ch, q, b"%d" % i)
    wait_message_count(ch, q, 7)


def test_message_ttl_policy_expires_and_clearing_stops_expiry(broker, amqp, uname):
    ch = amqp.channel()
    q, name = uname("q"), uname("p")
    ch.queue_declare(q)
    ok(broker.ctl("set_policy", "--apply-to", "queues", name, rx(q), '{"message-ttl": 200}'))
    time.sleep(0.3)  # RabbitMQ hands a new policy to the queue process asynchronously
    for _ in range(3):
        publish(ch, q, b"old")
    wait_message_count(ch, q, 0)
    ok(broker.ctl("clear_policy", name))
    for _ in range(3):
        publish(ch, q, b"new")
    time.sleep(0.8)
    assert queue_counts(ch, q)[0] == 3


def test_dead_letter_policy_on_an_existing_queue(broker, amqp, uname, policy):
    ch = amqp.channel()
    q, dead = uname("q"), uname("dead")
    ch.queue_declare(q)
    ch.queue_declare(dead)
    policy(uname("p"), rx(q), {"dead-letter-exchange": "", "dead-letter-routing-key": dead})
    publish(ch, q, b"bad")
    wait_message_count(ch, q, 1)
    m, _, _ = ch.basic_get(q, auto_ack=False)
    ch.basic_reject(m.delivery_tag, requeue=False)
    wait_message_count(ch, dead, 1)
    _, props, body = drain_get(ch, dead)[0]
    assert body == b"bad"
    death = props.headers["x-death"][0]
    assert death["reason"] == "rejected" and death["queue"] == q


def test_alternate_exchange_policy_on_an_existing_exchange(broker, amqp, uname, policy):
    ch = amqp.channel()
    ex, ae, caught = uname("x"), uname("ae"), uname("caught")
    ch.exchange_declare(ex, "direct")
    ch.exchange_declare(ae, "fanout")
    ch.queue_declare(caught)
    ch.queue_bind(caught, ae)
    publish(ch, "nowhere", b"lost", exchange=ex)
    policy(uname("p"), rx(ex), {"alternate-exchange": ae}, "--apply-to", "exchanges")
    time.sleep(0.3)  # as above: RabbitMQ applies it asynchronously
    publish(ch, "nowhere", b"caught", exchange=ex)
    wait_message_count(ch, caught, 1)
    assert [b for _, _, b in drain_get(ch, caught)] == [b"caught"]


def test_list_policies_has_rabbitmqctls_columns(broker, uname, policy):
    name = uname("p")
    policy(name, "^never-matches\\.", {"max-length": 7, "overflow": "reject-publish"},
           "--priority", "5", "--apply-to", "queues")
    p = ok(broker.ctl("list_policies", "-q"))
    lines = p.stdout.splitlines()
    assert lines[0].split("\t") == ["vhost", "name", "pattern", "apply-to", "definition", "priority"]
    rows = [line.split("\t") for line in lines[1:] if line.split("\t")[1:2] == [name]]
    assert len(rows) == 1, p.stdout
    vhost, _, pattern, apply_to, definition, priority = rows[0]
    assert (vhost, pattern, apply_to, priority) == ("/", "^never-matches\\.", "queues", "5")
    assert json.loads(definition) == {"max-length": 7, "overflow": "reject-publish"}
    # Without -q, rabbitmqctl's informational line comes first.
    assert ok(broker.ctl("list_policies")).stdout.startswith('Listing policies for vhost "/" ...\n')


@pytest.mark.parametrize("definition,named", [
    ('{"max-lenght": 3}', "max-lenght"),
    ('{"max-length": "three"}', "max-length"),
    ('{"overflow": "drop-tail"}', "overflow"),
])
def test_a_bad_definition_is_refused_naming_the_key(broker, uname, definition, named):
    name = uname("p")
    p = broker.ctl("set_policy", name, ".*", definition)
    assert p.returncode != 0
    assert named in p.stdout + p.stderr
    if MQNODE:
        assert p.returncode == 65, p.returncode
        assert "Validation failed" in p.stderr, p.stderr
    assert name not in ok(broker.ctl("list_policies", "-q")).stdout


@mqnode_only
def test_unknown_vhost_and_missing_policy_are_data_errors(broker, uname):
    p = broker.ctl("set_policy", "-p", "nope", uname("p"), ".*", '{"max-length": 1}')
    assert p.returncode == 65 and "vhost 'nope' does not exist" in p.stderr, (p.returncode, p.stderr)
    p = broker.ctl("clear_policy", uname("p"))
    assert p.returncode == 65 and "no policy" in p.stderr, (p.returncode, p.stderr)
    p = broker.ctl("set_policy", "x", ".*", "not json")
    assert p.returncode == 65 and "DEFINITION must be a JSON object" in p.stderr
    p = broker.ctl("set_policy", "--apply-to", "both", "x", ".*", "{}")
    assert p.returncode == 64, (p.returncode, p.stderr)


@mqnode_only
def test_policies_in_other_vhosts(broker, amqp, uname):
    name = uname("p")
    ok(broker.ctl("set_policy", "-p", "other", name, "^x$", '{"expires": 60000}'))
    try:
        assert name not in ok(broker.ctl("list_policies", "-q")).stdout
        rows = ok(broker.ctl("list_policies", "-q", "-p", "other")).stdout
        assert "other\t%s\t^x$\tall\t" % name in rows
    finally:
        ok(broker.ctl("clear_policy", "-p", "other", name))


@mqnode_only
def test_runtime_policies_survive_a_kill(broker_factory, clients_for, uname):
    b = broker_factory()
    ok(b.ctl("set_policy", "--priority", "3", "lim", "^lim\\.", '{"max-length": 2}'))
    ok(b.ctl("set_policy", "gone", "^lim\\.", '{"max-length": 1}'))
    ok(b.ctl("clear_policy", "gone"))
    ch = clients_for(b).channel()
    ch.queue_declare("lim.durable", durable=True)
    b.stopped_by_us = True
    os.killpg(b.proc.pid, signal.SIGKILL)
    b.proc.wait(10)
    assert os.path.exists(os.path.join(b.data_dir, "mqnode.sock"))  # left behind by the kill
    b.stopped_by_us = False
    b.start()
    rows = ok(b.ctl("list_policies", "-q")).stdout.splitlines()[1:]
    assert rows == ['/\tlim\t^lim\\.\tall\t{"max-length":2}\t3']
    ch = clients_for(b).channel()
    for q in ("lim.durable", "lim.new"):
        ch.queue_declare(q, durable=True)
        for i in range(4):
            publish(ch, q, b"%d" % i)
        wait_message_count(ch, q, 2)


@mqnode_only
def test_config_policies_are_listed_and_win_at_start(broker_factory):
    b = broker_factory(policies=[{"name": "cfg", "pattern": "^c\\.", "definition": {"max-length": 5}}])
    ok(b.ctl("set_policy", "cfg", "^c\\.", '{"max-length": 9}'))   # overrides until the restart
    ok(b.ctl("set_policy", "rt", "^r\\.", '{"max-length": 1}'))
    assert '{"max-length":9}' in ok(b.ctl("list_policies")).stdout
    assert b.terminate() == 0
    b.start()
    rows = ok(b.ctl("list_policies", "-q")).stdout.splitlines()[1:]
    assert sorted(rows) == ['/\tcfg\t^c\\.\tall\t{"max-length":5}\t0', '/\trt\t^r\\.\tall\t{"max-length":1}\t0']


@mqnode_only
def test_ctl_against_a_stopped_node_exits_69_naming_the_socket(tmp_path):
    p = subprocess.run([BIN, "ctl", "--data-dir", str(tmp_path), "list_policies"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 69, (p.returncode, p.stderr)
    assert str(tmp_path / "mqnode.sock") in p.stderr
    # The data dir can come from the config file's /node/data_dir too.
    cfg = tmp_path / "mqnode.json"
    cfg.write_text(json.dumps({"node": {"data_dir": str(tmp_path / "elsewhere")}}))
    p = subprocess.run([BIN, "ctl", "-c", str(cfg), "status"], capture_output=True, text=True, timeout=20)
    assert p.returncode == 69 and str(tmp_path / "elsewhere" / "mqnode.sock") in p.stderr, p.stderr


@mqnode_only
def test_status_shows_every_module(broker):
    p = ok(broker.ctl("status"))
    status = json.loads(p.stdout)
    assert set(status["modules"]) == {"broker", "management"}
    assert status["modules"]["broker"]["health"] == {"state": "ok", "detail": ""}
    assert "stats" in status["modules"]["broker"]["status"]
    assert status["modules"]["management"]["status"]["control_socket"].endswith("/mqnode.sock")


@mqnode_only
def test_a_node_without_the_broker_role_serves_status_but_no_policies(tmp_path):
    cfg = tmp_path / "lb.json"
    cfg.write_text(json.dumps({"lb": {}}))
    data = tmp_path / "d"
    log = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen([BIN, "--role", "lb", "--config", str(cfg), "--data-dir", str(data)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(data / "mqnode.sock"):
            assert proc.poll() is None and time.monotonic() < deadline, "the lb node did not come up"
            time.sleep(0.05)
        ctl = [BIN, "ctl", "--data-dir", str(data)]
        p = subprocess.run(ctl + ["status"], capture_output=True, text=True, timeout=20)
        assert p.returncode == 0 and set(json.loads(p.stdout)["modules"]) == {"lb", "management"}
        p = subprocess.run(ctl + ["list_policies"], capture_output=True, text=True, timeout=20)
        assert p.returncode == 69 and "runs no broker" in p.stderr, (p.returncode, p.stderr)
    finally:
        proc.terminate()
        assert proc.wait(20) == 0, (tmp_path / "stderr").read_text()
        log.close()
