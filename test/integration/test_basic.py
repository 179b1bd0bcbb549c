"""basic.*: qos, consume (exclusive, no-ack, tags, cancel, server cancel), publish
mandatory/immediate, get, ack/nack/reject, recover."""

import re
import socket

import pika
import pytest

import amqp_raw as R
from helpers import (collect, drain_get, expect_channel_close, expect_connection_close,
                     queue_counts, sync, wait_message_count)


def _fill(ch, q, n, prefix=b""):
    ch.queue_declare(q, auto_delete=False)
    for i in range(n):
        ch.basic_publish("", q, prefix + b"%d" % i)
    sync(ch)
    wait_message_count(ch, q, n)


@pytest.fixture
def cleanup_queues(amqp):
    qs = []
    yield qs
    ch = amqp.channel()
    for q in qs:
        ch.queue_delete(q)


# ---------------------------------------------------------------------------
# qos
# ---------------------------------------------------------------------------


def _consume_counts(conn, ch, queues, timeout=1.5):
    got = {q: [] for q in queues}
    for q in queues:
        ch.basic_consume(q, lambda c, m, p, b, q=q: got[q].append(m.delivery_tag))
    collect(conn, got, timeout=timeout, settle=0)
    return got


def test_qos_per_consumer(amqp, uname, cleanup_queues):
    conn = amqp.connect()
    ch = conn.channel()
    qs = [uname(), uname()]
    cleanup_queues.extend(qs)
    for q in qs:
        _fill(ch, q, 10)
    ch.basic_qos(prefetch_count=3)          # global=false: limit per consumer (RabbitMQ meaning)
    got = _consume_counts(conn, ch, qs)
    assert [len(got[q]) for q in qs] == [3, 3]
    ch.basic_ack(got[qs[0]][0])
    collect(conn, got, timeout=1.0, settle=0)
    assert [len(got[q]) for q in qs] == [4, 3]


def test_qos_global_is_per_channel(amqp, uname, cleanup_queues):
    conn = amqp.connect()
    ch = conn.channel()
    qs = [uname(), uname()]
    cleanup_queues.extend(qs)
    for q in qs:
        _fill(ch, q, 10)
    ch.basic_qos(prefetch_count=3, global_qos=True)   # RabbitMQ: global=true = shared by the channel
    got = _consume_counts(conn, ch, qs)
    assert sum(len(v) for v in got.values()) == 3
    # acking one lets exactly one more through
    first = [t for v in got.values() for t in v][0]
    ch.basic_ack(first)
    collect(conn, got, timeout=1.0, settle=0)
    assert sum(len(v) for v in got.values()) == 4


def test_qos_per_consumer_and_global_combined(amqp, uname, cleanup_queues):
    conn = amqp.connect()
    ch = conn.channel()
    qs = [uname(), uname(), uname()]
    cleanup_queues.extend(qs)
    for q in qs:
        _fill(ch, q, 10)
    ch.basic_qos(prefetch_count=2)                    # each consumer <= 2
    ch.basic_qos(prefetch_count=5, global_qos=True)   # channel <= 5
    got = _consume_counts(conn, ch, qs)
    counts = sorted(len(v) for v in got.values())
    assert sum(counts) == 5 and max(counts) == 2, got


def test_qos_applies_to_consumers_created_after_it(amqp, uname, cleanup_queues):
    conn = amqp.connect()
    ch = conn.channel()
    q1, q2 = uname(), uname()
    cleanup_queues.extend([q1, q2])
    _fill(ch, q1, 10)
    _fill(ch, q2, 10)
    got = {q1: [], q2: []}
    ch.basic_consume(q1, lambda c, m, p, b: got[q1].append(1))   # unlimited
    ch.basic_qos(prefetch_count=2)
    ch.basic_consume(q2, lambda c, m, p, b: got[q2].append(1))   # limited to 2
    collect(conn, got, timeout=1.5, settle=0)
    assert (len(got[q1]), len(got[q2])) == (10, 2)


