"""Exchanges: declare/passive/redeclare, auto-delete, internal, alternate exchange,
delete if-unused, exchange-to-exchange bindings, predeclared and reserved names."""

import pika
import pytest

import amqp_raw as R
from helpers import drain_get, expect_channel_close, expect_connection_close, sync


@pytest.mark.parametrize("etype", ["direct", "fanout", "topic", "headers"])
def test_declare_each_type(amqp, uname, etype):
    ch = amqp.channel()
    x = uname("x")
    ch.exchange_declare(x, exchange_type=etype, auto_delete=False)
    ch.exchange_declare(x, exchange_type=etype, passive=True)
    ch.exchange_declare(x, exchange_type=etype)  # identical redeclare is fine
    ch.exchange_delete(x)
    expect_channel_close(lambda: ch.exchange_declare(x, passive=True), 404)


def test_passive_declare_missing_closes_only_the_channel(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    other = conn.channel()
    x = uname("x")
    text = expect_channel_close(lambda: ch.exchange_declare(x, passive=True), 404)
    assert text == "NOT_FOUND - no exchange '%s' in vhost '/'" % x
    assert ch.is_closed and conn.is_open
    # an already open channel and a new one keep working
    other.basic_qos(prefetch_count=1)
    ch2 = conn.channel()
    q = ch2.queue_declare("", exclusive=True).method.queue
    ch2.basic_publish("", q, b"ok")
    assert ch2.basic_get(q, auto_ack=True)[2] == b"ok"


def test_passive_declare_missing_raw_reply(amqp, uname):
    r = amqp.raw()
    r.open_channel(1)
    x = uname("x")
    args = (R.struct.pack(">H", 0) + R.shortstr(x) + R.shortstr("direct")
            + R.bits(True, False, False, False, False) + R.table({}))
    r.send_method(1, R.EXCHANGE_DECLARE, args)
    f = r.expect(R.CHANNEL_CLOSE, channel=1)
    assert f.args == {"reply_code": 404, "reply_text": "NOT_FOUND - no exchange '%s' in vhost '/'" % x,
                      "class_id": 40, "method_id": 10}
    r.send_method(1, R.CHANNEL_CLOSE_OK)
    r.open_channel(2)


def test_redeclare_with_different_type(amqp, uname):
    ch = amqp.channel()
    x = uname("x")
    ch.exchange_declare(x, exchange_type="direct", auto_delete=True)
    text = expect_channel_close(
        lambda: ch.exchange_declare(x, exchange_type="fanout", auto_delete=True), 406)
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'type' for exchange '%s' in vhost '/': "
                    "received 'fanout' but current is 'direct'" % x)


def test_redeclare_with_different_durable(amqp, uname):
    ch = amqp.channel()
    x = uname("x")
    ch.exchange_declare(x, exchange_type="direct", durable=False)
    try:
        text = expect_channel_close(
            lambda: ch.exchange_declare(x, exchange_type="direct", durable=True), 406)
        assert text == ("PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '%s' in "
                        "vhost '/': received 'true' but current is 'false'" % x)
    finally:
        amqp.channel().exchange_delete(x)


def test_unknown_exchange_type(amqp, uname):
    ch = amqp.channel()
    x = uname("x")
    # RabbitMQ: unknown type is a connection error 503 COMMAND_INVALID
    text = expect_connection_close(lambda: ch.exchange_declare(x, exchange_type="x-nope"), 503)
    assert text == "COMMAND_INVALID - unknown exchange type 'x-nope'"


def test_durable_exchange(amqp, uname):
    ch = amqp.channel()
    x = uname("x")
    ch.exchange_declare(x, exchange_type="topic", durable=True)
    try:
        ch.exchange_declare(x, exchange_type="topic", durable=True, passive=True)
    finally:
        ch.exchange_delete(x)


def test_auto_delete_exchange_deleted_when_last_binding_removed(amqp, uname):
    ch = amqp.channel()
    x, q1, q2 = uname("x"), uname(), uname()
    ch.exchange_declare(x, exchange_type="direct", auto_delete=True)
    # never bound: it is not deleted
    ch.exchange_declare(x, passive=True)
    ch.queue_declare(q1, auto_delete=False)
    ch.queue_declare(q2, auto_delete=False)
    ch.queue_bind(q1, x, "a")
    ch.queue_bind(q2, x, "b")
    ch.queue_unbind(q1, x, "a")
    ch.exchange_declare(x, passive=True)  # still one binding
    ch.queue_unbind(q2, x, "b")
    expect_channel_close(lambda: ch.exchange_declare(x, passive=True), 404)
    ch = amqp.channel()
    ch.queue_delete(q1)
    ch.queue_delete(q2)


