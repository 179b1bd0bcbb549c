"""Queues: declare (passive/durable/exclusive/auto-delete/server-named), counts,
bind/unbind, purge, delete if-unused/if-empty, reserved names."""

import re

import pika
import pytest

from brokers import target
from helpers import (collect, drain_get, expect_channel_close, queue_counts, sync,
                     wait_until)

TARGET = target()


def test_passive_declare_missing(amqp, uname):
    ch = amqp.channel()
    q = uname()
    text = expect_channel_close(lambda: ch.queue_declare(q, passive=True), 404)
    assert text == "NOT_FOUND - no queue '%s' in vhost '/'" % q


def test_declare_returns_name_and_counts(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ok = ch.queue_declare(q, auto_delete=True)
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == (q, 0, 0)


def test_server_named_queue(amqp):
    ch = amqp.channel()
    ok = ch.queue_declare("", exclusive=True)
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", ok.method.queue), ok.method.queue
    ok2 = ch.queue_declare("", exclusive=True)
    assert ok2.method.queue != ok.method.queue
    ch.basic_publish("", ok.method.queue, b"x")
    assert ch.basic_get(ok.method.queue, auto_ack=True)[2] == b"x"


def test_durable_queue_and_redeclare_with_different_durable(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, durable=True)
    try:
        ch.queue_declare(q, durable=True)
        ch.queue_declare(q, passive=True)
        ch.queue_declare(q, passive=True, durable=False)   # passive ignores the flags
        text = expect_channel_close(lambda: ch.queue_declare(q, durable=False), 406)
        assert text == ("PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '/': "
                        "received 'false' but current is 'true'" % q)
    finally:
        amqp.channel().queue_delete(q)


def test_redeclare_with_different_auto_delete(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=False)
    try:
        text = expect_channel_close(lambda: ch.queue_declare(q, auto_delete=True), 406)
        assert text == ("PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '%s' in "
                        "vhost '/': received 'true' but current is 'false'" % q)
    finally:
        amqp.channel().queue_delete(q)


def test_redeclare_with_different_arguments(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True, arguments={"x-queue-mode": "default"})
    text = expect_channel_close(
        lambda: ch.queue_declare(q, auto_delete=True, arguments={"x-queue-mode": "lazy"}), 406)
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'x-queue-mode' for queue '%s' in "
                    "vhost '/': received 'lazy' but current is 'default'" % q)
    # an argument present on one side only is described with its type
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.queue_declare(q, auto_delete=True), 406)
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'x-queue-mode' for queue '%s' in "
                    "vhost '/': received none but current is the value 'default' of type 'longstr'" % q)


def test_queue_types_not_implemented_are_refused(amqp, uname):
    # mqnode has classic queues only; it refuses other types rather than pretending.
    if TARGET == "rabbitmq":
        pytest.skip("RabbitMQ implements stream queues; mqnode refuses them")
    ch = amqp.channel()
    q = uname()
    text = expect_channel_close(
        lambda: ch.queue_declare(q, durable=True, arguments={"x-queue-type": "stream"}), 406)
    assert "queue type 'stream' is not supported" in text


def test_quorum_declare_is_accepted(amqp, uname):
    # Clients declare quorum queues and depend on it: mqnode takes the declare (a classic
    # queue, not replicated yet, with a warning in its log) and its equivalent redeclare.
    ch = amqp.channel()
    q = uname()
    ok = ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
    assert ok.method.queue == q
    again = ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
    assert again.method.queue == q
    ch.queue_delete(q)


def test_redeclare_with_different_unknown_argument_is_accepted(amqp, uname):
    # RabbitMQ only compares the queue arguments it knows (x-max-length, x-message-ttl, ...);
    # other arguments are not part of the equivalence check.
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True, arguments={"x-custom": "a", "custom": 1})
    ok = ch.queue_declare(q, auto_delete=True, arguments={"x-custom": "b"})
    assert ok.method.queue == q
    ch.queue_declare(q, auto_delete=True)