def test_qos_prefetch_count_zero_is_unlimited(amqp, uname, cleanup_queues):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 30)
    ch.basic_qos(prefetch_count=0)
    got = _consume_counts(conn, ch, [q])
    assert len(got[q]) == 30


def test_qos_prefetch_size_not_implemented(amqp):
    ch = amqp.channel()
    # RabbitMQ: prefetch_size != 0 -> connection close 540
    text = expect_connection_close(lambda: ch.basic_qos(prefetch_size=1000, prefetch_count=1), 540)
    assert text == "NOT_IMPLEMENTED - prefetch_size!=0 (1000)"


def test_qos_does_not_limit_basic_get(amqp, uname, cleanup_queues):
    ch = amqp.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 5)
    ch.basic_qos(prefetch_count=1, global_qos=True)
    got = drain_get(ch, q, auto_ack=False)
    assert len(got) == 5


# ---------------------------------------------------------------------------
# consume
# ---------------------------------------------------------------------------


def test_exclusive_consumer(amqp, uname):
    conn = amqp.connect()
    ch1 = conn.channel()
    q = uname()
    ch1.queue_declare(q, auto_delete=True)
    got = []
    ch1.basic_consume(q, lambda c, m, p, b: got.append(b), exclusive=True, auto_ack=True)
    ch2 = conn.channel()
    text = expect_channel_close(lambda: ch2.basic_consume(q, lambda *a: None), 403)
    assert text == "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q
    # the exclusive consumer keeps receiving
    ch3 = conn.channel()
    ch3.basic_publish("", q, b"m")
    collect(conn, got, expected=1)
    assert got == [b"m"]


def test_exclusive_consume_when_queue_has_consumers(amqp, uname):
    conn = amqp.connect()
    ch1 = conn.channel()
    q = uname()
    ch1.queue_declare(q, auto_delete=True)
    ch1.basic_consume(q, lambda *a: None)
    ch2 = conn.channel()
    text = expect_channel_close(lambda: ch2.basic_consume(q, lambda *a: None, exclusive=True), 403)
    assert text == "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q


def test_consume_missing_queue(amqp, uname):
    ch = amqp.channel()
    q = uname()
    text = expect_channel_close(lambda: ch.basic_consume(q, lambda *a: None), 404)
    assert text == "NOT_FOUND - no queue '%s' in vhost '/'" % q


def test_no_ack_consume(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q)
    try:
        for i in range(5):
            ch.basic_publish("", q, b"%d" % i)
        cch = conn.channel()
        got = []
        cch.basic_consume(q, lambda c, m, p, b: got.append((m.delivery_tag, b)), auto_ack=True)
        collect(conn, got, expected=5)
        assert [b for _, b in got] == [b"%d" % i for i in range(5)]
        assert [t for t, _ in got] == [1, 2, 3, 4, 5]
        cch.close()   # nothing unacked -> nothing requeued
        assert queue_counts(ch, q) == (0, 0)
    finally:
        ch.queue_delete(q)


def test_explicit_consumer_tag(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    got = []
    tag = ch.basic_consume(q, lambda c, m, p, b: got.append(m.consumer_tag), consumer_tag="my.tag-1")
    assert tag == "my.tag-1"
    ch.basic_publish("", q, b"x")
    collect(conn, got, expected=1)
    assert got == ["my.tag-1"]


def test_server_generated_consumer_tag_raw(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.BASIC_CONSUME, R.basic_consume_args(q, tag=""))
    tag1 = r.expect(R.BASIC_CONSUME_OK, channel=1).args["consumer_tag"]
    r.send_method(1, R.BASIC_CONSUME, R.basic_consume_args(q, tag=""))
    tag2 = r.expect(R.BASIC_CONSUME_OK, channel=1).args["consumer_tag"]
    assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag1), tag1
    assert tag1 != tag2


def test_duplicate_consumer_tag_is_connection_error(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.BASIC_CONSUME, R.basic_consume_args(q, tag="dup"))
    r.expect(R.BASIC_CONSUME_OK, channel=1)
    r.send_method(1, R.BASIC_CONSUME, R.basic_consume_args(q, tag="dup"))
    close = r.wait_connection_close()
    assert close == {"reply_code": 530, "reply_text": "NOT_ALLOWED - attempt to reuse consumer tag 'dup'",
                     "class_id": 60, "method_id": 20}