def test_auto_delete_exchange_deleted_when_bound_queue_deleted(amqp, uname):
    ch = amqp.channel()
    x, q = uname("x"), uname()
    ch.exchange_declare(x, exchange_type="fanout", auto_delete=True)
    ch.queue_declare(q)
    ch.queue_bind(q, x)
    ch.queue_delete(q)
    expect_channel_close(lambda: ch.exchange_declare(x, passive=True), 404)


def test_internal_exchange(amqp, uname):
    ch = amqp.channel()
    src, internal, q = uname("src"), uname("int"), uname()
    ch.exchange_declare(src, exchange_type="fanout", auto_delete=True)
    ch.exchange_declare(internal, exchange_type="fanout", internal=True, auto_delete=True)
    ch.queue_declare(q, auto_delete=True)
    ch.queue_bind(q, internal)
    ch.exchange_bind(destination=internal, source=src)
    # routing through an internal exchange via an e2e binding works
    ch.basic_publish(src, "", b"via-e2e")
    sync(ch)
    assert ch.basic_get(q, auto_ack=True)[2] == b"via-e2e"
    # publishing to it directly is refused
    def pub():
        ch.basic_publish(internal, "", b"direct")
        sync(ch)
    text = expect_channel_close(pub, 403)
    assert text == "ACCESS_REFUSED - cannot publish to internal exchange '%s' in vhost '/'" % internal
    ch = amqp.channel()
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_alternate_exchange(amqp, uname):
    ch = amqp.channel()
    ae, x, q_ae, q_main = uname("ae"), uname("x"), uname(), uname()
    ch.exchange_declare(ae, exchange_type="fanout", auto_delete=True)
    ch.exchange_declare(x, exchange_type="direct", auto_delete=True,
                        arguments={"alternate-exchange": ae})
    ch.queue_declare(q_ae, auto_delete=True)
    ch.queue_declare(q_main, auto_delete=True)
    ch.queue_bind(q_ae, ae)
    ch.queue_bind(q_main, x, "known")
    returned = []
    ch.add_on_return_callback(lambda *a: returned.append(a))
    ch.basic_publish(x, "known", b"routed")
    ch.basic_publish(x, "unknown", b"to-ae", mandatory=True)
    sync(ch)
    amqp_conn = ch.connection
    amqp_conn.process_data_events(time_limit=0.3)
    assert returned == []  # routed by the AE: not returned even though mandatory
    assert [b for _, _, b in drain_get(ch, q_main)] == [b"routed"]
    got = drain_get(ch, q_ae)
    assert [b for _, _, b in got] == [b"to-ae"]
    m = got[0][0]
    assert m.exchange == x and m.routing_key == "unknown"


def test_alternate_exchange_missing_is_unroutable(amqp, uname):
    ch = amqp.channel()
    x = uname("x")
    ch.exchange_declare(x, exchange_type="direct", auto_delete=True,
                        arguments={"alternate-exchange": uname("missing")})
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    ch.queue_bind(q, x, "k")
    returned = []
    ch.add_on_return_callback(lambda ch_, m, p, b: returned.append((m.reply_code, m.reply_text, b)))
    ch.basic_publish(x, "nope", b"lost", mandatory=True)
    sync(ch)
    ch.connection.process_data_events(time_limit=0.3)
    assert returned == [(312, "NO_ROUTE", b"lost")]


def test_exchange_delete_if_unused(amqp, uname):
    ch = amqp.channel()
    x, q = uname("x"), uname()
    ch.exchange_declare(x, exchange_type="direct")
    ch.queue_declare(q, auto_delete=True)
    ch.queue_bind(q, x, "k")
    text = expect_channel_close(lambda: ch.exchange_delete(x, if_unused=True), 406)
    assert text == "PRECONDITION_FAILED - exchange '%s' in vhost '/' in use" % x
    ch = amqp.channel()
    ch.queue_unbind(q, x, "k")
    ch.exchange_delete(x, if_unused=True)
    expect_channel_close(lambda: ch.exchange_declare(x, passive=True), 404)


def test_exchange_delete_removes_bindings_and_missing_is_ok(amqp, uname):
    ch = amqp.channel()
    x, q = uname("x"), uname()
    ch.exchange_declare(x, exchange_type="direct")
    ch.queue_declare(q, auto_delete=True)
    ch.queue_bind(q, x, "k")
    ch.exchange_delete(x)
    # RabbitMQ: deleting a non-existent exchange is not an error (delete-ok)
    ch.exchange_delete(x)
    ch.exchange_declare(x, exchange_type="direct", auto_delete=True)
    ch.queue_bind(q, x, "other")
    ch.basic_publish(x, "k", b"old binding is gone")
    ch.basic_publish(x, "other", b"new")
    sync(ch)
    assert [b for _, _, b in drain_get(ch, q)] == [b"new"]


