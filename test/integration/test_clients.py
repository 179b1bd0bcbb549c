"""Other real clients: kombu (py-amqp transport) and rabbitmq-c's amqp-tools."""

import shutil
import subprocess
import time

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from helpers import queue_counts, sync, wait_until


def _kombu_url(broker, user="guest", password="guest"):
    return "pyamqp://%s:%s@%s:%d//" % (user, password, broker.connect_host, broker.port)


# ---------------------------------------------------------------------------
# kombu
# ---------------------------------------------------------------------------


def test_kombu_round_trip(broker, uname):
    qname = uname()
    with Connection(_kombu_url(broker), connect_timeout=10) as conn:
        conn.connect()
        ex = Exchange(uname("x"), type="direct", auto_delete=True)
        queue = Queue(qname, exchange=ex, routing_key="rk", auto_delete=True)
        received = []
        with conn.channel() as ch:
            consumer = Consumer(ch, queues=[queue],
                                callbacks=[lambda body, msg: (received.append(body), msg.ack())],
                                accept=["json"])
            consumer.consume()
            producer = Producer(conn.channel(), exchange=ex, serializer="json")
            for i in range(5):
                producer.publish({"n": i, "s": "x" * i}, routing_key="rk", declare=[queue])
            deadline = time.monotonic() + 10
            while len(received) < 5 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
                except OSError:   # socket.timeout on older kombu/amqp
                    pass
            consumer.cancel()
        assert received == [{"n": i, "s": "x" * i} for i in range(5)]


def test_kombu_qos_semantics_global(broker, uname):
    """Celery's expectation: with qos_global derived like Celery does, one channel
    consuming two queues with prefetch_count=5 holds exactly 5 unacked messages."""
    q1, q2 = uname(), uname()
    with Connection(_kombu_url(broker), connect_timeout=10) as conn:
        conn.connect()
        qos_global = not conn.transport.qos_semantics_matches_spec(conn.connection)
        assert qos_global is True
        queues = [Queue(q1, auto_delete=False), Queue(q2, auto_delete=False)]
        pch = conn.channel()
        producer = Producer(pch)
        try:
            for q in queues:
                q(pch).declare()
                for i in range(20):
                    producer.publish(b"m%d" % i, routing_key=q.name, content_type="application/data",
                                     content_encoding="binary")
            received = []
            cch = conn.channel()
            consumer = Consumer(cch, queues=queues, callbacks=[lambda body, msg: received.append(msg)],
                                accept=["application/data"], no_ack=False)
            consumer.qos(prefetch_count=5, apply_global=qos_global)
            consumer.consume()
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.2)
                except (TimeoutError, OSError):
                    pass
            assert len(received) == 5
            consumer.cancel()
        finally:
            for q in queues:
                q(pch).delete()


# ---------------------------------------------------------------------------
# amqp-tools (rabbitmq-c 0.11)
# ---------------------------------------------------------------------------

needs_amqp_tools = pytest.mark.skipif(shutil.which("amqp-publish") is None,
                                      reason="amqp-tools (rabbitmq-c CLIs) not installed")


def _tool(broker, name, *args, timeout=20, check=True, user="guest", password="guest"):
    url = "amqp://%s:%s@%s:%d" % (user, password, broker.connect_host, broker.port)
    p = subprocess.run([name, "--url=" + url] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    if check:
        assert p.returncode == 0, "%s failed (%d): %r %r" % (name, p.returncode, p.stdout, p.stderr)
    return p


@needs_amqp_tools
def test_amqp_tools_declare_publish_get_delete(broker, amqp, uname):
    q = uname()
    p = _tool(broker, "amqp-declare-queue", "-q", q)
    assert p.stdout.decode().strip() == q
    ch = amqp.channel()
    ch.queue_declare(q, passive=True)
    _tool(broker, "amqp-publish", "-r", q, "-b", "hello from rabbitmq-c")
    _tool(broker, "amqp-publish", "-r", q, "-b", "second", "-C", "text/plain", "-p")
    p = _tool(broker, "amqp-get", "-q", q)
    assert p.stdout == b"hello from rabbitmq-c"
    m, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"second" and props.content_type == "text/plain" and props.delivery_mode == 2
    p = _tool(broker, "amqp-get", "-q", q, check=False)
    assert p.returncode != 0 and p.stdout == b""          # empty queue
    _tool(broker, "amqp-delete-queue", "-q", q)
    import pika.exceptions as pex
    with pytest.raises(pex.ChannelClosedByBroker):
        amqp.channel().queue_declare(q, passive=True)


@needs_amqp_tools
def test_amqp_tools_server_named_queue(broker):
    p = _tool(broker, "amqp-declare-queue", "-q", "")
    name = p.stdout.decode().strip()
    assert name.startswith("amq.gen-")


@needs_amqp_tools
def test_amqp_tools_consume_count(broker, amqp, uname):
    q = uname()
    ch = amqp.channel()
    ch.queue_declare(q)
    try:
        for i in range(5):
            ch.basic_publish("", q, b"<%d>" % i)
        sync(ch)
        p = _tool(broker, "amqp-consume", "-q", q, "-c", "3", "cat")
        assert p.stdout == b"<0><1><2>"
        assert queue_counts(ch, q) == (2, 0)
    finally:
        ch.queue_delete(q)


@needs_amqp_tools
def test_amqp_tools_consume_survives_queue_delete(broker, amqp, uname):
    """rabbitmq-c 0.11 does not announce consumer_cancel_notify, so the broker must not
    send it basic.cancel when its queue is deleted: amqp-consume just keeps waiting."""
    q = uname()
    ch = amqp.channel()
    ch.queue_declare(q)
    url = "amqp://guest:guest@%s:%d" % (broker.connect_host, broker.port)
    proc = subprocess.Popen(["amqp-consume", "--url=" + url, "-q", q, "-c", "2", "cat"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ch.basic_publish("", q, b"first")
        wait_until(lambda: queue_counts(ch, q) == (0, 1), 10, what="amqp-consume to consume")
        ch.queue_delete(q)
        time.sleep(2.0)
        assert proc.poll() is None, "amqp-consume exited: %r %r" % (proc.returncode,
                                                                     proc.stderr.read())
    finally:
        proc.kill()
        out, err = proc.communicate(timeout=10)
    assert out == b"first"
