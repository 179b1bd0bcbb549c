"""Publisher confirms and transactions."""

import pika.exceptions as pex
import pytest

import amqp_raw as R
from helpers import expect_channel_close, queue_counts, sync, wait_message_count


def test_confirm_select_pika(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    ch.confirm_delivery()
    for i in range(20):
        ch.basic_publish("", q, b"%d" % i)   # raises NackError/UnroutableError if not acked
    assert queue_counts(ch, q)[0] == 20


def test_confirm_mandatory_unroutable_pika(amqp, uname):
    ch = amqp.channel()
    ch.confirm_delivery()
    with pytest.raises(pex.UnroutableError):
        ch.basic_publish("amq.direct", uname("nobody"), b"x", mandatory=True)
    # not mandatory: silently dropped but still confirmed
    ch.basic_publish("amq.direct", uname("nobody"), b"x")


def _collect_acks(r, n, timeout=10):
    """Read basic.ack frames until every tag 1..n is confirmed; returns the frames."""
    acked = set()
    frames = []
    while len(acked) < n:
        f = r.read_method(timeout)
        assert f.method == R.BASIC_ACK, "expected basic.ack, got %r" % f
        frames.append(f.args)
        tag, multiple = f.args["delivery_tag"], f.args["multiple"]
        if multiple:
            acked.update(range(1, tag + 1))
        else:
            acked.add(tag)
    assert acked == set(range(1, n + 1))
    return frames


def test_confirms_raw_all_acked(amqp, uname):
    q = uname()
    amqp.channel().queue_declare(q, auto_delete=True)
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.CONFIRM_SELECT, R.bits(False))
    r.expect(R.CONFIRM_SELECT_OK, channel=1)
    n = 50
    for i in range(n):
        r.send_method(1, R.BASIC_PUBLISH, R.basic_publish_args("", q))
        r.send(R.header_frame(1, 1))
        r.send(R.body_frame(1, b"m"))
    frames = _collect_acks(r, n)
    tags = [f["delivery_tag"] for f in frames]
    assert tags == sorted(tags) and len(set(tags)) == len(tags)


def test_confirm_select_nowait_and_unroutable_order_raw(amqp, uname):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.CONFIRM_SELECT, R.bits(True))   # nowait: no select-ok
    x = "amq.direct"
    r.send_method(1, R.BASIC_PUBLISH, R.basic_publish_args(x, uname("nobody"), mandatory=True))
    r.send(R.header_frame(1, 2))
    r.send(R.body_frame(1, b"hi"))
    f = r.read_method()
    assert f.method == R.BASIC_RETURN, f                     # basic.return comes first ...
    assert f.args["reply_code"] == 312 and f.args["reply_text"] == "NO_ROUTE"
    assert r.read_frame().type == R.FRAME_HEADER
    assert r.read_frame().payload == b"hi"
    ack = r.expect(R.BASIC_ACK, channel=1)                   # ... then the ack for tag 1
    assert ack.args == {"delivery_tag": 1, "multiple": False}


def test_confirm_to_missing_exchange_closes_channel(amqp, uname):
    ch = amqp.channel()
    ch.confirm_delivery()
    x = uname("x")
    text = expect_channel_close(lambda: ch.basic_publish(x, "k", b"x"), 404)
    assert text == "NOT_FOUND - no exchange '%s' in vhost '/'" % x


def test_tx_commit(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    watch = amqp.channel()
    ch.tx_select()
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    sync(ch)
    assert queue_counts(watch, q)[0] == 0     # not visible before commit
    ch.tx_commit()
    assert queue_counts(watch, q)[0] == 3
    # the channel stays transactional: next batch also waits for commit
    ch.basic_publish("", q, b"3")
    sync(ch)
    assert queue_counts(watch, q)[0] == 3
    ch.tx_commit()
    assert queue_counts(watch, q)[0] == 4


def test_tx_rollback(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    ch.tx_select()
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    ch.tx_rollback()
    assert queue_counts(ch, q)[0] == 0
    ch.basic_publish("", q, b"c")
    ch.tx_commit()
    m, _, b = ch.basic_get(q, auto_ack=True)
    assert b == b"c" and m.message_count == 0


def test_tx_acks_take_effect_on_commit(amqp, uname):
    conn = amqp.connect()
    setup = conn.channel()
    q = uname()
    setup.queue_declare(q)
    try:
        for i in range(3):
            setup.basic_publish("", q, b"%d" % i)
        sync(setup)
        # acks inside a tx, then rollback: acks discarded, messages stay unacked
        ch = conn.channel()
        ch.tx_select()
        tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
        for t in tags:
            ch.basic_ack(t)
        ch.tx_rollback()
        ch.close()                       # unacked -> requeued
        wait_message_count(setup, q, 3)
        # acks inside a tx, then commit: messages gone
        ch = conn.channel()
        ch.tx_select()
        tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
        ch.basic_ack(tags[-1], multiple=True)
        ch.tx_commit()
        ch.close()
        sync(setup)
        assert queue_counts(setup, q)[0] == 0
    finally:
        setup.queue_delete(q)


def test_tx_ack_not_applied_before_commit(amqp, uname):
    conn = amqp.connect()
    setup = conn.channel()
    q = uname()
    setup.queue_declare(q)
    try:
        setup.basic_publish("", q, b"x")
        sync(setup)
        ch = conn.channel()
        ch.tx_select()
        m, _, _ = ch.basic_get(q)
        ch.basic_ack(m.delivery_tag)
        sync(ch)
        ch.close()                        # never committed: message requeued
        wait_message_count(setup, q, 1)
    finally:
        setup.queue_delete(q)


def test_tx_commit_without_select(amqp):
    ch = amqp.channel()
    text = expect_channel_close(ch.tx_commit, 406)
    assert text == "PRECONDITION_FAILED - channel is not transactional"
    ch = amqp.channel()
    text = expect_channel_close(ch.tx_rollback, 406)
    assert text == "PRECONDITION_FAILED - channel is not transactional"


def test_tx_and_confirm_are_exclusive(amqp):
    ch = amqp.channel()
    ch.tx_select()
    text = expect_channel_close(ch.confirm_delivery, 406)
    assert text == "PRECONDITION_FAILED - cannot switch from tx to confirm mode"
    ch = amqp.channel()
    ch.confirm_delivery()
    text = expect_channel_close(ch.tx_select, 406)
    assert text == "PRECONDITION_FAILED - cannot switch from confirm to tx mode"


def test_tx_select_twice_is_fine(amqp):
    ch = amqp.channel()
    ch.tx_select()
    ch.tx_select()
    ch.tx_commit()