def test_same_consumer_tag_on_different_channels_is_fine(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    r = amqp.raw()
    for n in (1, 2):
        r.open_channel(n)
        r.send_method(n, R.BASIC_CONSUME, R.basic_consume_args(q, tag="same"))
        assert r.expect(R.BASIC_CONSUME_OK, channel=n).args["consumer_tag"] == "same"


def test_cancel(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=False)
    try:
        got = []
        tag = ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
        ch.basic_publish("", q, b"1")
        collect(conn, got, expected=1)
        ch.basic_cancel(tag)
        assert queue_counts(ch, q) == (0, 0)
        ch.basic_publish("", q, b"2")
        collect(conn, got, timeout=0.5)
        assert got == [b"1"]
        assert queue_counts(ch, q) == (1, 0)
    finally:
        ch.queue_delete(q)


def test_cancel_unknown_tag_raw(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.BASIC_CANCEL, R.shortstr("nope") + R.bits(False))
    # RabbitMQ: cancelling an unknown consumer tag is answered with cancel-ok
    assert r.expect(R.BASIC_CANCEL_OK, channel=1).args["consumer_tag"] == "nope"


def test_server_cancel_on_queue_delete(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    other = amqp.channel()
    other.queue_delete(q)
    collect(conn, cancelled, expected=1, timeout=5)
    assert cancelled == [tag]
    assert ch.is_open
    ch.basic_qos(prefetch_count=1)


def test_server_cancel_raw(amqp, uname):
    q = uname()
    amqp.channel().queue_declare(q)
    r = amqp.raw()   # client_properties declare consumer_cancel_notify
    r.open_channel(1)
    r.send_method(1, R.BASIC_CONSUME, R.basic_consume_args(q, tag="c1"))
    r.expect(R.BASIC_CONSUME_OK)
    amqp.channel().queue_delete(q)
    f = r.expect(R.BASIC_CANCEL, channel=1)
    assert f.args == {"consumer_tag": "c1", "nowait": True}


def test_no_server_cancel_without_capability(amqp, uname):
    q = uname()
    amqp.channel().queue_declare(q)
    r = amqp.raw(client_properties={"product": "old-client"})
    r.open_channel(1)
    r.send_method(1, R.BASIC_CONSUME, R.basic_consume_args(q, tag="c1"))
    r.expect(R.BASIC_CONSUME_OK)
    amqp.channel().queue_delete(q)
    with pytest.raises(socket.timeout):
        f = r.read_frame(timeout=1.5)
        raise AssertionError("unexpected frame %r" % f)
    r.open_channel(2)


# ---------------------------------------------------------------------------
# publish
# ---------------------------------------------------------------------------


def test_mandatory_unroutable_returned(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    x = uname("x")
    ch.exchange_declare(x, exchange_type="direct", auto_delete=True)
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m, p, b)))
    props = pika.BasicProperties(content_type="text/plain", headers={"h": 1}, message_id="m1")
    ch.basic_publish(x, "nowhere", b"body", props, mandatory=True)
    ch.basic_publish(x, "nowhere", b"not-mandatory")
    collect(conn, returned, expected=1, timeout=3)
    assert len(returned) == 1
    m, p, b = returned[0]
    assert (m.reply_code, m.reply_text, m.exchange, m.routing_key) == (312, "NO_ROUTE", x, "nowhere")
    assert b == b"body"
    assert (p.content_type, p.headers, p.message_id) == ("text/plain", {"h": 1}, "m1")


def test_mandatory_to_default_exchange_missing_queue(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m.reply_code, m.exchange, m.routing_key)))
    q = uname()
    ch.basic_publish("", q, b"x", mandatory=True)
    collect(conn, returned, expected=1, timeout=3)
    assert returned == [(312, "", q)]


def test_publish_to_missing_exchange(amqp, uname):
    ch = amqp.channel()
    x = uname("x")

    def pub():
        ch.basic_publish(x, "k", b"x")
        sync(ch)
    text = expect_channel_close(pub, 404)
    assert text == "NOT_FOUND - no exchange '%s' in vhost '/'" % x


