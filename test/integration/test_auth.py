"""Users, vhosts and permissions (configure / write / read)."""

import pika.exceptions as pex
import pytest

import amqp_raw as R
from helpers import collect, expect_channel_close, sync


def _refused(kind, name, user="alice"):
    return "ACCESS_REFUSED - access to %s '%s' in vhost '/' refused for user '%s'" % (kind, name, user)


def test_alice_configure_denied(amqp, uname):
    ch = amqp.channel("alice", "alicepw")
    q = uname(prefix="bob.")
    text = expect_channel_close(lambda: ch.queue_declare(q, auto_delete=True), 403)
    assert text == _refused("queue", q)
    ch = amqp.channel("alice", "alicepw")
    x = uname("x", prefix="bob.")
    text = expect_channel_close(lambda: ch.exchange_declare(x, exchange_type="fanout"), 403)
    assert text == _refused("exchange", x)


def test_alice_own_queue_round_trip(amqp, uname):
    conn = amqp.connect("alice", "alicepw")
    ch = conn.channel()
    q = uname(prefix="alice.")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"to myself")      # write on amq.default is allowed
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    collect(conn, got, expected=1)
    assert got == [b"to myself"]
    ch.basic_publish("", q, b"again")
    collect(conn, got, expected=2)
    assert got == [b"to myself", b"again"]


def test_alice_passive_declare_needs_no_configure(amqp, uname):
    q = uname()
    amqp.channel().queue_declare(q, auto_delete=True)
    ch = amqp.channel("alice", "alicepw")
    ok = ch.queue_declare(q, passive=True)    # RabbitMQ checks no permission on passive declare
    assert ok.method.queue == q


def test_alice_read_denied(amqp, uname):
    q = uname()   # guest's queue, not matching ^alice\.
    gch = amqp.channel()
    gch.queue_declare(q, auto_delete=True)
    gch.basic_publish("", q, b"secret")
    sync(gch)
    conn = amqp.connect("alice", "alicepw")
    ch = conn.channel()
    text = expect_channel_close(lambda: ch.basic_get(q), 403)
    assert text == _refused("queue", q)
    ch = conn.channel()
    text = expect_channel_close(lambda: ch.basic_consume(q, lambda *a: None), 403)
    assert text == _refused("queue", q)
    ch = conn.channel()
    text = expect_channel_close(lambda: ch.queue_purge(q), 403)
    assert text == _refused("queue", q)
    ch = conn.channel()
    text = expect_channel_close(lambda: ch.queue_delete(q), 403)
    assert text == _refused("queue", q)
    assert gch.queue_declare(q, passive=True).method.message_count == 1


def test_alice_publish_to_default_exchange_any_queue(amqp, uname):
    # write permission is checked on the exchange (amq.default), not the queue
    q = uname()
    gch = amqp.channel()
    gch.queue_declare(q, auto_delete=True)
    ch = amqp.channel("alice", "alicepw")
    ch.basic_publish("", q, b"from alice")
    sync(ch)
    assert gch.basic_get(q, auto_ack=True)[2] == b"from alice"


def test_alice_write_denied_on_exchange(amqp):
    ch = amqp.channel("alice", "alicepw")

    def pub():
        ch.basic_publish("amq.direct", "k", b"x")
        sync(ch)
    text = expect_channel_close(pub, 403)
    assert text == _refused("exchange", "amq.direct")


def test_alice_bind_needs_read_on_exchange(amqp, uname):
    ch = amqp.channel("alice", "alicepw")
    q = uname(prefix="alice.")
    ch.queue_declare(q, auto_delete=True)
    # queue.bind needs write on the queue (ok) and read on the exchange (amq.topic: denied)
    text = expect_channel_close(lambda: ch.queue_bind(q, "amq.topic", "#"), 403)
    assert text == _refused("exchange", "amq.topic")


def test_alice_cannot_delete_others_queue(amqp, uname):
    q = uname()
    amqp.channel().queue_declare(q, auto_delete=True)
    ch = amqp.channel("alice", "alicepw")
    text = expect_channel_close(lambda: ch.queue_delete(q), 403)
    assert text == _refused("queue", q)


def test_vhost_without_permission_refused(amqp):
    with pytest.raises(pex.ProbableAccessDeniedError) as ei:
        amqp.connect(vhost="other")
    assert "530" in str(ei.value)
    r = amqp.raw(handshake=False)
    r.send_protocol_header()
    r.expect(R.CONNECTION_START)
    r.send_method(0, R.CONNECTION_START_OK, R.start_ok_args("alice", "alicepw"))
    r.expect(R.CONNECTION_TUNE)
    r.send_method(0, R.CONNECTION_TUNE_OK, R.tune_ok_args(2047, 131072, 0))
    r.send_method(0, R.CONNECTION_OPEN, R.open_args("other"))
    close = r.wait_connection_close()
    # RabbitMQ: 530 NOT_ALLOWED (not 403) on connection.open
    assert close == {"reply_code": 530,
                     "reply_text": "NOT_ALLOWED - access to vhost 'other' refused for user 'alice'",
                     "class_id": 10, "method_id": 40}