def test_exchange_to_exchange_binding(amqp, uname):
    ch = amqp.channel()
    src, dst, q = uname("src"), uname("dst"), uname()
    ch.exchange_declare(src, exchange_type="topic", auto_delete=True)
    ch.exchange_declare(dst, exchange_type="direct", auto_delete=True)
    ch.queue_declare(q, auto_delete=True)
    ch.queue_bind(q, dst, "a.b")
    ch.exchange_bind(destination=dst, source=src, routing_key="a.*")
    ch.basic_publish(src, "a.b", b"1")       # src matches a.*, dst matches a.b
    ch.basic_publish(src, "a.c", b"2")       # src matches, dst does not
    ch.basic_publish(src, "x.b", b"3")       # src does not match
    sync(ch)
    assert [b for _, _, b in drain_get(ch, q)] == [b"1"]
    ch.exchange_unbind(destination=dst, source=src, routing_key="a.*")
    # RabbitMQ: an auto-delete exchange also goes away when its last e2e binding
    # (as source) is removed; dst still has its queue binding and stays.
    ch.exchange_declare(dst, passive=True)
    expect_channel_close(lambda: ch.exchange_declare(src, passive=True), 404)
    ch = amqp.channel()
    ch.exchange_declare(src, exchange_type="topic", auto_delete=False)
    ch.basic_publish(src, "a.b", b"4")
    sync(ch)
    assert drain_get(ch, q) == []
    ch.exchange_delete(src)


def test_exchange_bind_missing_source(amqp, uname):
    ch = amqp.channel()
    dst = uname("dst")
    ch.exchange_declare(dst, exchange_type="fanout", auto_delete=True)
    missing = uname("missing")
    text = expect_channel_close(lambda: ch.exchange_bind(destination=dst, source=missing), 404)
    assert text == "NOT_FOUND - no exchange '%s' in vhost '/'" % missing


def test_e2e_binding_cycle_delivers_once(amqp, uname):
    ch = amqp.channel()
    a, b, q = uname("a"), uname("b"), uname()
    ch.exchange_declare(a, exchange_type="fanout", auto_delete=True)
    ch.exchange_declare(b, exchange_type="fanout", auto_delete=True)
    ch.queue_declare(q, auto_delete=True)
    ch.exchange_bind(destination=b, source=a)
    ch.exchange_bind(destination=a, source=b)
    ch.queue_bind(q, a)
    ch.queue_bind(q, b)
    ch.basic_publish(a, "", b"once")
    sync(ch)
    assert [x for _, _, x in drain_get(ch, q)] == [b"once"]
    ch.exchange_unbind(destination=a, source=b)
    ch.exchange_unbind(destination=b, source=a)


@pytest.mark.parametrize("name", ["amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"])
def test_predeclared_exchanges_exist(amqp, name):
    ch = amqp.channel()
    ch.exchange_declare(name, passive=True)


def test_predeclared_exchange_types(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    ch.queue_bind(q, "amq.direct", "k")
    ch.queue_bind(q, "amq.fanout", "ignored")
    ch.queue_bind(q, "amq.topic", "t.#")
    ch.queue_bind(q, "amq.headers", "", arguments={"x-match": "all", "h": uname("h")})
    ch.queue_bind(q, "amq.match", "", arguments={"x-match": "any", "m": "yes"})
    ch.basic_publish("amq.direct", "k", b"direct")
    ch.basic_publish("amq.direct", "k2", b"direct-miss")
    ch.basic_publish("amq.fanout", "whatever", b"fanout")
    ch.basic_publish("amq.topic", "t.x.y", b"topic")
    ch.basic_publish("amq.match", "", b"match", pika.BasicProperties(headers={"m": "yes"}))
    ch.basic_publish("amq.headers", "", b"headers-miss", pika.BasicProperties(headers={"h": "other"}))
    sync(ch)
    got = sorted(b for _, _, b in drain_get(ch, q))
    assert got == sorted([b"direct", b"fanout", b"topic", b"match"])


def test_default_exchange_routes_by_queue_name(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"hello")
    ch.basic_publish("", uname("no-such-queue"), b"dropped silently")
    sync(ch)
    got = drain_get(ch, q)
    assert [b for _, _, b in got] == [b"hello"]
    assert got[0][0].exchange == "" and got[0][0].routing_key == q


def test_default_exchange_declare_refused(amqp):
    # RabbitMQ: even a passive declare of "" is refused with 403
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.exchange_declare("", passive=True), 403)
    assert text == "ACCESS_REFUSED - operation not permitted on the default exchange"
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.exchange_declare("", exchange_type="direct", durable=True), 403)
    assert text == "ACCESS_REFUSED - operation not permitted on the default exchange"