def test_immediate_not_implemented(amqp, uname):
    q = uname()
    amqp.channel().queue_declare(q, auto_delete=True)
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.BASIC_PUBLISH, R.basic_publish_args("", q, immediate=True))
    r.send(R.header_frame(1, 1))
    r.send(R.body_frame(1, b"x"))
    close = r.wait_connection_close()
    assert close == {"reply_code": 540, "reply_text": "NOT_IMPLEMENTED - immediate=true",
                     "class_id": 60, "method_id": 40}


# ---------------------------------------------------------------------------
# get / ack / reject / nack / recover
# ---------------------------------------------------------------------------


def test_get(amqp, uname, cleanup_queues):
    ch = amqp.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 3)
    m, p, b = ch.basic_get(q, auto_ack=True)
    assert (m.message_count, m.redelivered, m.exchange, m.routing_key, b) == (2, False, "", q, b"0")
    m, p, b = ch.basic_get(q, auto_ack=True)
    assert (m.message_count, b) == (1, b"1")
    m, p, b = ch.basic_get(q, auto_ack=True)
    assert (m.message_count, b) == (0, b"2")
    assert ch.basic_get(q, auto_ack=True) == (None, None, None)


def test_get_empty_raw(amqp, uname):
    q = uname()
    amqp.channel().queue_declare(q, auto_delete=True)
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.BASIC_GET, R.basic_get_args(q))
    f = r.expect(R.BASIC_GET_EMPTY, channel=1)
    assert f.payload[4:] == R.shortstr("")  # cluster-id (deprecated) is empty


def test_get_missing_queue(amqp, uname):
    ch = amqp.channel()
    q = uname()
    text = expect_channel_close(lambda: ch.basic_get(q), 404)
    assert text == "NOT_FOUND - no queue '%s' in vhost '/'" % q


def test_delivery_tags_are_per_channel(amqp, uname, cleanup_queues):
    conn = amqp.connect()
    ch1, ch2 = conn.channel(), conn.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch1, q, 4)
    assert [ch1.basic_get(q)[0].delivery_tag for _ in range(2)] == [1, 2]
    assert [ch2.basic_get(q)[0].delivery_tag for _ in range(2)] == [1, 2]


def test_ack_multiple(amqp, uname, cleanup_queues):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 5)
    gch = conn.channel()
    tags = [gch.basic_get(q)[0].delivery_tag for _ in range(5)]
    assert tags == [1, 2, 3, 4, 5]
    gch.basic_ack(3, multiple=True)
    gch.close()     # 4 and 5 go back to the queue
    wait_message_count(ch, q, 2)
    got = drain_get(ch, q)
    assert [(m.redelivered, b) for m, _, b in got] == [(True, b"3"), (True, b"4")]


def test_ack_multiple_zero_acks_all(amqp, uname, cleanup_queues):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 4)
    gch = conn.channel()
    for _ in range(4):
        gch.basic_get(q)
    gch.basic_ack(0, multiple=True)
    gch.close()
    sync(ch)
    assert queue_counts(ch, q)[0] == 0


def test_reject_requeue(amqp, uname, cleanup_queues):
    ch = amqp.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 1)
    m, _, b = ch.basic_get(q)
    assert m.redelivered is False
    ch.basic_reject(m.delivery_tag, requeue=True)
    m2, _, b2 = ch.basic_get(q)
    assert (m2.redelivered, b2) == (True, b)
    assert m2.delivery_tag == m.delivery_tag + 1
    ch.basic_reject(m2.delivery_tag, requeue=False)   # dropped
    assert ch.basic_get(q) == (None, None, None)


def test_reject_requeue_keeps_position(amqp, uname, cleanup_queues):
    ch = amqp.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 3)
    m, _, _ = ch.basic_get(q)
    ch.basic_reject(m.delivery_tag, requeue=True)
    # RabbitMQ puts a requeued message back at its original position (head)
    assert [b for _, _, b in drain_get(ch, q)] == [b"0", b"1", b"2"]


