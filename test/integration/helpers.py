"""Client-side helpers shared by the integration tests (pika + raw sockets)."""

import time

import pika
import pika.exceptions as pex
import pytest

from amqp_raw import RawConnection

GUEST = ("guest", "guest")
ALICE = ("alice", "alicepw")


class Clients:
    """Creates clients for one broker and closes them all at teardown."""

    def __init__(self, broker):
        self.broker = broker
        self.host = broker.connect_host
        self.port = broker.port
        self._conns = []
        self._raws = []

    def params(self, user="guest", password="guest", vhost="/", **kw):
        kw.setdefault("connection_attempts", 1)
        kw.setdefault("socket_timeout", 10)
        kw.setdefault("stack_timeout", 15)
        kw.setdefault("blocked_connection_timeout", 30)
        return pika.ConnectionParameters(
            host=self.host, port=self.port, virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password), **kw)

    def connect(self, user="guest", password="guest", vhost="/", **kw):
        c = pika.BlockingConnection(self.params(user, password, vhost, **kw))
        self._conns.append(c)
        return c

    def channel(self, user="guest", password="guest", vhost="/", **kw):
        return self.connect(user, password, vhost, **kw).channel()

    def raw(self, handshake=True, **kw):
        r = RawConnection(self.host, self.port)
        self._raws.append(r)
        if handshake:
            r.handshake(**kw)
        return r

    def close_all(self):
        for c in self._conns:
            try:
                if c.is_open:
                    c.close()
            except Exception:
                pass
        for r in self._raws:
            r.close()
        self._conns = []
        self._raws = []


def sync(ch):
    """A synchronous round trip on `ch`: returns once the broker has processed
    everything sent before (used to surface asynchronous channel errors)."""
    ch.basic_qos(prefetch_count=0)


def expect_channel_close(fn, code, text_prefix=None):
    """Run fn (which must end with a synchronous call) and expect the broker to
    close the channel with `code`.  Returns the reply text."""
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        fn()
    assert ei.value.reply_code == code, "reply: %r %r" % (ei.value.reply_code, ei.value.reply_text)
    if text_prefix is not None:
        assert ei.value.reply_text.startswith(text_prefix), ei.value.reply_text
    return ei.value.reply_text


def expect_connection_close(fn, code, text_prefix=None):
    with pytest.raises(pex.ConnectionClosedByBroker) as ei:
        fn()
    assert ei.value.reply_code == code, "reply: %r %r" % (ei.value.reply_code, ei.value.reply_text)
    if text_prefix is not None:
        assert ei.value.reply_text.startswith(text_prefix), ei.value.reply_text
    return ei.value.reply_text


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def queue_counts(ch, queue):
    ok = ch.queue_declare(queue=queue, passive=True)
    return ok.method.message_count, ok.method.consumer_count


def wait_message_count(ch, queue, n, timeout=10.0):
    return wait_until(lambda: queue_counts(ch, queue)[0] == n, timeout,
                      what="queue %s to hold %d messages (has %r)" % (queue, n, queue_counts(ch, queue)))


def drain_get(ch, queue, limit=1000, auto_ack=True):
    """basic.get until empty; returns [(method, props, body)]."""
    out = []
    for _ in range(limit):
        m, p, b = ch.basic_get(queue, auto_ack=auto_ack)
        if m is None:
            return out
        out.append((m, p, b))
    raise AssertionError("queue %s did not drain within %d gets" % (queue, limit))


def consume(ch, queue, n, prefetch=200, timeout=60):
    """Consumes <n> messages from <queue> with a manual ack each (or for <timeout> seconds
    at most); returns [(body, redelivered)] in delivery order."""
    got = []
    ch.basic_qos(prefetch_count=prefetch)

    def on_message(c, m, props, data):
        got.append((data, m.redelivered))
        c.basic_ack(m.delivery_tag)
        if len(got) == n:
            c.stop_consuming()

    ch.basic_consume(queue, on_message)
    deadline = ch.connection.call_later(timeout, ch.stop_consuming)
    ch.start_consuming()
    ch.connection.remove_timeout(deadline)
    return got


def collect(conn, store, expected=None, timeout=2.0, settle=0.3):
    """Pump pika's I/O loop until `store` has `expected` items (then `settle` more
    seconds to catch extras), or for `timeout` seconds if expected is None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if expected is not None and len(store) >= expected:
            break
        conn.process_data_events(time_limit=0.05)
    end = time.monotonic() + settle
    while time.monotonic() < end:
        conn.process_data_events(time_limit=0.05)
    return store


def publish(ch, routing_key, body=b"x", exchange="", props=None, mandatory=False):
    ch.basic_publish(exchange=exchange, routing_key=routing_key, body=body,
                     properties=props, mandatory=mandatory)