def test_amq_default_name_is_not_an_exchange(amqp, uname):
    # RabbitMQ 3.10: "amq.default" is only used for permission checks; as an
    # exchange name it does not exist (passive declare / publish / bind -> 404).
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.exchange_declare("amq.default", passive=True), 404)
    assert text == "NOT_FOUND - no exchange 'amq.default' in vhost '/'"
    ch = amqp.channel()
    def pub():
        ch.basic_publish("amq.default", "x", b"")
        sync(ch)
    text = expect_channel_close(pub, 404)
    assert text == "NOT_FOUND - no exchange 'amq.default' in vhost '/'"


@pytest.mark.parametrize("name", ["amq.foo", "amq.x.y"])
def test_cannot_declare_amq_prefixed(amqp, name):
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.exchange_declare(name, exchange_type="direct"), 403)
    assert text == "ACCESS_REFUSED - exchange name '%s' contains reserved prefix 'amq.*'" % name


def test_redeclare_predeclared_exchange(amqp):
    # RabbitMQ: an equivalent (non-passive) redeclare of amq.direct is accepted;
    # equivalence is checked before the reserved-prefix rule.
    ch = amqp.channel()
    ch.exchange_declare("amq.direct", exchange_type="direct", durable=True)
    text = expect_channel_close(lambda: ch.exchange_declare("amq.direct", exchange_type="direct",
                                                            durable=False), 406)
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' "
                    "in vhost '/': received 'false' but current is 'true'")
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.exchange_declare("amq.topic", exchange_type="fanout",
                                                            durable=True), 406)
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.topic' "
                    "in vhost '/': received 'fanout' but current is 'topic'")


@pytest.mark.parametrize("name", ["amq.direct", "amq.fanout", "amq.topic", "amq.match",
                                  "amq.foo", "amq.default"])
def test_cannot_delete_amq_prefixed(amqp, name):
    # RabbitMQ refuses any amq.* delete, also for names that do not exist
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.exchange_delete(name), 403)
    assert text == "ACCESS_REFUSED - deletion of system exchange '%s' in vhost '/' not allowed" % name
    if name not in ("amq.foo", "amq.default"):
        amqp.channel().exchange_declare(name, passive=True)


def test_cannot_delete_default_exchange(amqp):
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.exchange_delete(""), 403)
    assert text == "ACCESS_REFUSED - operation not permitted on the default exchange"


def test_cannot_bind_to_default_exchange(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    text = expect_channel_close(lambda: ch.queue_bind(q, "", "x"), 403)
    assert text == "ACCESS_REFUSED - operation not permitted on the default exchange"
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.queue_bind(q, "", q), 403)
    assert text == "ACCESS_REFUSED - operation not permitted on the default exchange"
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.queue_unbind(q, "", q), 403)
    assert text == "ACCESS_REFUSED - operation not permitted on the default exchange"
    ch = amqp.channel()
    x = uname("x")
    ch.exchange_declare(x, exchange_type="fanout", auto_delete=True)
    text = expect_channel_close(lambda: ch.exchange_bind(destination=x, source=""), 403)
    assert text == "ACCESS_REFUSED - operation not permitted on the default exchange"


def test_delete_if_unused_counts_only_source_bindings(amqp, uname):
    ch = amqp.channel()
    src, dst = uname("src"), uname("dst")
    ch.exchange_declare(src, exchange_type="fanout")
    ch.exchange_declare(dst, exchange_type="fanout")
    ch.exchange_bind(destination=dst, source=src)
    text = expect_channel_close(lambda: ch.exchange_delete(src, if_unused=True), 406)
    assert text == "PRECONDITION_FAILED - exchange '%s' in vhost '/' in use" % src
    ch = amqp.channel()
    # RabbitMQ: being the destination of a binding does not make an exchange "used";
    # deleting it also removes the e2e binding, so src becomes unused.
    ch.exchange_delete(dst, if_unused=True)
    ch.exchange_delete(src, if_unused=True)
    expect_channel_close(lambda: ch.exchange_declare(src, passive=True), 404)