def test_exclusive_queue(amqp, uname):
    owner = amqp.connect()
    och = owner.channel()
    q = uname()
    och.queue_declare(q, exclusive=True)
    other = amqp.connect()
    locked = ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in vhost '/'. "
              "It could be originally declared on another connection or the exclusive property "
              "value does not match that of the original declaration." % q)
    for op in (lambda c: c.queue_declare(q, exclusive=True),
               lambda c: c.queue_declare(q),
               lambda c: c.queue_declare(q, passive=True),
               lambda c: c.basic_consume(q, lambda *a: None),
               lambda c: c.basic_get(q),
               lambda c: c.queue_delete(q),
               lambda c: c.queue_purge(q),
               lambda c: c.queue_bind(q, "amq.fanout")):
        ch = other.channel()
        text = expect_channel_close(lambda: op(ch), 405)
        assert text == locked
    # publishing into it from another connection is allowed
    ch = other.channel()
    ch.basic_publish("", q, b"from-other")
    sync(ch)
    assert och.basic_get(q, auto_ack=True)[2] == b"from-other"
    # the owner may use it from another channel
    och2 = owner.channel()
    och2.queue_declare(q, exclusive=True)
    # the queue is deleted when the owning connection closes
    owner.close()
    ch = other.channel()
    wait_until(lambda: _queue_missing(other, q), 10, what="exclusive queue deletion")


def _queue_missing(conn, q):
    ch = conn.channel()
    try:
        ch.queue_declare(q, passive=True)
    except pika.exceptions.ChannelClosedByBroker as e:
        assert e.reply_code == 404
        return True
    ch.close()
    return False


