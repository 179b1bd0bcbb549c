"""Durability: durable definitions and persistent messages survive a clean restart and a
kill -9; non-durable and exclusive things do not; every confirmed message is on disk."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pika
import pytest

from brokers import target

pytestmark = pytest.mark.skipif(target() != "mqnode",
                                reason="restarts the broker process in place (the private RabbitMQ "
                                       "fixture cannot be restarted on the same data dir)")


def connect(b):
    return pika.BlockingConnection(pika.ConnectionParameters(b.connect_host, b.port))


def restart(b, kill=False):
    b.stopped_by_us = True
    if kill:
        os.killpg(b.proc.pid, signal.SIGKILL)
        b.proc.wait(10)
    else:
        assert b.terminate() == 0
    b.start()


def drain(ch, q, limit=100000):
    out = []
    while len(out) < limit:
        m, props, body = ch.basic_get(q, auto_ack=True)
        if m is None:
            break
        out.append((body, m.redelivered, props))
    return out


def test_durable_definitions_and_persistent_messages_survive_restart(broker_factory):
    b = broker_factory()
    c = connect(b)
    ch = c.channel()
    ch.exchange_declare("dur.x", "topic", durable=True)
    ch.exchange_declare("tmp.x", "fanout", durable=False)
    ch.queue_declare("dur.q", durable=True, arguments={"x-queue-mode": "lazy"})
    ch.queue_declare("tmp.q", durable=False)
    ch.queue_declare("excl.q", durable=True, exclusive=True)
    ch.queue_bind("dur.q", "dur.x", "a.#")
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2, content_type="text/plain", priority=3,
                                 headers={"n": 1, "s": "x", "nested": {"l": [1, "two"]}},
                                 message_id="m-1", correlation_id="c-1")
    for i in range(50):
        ch.basic_publish("dur.x", "a.b", b"persistent %d" % i, props)
    ch.basic_publish("dur.x", "a.b", b"transient", pika.BasicProperties(delivery_mode=1))
    ch.basic_publish("", "tmp.q", b"gone", pika.BasicProperties(delivery_mode=2))
    c.close()

    restart(b)

    c = connect(b)
    ch = c.channel()
    ok = ch.queue_declare("dur.q", passive=True)
    assert ok.method.message_count == 50   # the transient message is not kept
    # the definitions came back equal: an identical redeclare is accepted...
    ch.exchange_declare("dur.x", "topic", durable=True)
    ch.queue_declare("dur.q", durable=True, arguments={"x-queue-mode": "lazy"})
    # ...and the binding routes
    ch.basic_publish("dur.x", "a.z", b"after restart")
    got = drain(ch, "dur.q")
    assert [g[0] for g in got] == [b"persistent %d" % i for i in range(50)] + [b"after restart"]
    assert got[0][2].headers == {"n": 1, "s": "x", "nested": {"l": [1, "two"]}}
    assert (got[0][2].message_id, got[0][2].correlation_id, got[0][2].priority) == ("m-1", "c-1", 3)
    for name in ("tmp.q", "excl.q"):
        ch2 = c.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch2.queue_declare(name, passive=True)
        assert e.value.reply_code == 404
    ch3 = c.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch3.exchange_declare("tmp.x", passive=True)
    c.close()


def test_unacked_messages_come_back_redelivered_and_acked_ones_do_not(broker_factory):
    b = broker_factory()
    c = connect(b)
    ch = c.channel()
    ch.queue_declare("ack.q", durable=True)
    ch.confirm_delivery()
    for i in range(6):
        ch.basic_publish("", "ack.q", b"%d" % i, pika.BasicProperties(delivery_mode=2))
    tags = [ch.basic_get("ack.q")[0].delivery_tag for _ in range(4)]
    ch.basic_ack(tags[1], multiple=True)      # 0 and 1 acked
    ch.basic_reject(tags[2], requeue=False)   # 2 dropped
    # 3 stays unacked, 4 and 5 never delivered
    ch.queue_declare("ack.q", passive=True)   # a round trip: the acks are processed
    restart(b)

    c = connect(b)
    ch = c.channel()
    got = drain(ch, "ack.q")
    assert [g[0] for g in got] == [b"3", b"4", b"5"]
    # recovered messages are flagged redelivered: they may have been delivered before
    assert all(g[1] for g in got)
    c.close()


def test_purge_and_delete_are_durable(broker_factory):
    b = broker_factory()
    c = connect(b)
    ch = c.channel()
    ch.queue_declare("p.q", durable=True)
    ch.queue_declare("d.q", durable=True)
    ch.exchange_declare("d.x", "direct", durable=True)
    ch.confirm_delivery()
    for q in ("p.q", "d.q"):
        ch.basic_publish("", q, b"x", pika.BasicProperties(delivery_mode=2))
    assert ch.queue_purge("p.q").method.message_count == 1
    ch.queue_delete("d.q")
    ch.exchange_delete("d.x")
    c.close()
    restart(b)
    c = connect(b)
    assert c.channel().queue_declare("p.q", passive=True).method.message_count == 0
    for probe in (lambda ch: ch.queue_declare("d.q", passive=True),
                  lambda ch: ch.exchange_declare("d.x", passive=True)):
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            probe(c.channel())
    c.close()


PUBLISHER = textwrap.dedent("""
    import sys, pika
    port, log = int(sys.argv[1]), sys.argv[2]
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = c.channel()
    ch.queue_declare("crash.q", durable=True)
    ch.confirm_delivery()
    out = open(log, "a", buffering=1)
    i = 0
    while True:
        ch.basic_publish("", "crash.q", b"%d" % i, pika.BasicProperties(delivery_mode=2))
        # BlockingChannel.basic_publish returns once the broker confirmed this message
        out.write("%d\\n" % i)
        i += 1
