"""Flow control under a flood: fast publishers are stopped before they drive the node out of
memory (memory alarm → connection.blocked), and publishers faster than the disk are paused
by not reading their socket while consumers keep being served."""

import json
import threading
import time

import pika
import pytest

from brokers import target

pytestmark = pytest.mark.skipif(target() != "mqnode",
                                reason="sets mqnode's own limits (/broker/vm_memory_high_watermark_bytes, "
                                       "queue_ram_bytes) and reads the node's RSS from /proc")


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def flood(host, port, queue, size, stop):
    """A publisher as fast as pika goes: no confirms, batches of 100 between event polls."""
    c = pika.BlockingConnection(pika.ConnectionParameters(host, port))
    ch = c.channel()
    body = b"x" * size
    try:
        while not stop.is_set():
            for _ in range(100):
                ch.basic_publish("", queue, body)
            c.process_data_events(time_limit=0)
    except (pika.exceptions.AMQPError, OSError):
        pass


@pytest.mark.time_limit(120)
def test_a_flood_is_blocked_at_the_memory_watermark_and_rss_stays_bounded(broker_factory, uname):
    # No paging (a window far above the flood) so that only the memory alarm can stop it.
    probe = broker_factory()
    base = rss(probe.proc.pid)
    probe.stop()
    limit = base + (96 << 20)
    b = broker_factory(vm_memory_high_watermark_bytes=limit, queue_ram_bytes=1 << 40)
    q = uname()
    watcher = pika.BlockingConnection(pika.ConnectionParameters(b.connect_host, b.port))
    wch = watcher.channel()
    wch.queue_declare(q)
    blocked = []
    watcher.add_on_connection_blocked_callback(lambda conn, frame: blocked.append(frame.method.reason))
    stop = threading.Event()
    floods = [threading.Thread(target=flood, args=(b.connect_host, b.port, q, 16384, stop), daemon=True)
              for _ in range(2)]
    for t in floods:
        t.start()
    peak = 0
    try:
        deadline = time.time() + 60
        # The watcher becomes a publisher with one message, so it is told of the alarm too.
        wch.basic_publish("", q, b"watcher")
        while not blocked and time.time() < deadline:
            watcher.process_data_events(time_limit=0.1)
            peak = max(peak, rss(b.proc.pid))
        assert blocked == ["low on memory"]
        # Blocked publishers are not read: memory stops growing (one second of alarm
        # latency plus socket buffers is the slack).
        settle_end = time.time() + 3
        while time.time() < settle_end:
            peak = max(peak, rss(b.proc.pid))
            time.sleep(0.1)
        assert peak < limit + (128 << 20), "RSS %d MiB, limit %d MiB" % (peak >> 20, limit >> 20)
        # Consumers are not blocked: a new connection reads the flood's messages.
        reader = pika.BlockingConnection(pika.ConnectionParameters(b.connect_host, b.port))
        m, _, body = reader.channel().basic_get(q, auto_ack=True)
        assert m is not None and len(body) in (len(b"watcher"), 16384)
        reader.close()
    finally:
        # Blocked connections are not read, so a polite close would wait for close-ok
        # forever (as with RabbitMQ); the broker's shutdown at teardown closes them all.
        stop.set()


def broker_status(b):
    r = b.ctl("status")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.time_limit(120)
def test_a_publisher_faster_than_the_disk_is_paused_and_loses_nothing(broker_factory, uname):
    # A 1 MiB store backlog: a few 64 KiB persistent messages waiting for one fsync exceed it.
    b = broker_factory(store_backlog_bytes=1 << 20)
    q = uname()
    c = pika.BlockingConnection(pika.ConnectionParameters(b.connect_host, b.port))
    ch = c.channel()
    ch.queue_declare(q, durable=True)
    count, body = 400, b"p" * 65536
    for _ in range(count):
        ch.basic_publish("", q, body, pika.BasicProperties(delivery_mode=2))
    # Nothing the publisher sent is dropped: the broker reads it all, just later.
    for _ in range(600):
        if ch.queue_declare(q, durable=True, passive=True).method.message_count == count:
            break
        c.sleep(0.05)
    assert ch.queue_declare(q, durable=True, passive=True).method.message_count == count
    stats = broker_status(b)["modules"]["broker"]["status"]["stats"]
    assert stats["store_flow_pauses"] >= 1, stats
    # A consumer on a paused publisher's node is served all along; here it drains the lot.
    got = 0
    while True:
        m, _, data = ch.basic_get(q, auto_ack=True)
        if m is None:
            break
        assert data == body
        got += 1
    assert got == count
    c.close()