def test_exclusive_flag_mismatch_same_connection(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    # RabbitMQ: redeclaring a non-exclusive queue as exclusive -> 405 as well
    text = expect_channel_close(lambda: ch.queue_declare(q, exclusive=True, auto_delete=True), 405)
    assert text.startswith("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s'" % q)


def test_auto_delete_queue(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    # never consumed: not deleted
    ch.queue_declare(q, passive=True)
    t1 = ch.basic_consume(q, lambda *a: None)
    t2 = ch.basic_consume(q, lambda *a: None)
    assert queue_counts(ch, q) == (0, 2)
    ch.basic_cancel(t1)
    assert queue_counts(ch, q) == (0, 1)   # one consumer left: still there
    ch.basic_cancel(t2)
    wait_until(lambda: _queue_missing(conn, q), 10, what="auto-delete queue deletion")


def test_auto_delete_queue_deleted_when_consumer_channel_closes(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    cch = conn.channel()
    cch.basic_consume(q, lambda *a: None)
    cch.close()
    wait_until(lambda: _queue_missing(conn, q), 10, what="auto-delete queue deletion")


def test_declare_ok_counts(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    sync(ch)
    assert queue_counts(ch, q) == (5, 0)
    cch = conn.channel()
    cch.basic_qos(prefetch_count=2)
    got = []
    cch.basic_consume(q, lambda c, m, p, b: got.append(m.delivery_tag))
    collect(conn, got, expected=2)
    assert len(got) == 2
    # ready messages only; unacked ones are not counted
    assert queue_counts(ch, q) == (3, 1)
    ok = ch.queue_declare(q, auto_delete=True)   # non-passive redeclare reports the same
    assert (ok.method.message_count, ok.method.consumer_count) == (3, 1)


def test_bind_unbind(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    ch.queue_bind(q, "amq.direct", q + ".k")
    ch.basic_publish("amq.direct", q + ".k", b"1")
    sync(ch)
    assert [b for _, _, b in drain_get(ch, q)] == [b"1"]
    ch.queue_bind(q, "amq.direct", q + ".k")  # duplicate bind is a no-op
    ch.queue_unbind(q, "amq.direct", q + ".k")
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(m.reply_code))
    ch.basic_publish("amq.direct", q + ".k", b"2", mandatory=True)
    sync(ch)
    ch.connection.process_data_events(time_limit=0.2)
    assert drain_get(ch, q) == []
    assert returned == [312]
    # unbinding something that is not bound is fine in RabbitMQ
    ch.queue_unbind(q, "amq.direct", "never-bound")


def test_bind_missing_queue_or_exchange(amqp, uname):
    ch = amqp.channel()
    q, x = uname(), uname("x")
    text = expect_channel_close(lambda: ch.queue_bind(q, "amq.direct", "k"), 404)
    assert text == "NOT_FOUND - no queue '%s' in vhost '/'" % q
    ch = amqp.channel()
    ch.queue_declare(q, auto_delete=True)
    text = expect_channel_close(lambda: ch.queue_bind(q, x, "k"), 404)
    assert text == "NOT_FOUND - no exchange '%s' in vhost '/'" % x


def test_purge(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    for i in range(4):
        ch.basic_publish("", q, b"%d" % i)
    sync(ch)
    m, _, _ = ch.basic_get(q)  # one unacked: purge does not touch it
    assert ch.queue_purge(q).method.message_count == 3
    assert ch.queue_purge(q).method.message_count == 0
    assert queue_counts(ch, q)[0] == 0
    ch.basic_reject(m.delivery_tag, requeue=True)
    sync(ch)
    assert queue_counts(ch, q)[0] == 1


def test_purge_missing_queue(amqp, uname):
    ch = amqp.channel()
    q = uname()
    text = expect_channel_close(lambda: ch.queue_purge(q), 404)
    assert text == "NOT_FOUND - no queue '%s' in vhost '/'" % q


def test_delete_if_unused(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q)
    tag = ch.basic_consume(q, lambda *a: None)
    dch = conn.channel()
    text = expect_channel_close(lambda: dch.queue_delete(q, if_unused=True), 406)
    assert text == "PRECONDITION_FAILED - queue '%s' in vhost '/' in use" % q
    ch.basic_cancel(tag)
    dch = conn.channel()
    assert dch.queue_delete(q, if_unused=True).method.message_count == 0


def test_delete_if_empty(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x")
    sync(ch)
    text = expect_channel_close(lambda: ch.queue_delete(q, if_empty=True), 406)
    assert text == "PRECONDITION_FAILED - queue '%s' in vhost '/' not empty" % q
    ch = amqp.channel()
    ch.queue_purge(q)
    ch.queue_delete(q, if_empty=True)
    assert _queue_missing(ch.connection, q)


def test_delete_returns_message_count_and_missing_is_ok(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q)
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    sync(ch)
    assert ch.queue_delete(q).method.message_count == 3
    # RabbitMQ: deleting a missing queue is not an error (delete-ok, count 0)
    assert ch.queue_delete(q).method.message_count == 0


def test_reserved_queue_names(amqp, uname):
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.queue_declare("amq.foo"), 403)
    assert text == "ACCESS_REFUSED - queue name 'amq.foo' contains reserved prefix 'amq.*'"
    ch = amqp.channel()
    # passive declare of an amq.* name is a plain lookup
    text = expect_channel_close(lambda: ch.queue_declare("amq.foo", passive=True), 404)
    assert text == "NOT_FOUND - no queue 'amq.foo' in vhost '/'"


def test_passive_declare_empty_name(amqp):
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.queue_declare("", passive=True), 404)
    assert text == "NOT_FOUND - no queue '' in vhost '/'"


def test_long_queue_name(amqp, uname):
    ch = amqp.channel()
    q = (uname() + "-" + "n" * 255)[:255]
    ok = ch.queue_declare(q, auto_delete=True)
    assert ok.method.queue == q
    ch.basic_publish("", q, b"long")
    assert ch.basic_get(q, auto_ack=True)[2] == b"long"


def test_fifo_order(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    for i in range(50):
        ch.basic_publish("", q, b"%d" % i)
    sync(ch)
    assert [b for _, _, b in drain_get(ch, q)] == [b"%d" % i for i in range(50)]
