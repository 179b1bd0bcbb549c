"""Paging: a queue holding more than its RAM window (here a lazy queue: 256 KiB in mqnode)
keeps the rest in the store and still delivers every message, in order, with its content;
after a kill -9 a persistent backlog comes back the same way."""

import glob
import os
import signal

import pika
import pytest

from brokers import target
from helpers import consume

COUNT = 4000
SIZE = 4096  # 16 MB in all, 64 times a lazy queue's window


def body(i):
    head = b"%08d:" % i
    return head + bytes([i % 251]) * (SIZE - len(head))


def connect(b):
    return pika.BlockingConnection(pika.ConnectionParameters(b.connect_host, b.port))


def publish_all(ch, queue, persistent):
    props = pika.BasicProperties(delivery_mode=2 if persistent else 1)
    for i in range(COUNT):
        ch.basic_publish("", queue, body(i), props)


def wait_count(ch, queue, n):
    for _ in range(400):
        if ch.queue_declare(queue, passive=True).method.message_count == n:
            return
        ch.connection.sleep(0.05)
    assert ch.queue_declare(queue, passive=True).method.message_count == n


def store_bytes(b):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(b.data_dir, "mqnode.db*")))


def assert_in_order(got, redelivered):
    assert len(got) == COUNT
    bad = [i for i, (data, _) in enumerate(got) if data != body(i)]
    assert not bad, "messages out of order or altered from index %d" % bad[0]
    assert all(r == redelivered for _, r in got)


def test_a_backlog_beyond_the_ram_window_is_delivered_in_order(broker_factory):
    b = broker_factory()
    c = connect(b)
    ch = c.channel()
    ch.queue_declare("paged.q", arguments={"x-queue-mode": "lazy"})
    before = store_bytes(b) if target() == "mqnode" else 0
    publish_all(ch, "paged.q", persistent=False)
    wait_count(ch, "paged.q", COUNT)
    if target() == "mqnode":
        # Transient messages too: beyond the window they wait in the store, not in RAM.
        assert store_bytes(b) - before > COUNT * SIZE // 2
    # basic.get reaches into the paged-out part as well as the consumer does.
    first = [ch.basic_get("paged.q", auto_ack=True) for _ in range(100)]
    assert [data for _, _, data in first] == [body(i) for i in range(100)]
    ch.queue_purge("paged.q")
    publish_all(ch, "paged.q", persistent=False)
    assert_in_order(consume(ch, "paged.q", COUNT), redelivered=False)
    c.close()


@pytest.mark.skipif(target() != "mqnode", reason="kills and restarts the broker in place (the private "
                                                 "RabbitMQ fixture cannot be restarted on the same data dir)")
@pytest.mark.time_limit(180)
def test_a_persistent_backlog_comes_back_after_kill_9_page_by_page(broker_factory):
    b = broker_factory()
    c = connect(b)
    ch = c.channel()
    ch.queue_declare("paged.dur", durable=True, arguments={"x-queue-mode": "lazy"})
    ch.confirm_delivery()
    publish_all(ch, "paged.dur", persistent=True)
    c.close()
    b.stopped_by_us = True
    os.killpg(b.proc.pid, signal.SIGKILL)
    b.proc.wait(10)
    b.start()
    c = connect(b)
    ch = c.channel()
    assert ch.queue_declare("paged.dur", durable=True, passive=True).method.message_count == COUNT
    assert_in_order(consume(ch, "paged.dur", COUNT), redelivered=True)
    c.close()