def test_nack_multiple_requeue(amqp, uname, cleanup_queues):
    ch = amqp.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 4)
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[-1], multiple=True, requeue=True)
    got = drain_get(ch, q)
    assert [(m.redelivered, b) for m, _, b in got] == [(True, b"0"), (True, b"1"), (True, b"2"),
                                                       (False, b"3")]


def test_nack_without_requeue_drops(amqp, uname, cleanup_queues):
    ch = amqp.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 3)
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(2)]
    ch.basic_nack(tags[0], multiple=False, requeue=False)
    ch.basic_nack(tags[1], multiple=False, requeue=True)
    assert [(m.redelivered, b) for m, _, b in drain_get(ch, q)] == [(True, b"1"), (False, b"2")]


def test_ack_unknown_delivery_tag(amqp, uname):
    ch = amqp.channel()

    def ack():
        ch.basic_ack(99)
        sync(ch)
    text = expect_channel_close(ack, 406)
    assert text == "PRECONDITION_FAILED - unknown delivery tag 99"


def test_double_ack(amqp, uname, cleanup_queues):
    ch = amqp.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 1)
    m, _, _ = ch.basic_get(q)

    def ack_twice():
        ch.basic_ack(m.delivery_tag)
        ch.basic_ack(m.delivery_tag)
        sync(ch)
    text = expect_channel_close(ack_twice, 406)
    assert text == "PRECONDITION_FAILED - unknown delivery tag %d" % m.delivery_tag


def test_reject_and_nack_unknown_tag(amqp):
    ch = amqp.channel()

    def rej():
        ch.basic_reject(7)
        sync(ch)
    assert expect_channel_close(rej, 406) == "PRECONDITION_FAILED - unknown delivery tag 7"
    ch = amqp.channel()

    def nack():
        ch.basic_nack(8, multiple=True)
        sync(ch)
    assert expect_channel_close(nack, 406) == "PRECONDITION_FAILED - unknown delivery tag 8"


def test_ack_of_autoack_delivery_is_unknown(amqp, uname, cleanup_queues):
    ch = amqp.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 1)
    m, _, _ = ch.basic_get(q, auto_ack=True)

    def ack():
        ch.basic_ack(m.delivery_tag)
        sync(ch)
    assert expect_channel_close(ack, 406) == "PRECONDITION_FAILED - unknown delivery tag 1"


def test_recover_requeue(amqp, uname, cleanup_queues):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 3)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append((m.delivery_tag, m.redelivered, b)))
    collect(conn, got, expected=3)
    assert [r for _, r, _ in got] == [False] * 3
    ch.basic_recover(requeue=True)
    collect(conn, got, expected=6)
    assert len(got) == 6
    assert sorted(b for _, r, b in got[3:] if r) == [b"0", b"1", b"2"]
    for t, _, _ in got[3:]:
        ch.basic_ack(t)
    sync(ch)
    assert queue_counts(ch, q) == (0, 1)


def test_close_channel_requeues_unacked(amqp, uname, cleanup_queues):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    cleanup_queues.append(q)
    _fill(ch, q, 2)
    cch = conn.channel()
    got = []
    cch.basic_consume(q, lambda c, m, p, b: got.append(b))
    collect(conn, got, expected=2)
    cch.close()
    wait_message_count(ch, q, 2)
    assert [(m.redelivered, b) for m, _, b in drain_get(ch, q)] == [(True, b"0"), (True, b"1")]


def test_consumer_receives_round_robin(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    got = {"a": [], "b": []}
    ch.basic_consume(q, lambda c, m, p, b: got["a"].append(b), auto_ack=True, consumer_tag="a")
    ch.basic_consume(q, lambda c, m, p, b: got["b"].append(b), auto_ack=True, consumer_tag="b")
    for i in range(10):
        ch.basic_publish("", q, b"%d" % i)
    collect(conn, got, timeout=1.5, settle=0)
    assert len(got["a"]) + len(got["b"]) == 10
    assert len(got["a"]) == 5 and len(got["b"]) == 5