""")


def test_kill_9_mid_stream_loses_no_confirmed_message(broker_factory, tmp_path):
    b = broker_factory()
    log = tmp_path / "confirmed.txt"
    pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(b.port), str(log)],
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= 300:
                break
            assert pub.poll() is None, "publisher died early"
            time.sleep(0.05)
        # The broker dies mid-stream with the publisher still publishing.
        b.stopped_by_us = True
        os.killpg(b.proc.pid, signal.SIGKILL)
        b.proc.wait(10)
    finally:
        pub.kill()
        pub.wait(10)
    confirmed = [int(x) for x in log.read_text().split()]
    assert len(confirmed) >= 300

    b.start()
    c = connect(b)
    got = drain(c.channel(), "crash.q")
    bodies = [int(g[0]) for g in got]
    assert len(bodies) == len(set(bodies)), "duplicates after recovery"
    missing = set(confirmed) - set(bodies)
    assert not missing, "confirmed but lost: %s" % sorted(missing)[:20]
    assert bodies == sorted(bodies)             # in publish order
    c.close()


def test_transaction_commit_is_durable(broker_factory):
    b = broker_factory()
    c = connect(b)
    ch = c.channel()
    ch.queue_declare("tx.q", durable=True)
    ch.tx_select()
    for i in range(3):
        ch.basic_publish("", "tx.q", b"t%d" % i, pika.BasicProperties(delivery_mode=2))
    ch.tx_commit()
    ch.basic_publish("", "tx.q", b"rolled back", pika.BasicProperties(delivery_mode=2))
    ch.tx_rollback()
    restart(b, kill=True)
    c = connect(b)
    assert [g[0] for g in drain(c.channel(), "tx.q")] == [b"t0", b"t1", b"t2"]
    c.close()


def test_unwritable_data_dir_is_a_clear_startup_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    p = subprocess.run([os.environ["MQNODE_BIN"], "--data-dir", str(blocker / "data")],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1
    assert "cannot create the data dir" in p.stderr and str(blocker / "data") in p.stderr


def test_corrupt_store_is_a_clear_startup_error(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "mqnode.db").write_bytes(b"this is not an sqlite database" * 100)
    p = subprocess.run([os.environ["MQNODE_BIN"], "--data-dir", str(d)], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 1
    assert "mqnode.db" in p.stderr and "move it away" in p.stderr
