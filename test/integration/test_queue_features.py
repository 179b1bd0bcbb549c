"""Queue arguments: x-max-length(-bytes) with x-overflow, x-message-ttl and per-message
expiration, x-expires, dead-lettering with RabbitMQ's x-death header."""

import time

import pika
import pytest

from brokers import target
from helpers import expect_channel_close, wait_until

TARGET = target()


def dl_pair(ch, uname, **args):
    """A queue whose dead letters go through the default exchange to a second queue."""
    q, dlq = uname(), uname()
    ch.queue_declare(dlq, auto_delete=False)
    arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    arguments.update(args)
    ch.queue_declare(q, arguments=arguments)
    return q, dlq


def bodies(ch, q):
    out = []
    while True:
        m, _, body = ch.basic_get(q, auto_ack=True)
        if m is None:
            return out
        out.append(body)


@pytest.fixture
def cleanup(amqp):
    names = []
    yield names
    ch = amqp.channel()
    for n in names:
        ch.queue_delete(n)


def test_max_length_drop_head(amqp, uname, cleanup):
    ch = amqp.channel()
    q = uname()
    cleanup.append(q)
    ch.queue_declare(q, arguments={"x-max-length": 3})
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    # RabbitMQ's counts trail its channel a little: wait rather than race
    wait_until(lambda: ch.queue_declare(q, passive=True).method.message_count == 3, timeout=10)
    assert bodies(ch, q) == [b"2", b"3", b"4"]


def test_max_length_bytes(amqp, uname, cleanup):
    ch = amqp.channel()
    q = uname()
    cleanup.append(q)
    ch.queue_declare(q, arguments={"x-max-length-bytes": 10})
    for b in (b"aaaa", b"bbbb", b"cccc"):
        ch.basic_publish("", q, b)
    assert bodies(ch, q) == [b"bbbb", b"cccc"]


def test_reject_publish_nacks_the_publisher(amqp, uname, cleanup):
    ch = amqp.channel()
    q = uname()
    cleanup.append(q)
    ch.queue_declare(q, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"3")
    assert bodies(ch, q) == [b"1", b"2"]


def check_death(props, reason, q, exchange, routing_key, count=1):
    deaths = props.headers["x-death"]
    d = deaths[0]
    assert d["reason"] == reason
    assert d["queue"] == q
    assert d["exchange"] == exchange
    assert d["routing-keys"] == [routing_key]
    assert d["count"] == count
    assert "time" in d
    assert props.headers["x-first-death-reason"] == reason
    assert props.headers["x-first-death-queue"] == q
    assert props.headers["x-first-death-exchange"] == exchange


def test_dead_letter_on_reject_and_nack(amqp, uname, cleanup):
    ch = amqp.channel()
    q, dlq = dl_pair(ch, uname)
    cleanup += [q, dlq]
    ch.basic_publish("", q, b"bad", pika.BasicProperties(headers={"keep": "me"}))
    ch.basic_publish("", q, b"worse")
    m1, _, _ = ch.basic_get(q)
    ch.basic_reject(m1.delivery_tag, requeue=False)
    m2, _, _ = ch.basic_get(q)
    ch.basic_nack(m2.delivery_tag, requeue=False)
    wait_until(lambda: ch.queue_declare(dlq, passive=True).method.message_count == 2, timeout=10)
    m, props, body = ch.basic_get(dlq, auto_ack=True)
    assert body == b"bad"
    assert m.routing_key == dlq and m.exchange == ""
    assert props.headers["keep"] == "me"
    check_death(props, "rejected", q, "", q)


def test_dead_letter_on_ttl_expiry(amqp, uname, cleanup):
    ch = amqp.channel()
    q, dlq = dl_pair(ch, uname, **{"x-message-ttl": 100})
    cleanup += [q, dlq]
    ch.basic_publish("", q, b"stale")
    wait_until(lambda: ch.queue_declare(dlq, passive=True).method.message_count == 1, timeout=10)
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    m, props, body = ch.basic_get(dlq, auto_ack=True)
    assert body == b"stale"
    check_death(props, "expired", q, "", q)


def test_per_message_expiration(amqp, uname, cleanup):
    ch = amqp.channel()
    q, dlq = dl_pair(ch, uname)
    cleanup += [q, dlq]
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="100"))
    ch.basic_publish("", q, b"forever")
    # expiry happens at the head: the short one goes first
    wait_until(lambda: ch.queue_declare(dlq, passive=True).method.message_count == 1, timeout=10)
    m, props, body = ch.basic_get(dlq, auto_ack=True)
    assert body == b"short"
    assert props.expiration is None
    assert props.headers["x-death"][0]["original-expiration"] == "100"
    assert bodies(ch, q) == [b"forever"]


def test_max_length_dead_letters_with_reason_maxlen(amqp, uname, cleanup):
    ch = amqp.channel()
    q, dlq = dl_pair(ch, uname, **{"x-max-length": 1})
    cleanup += [q, dlq]
    ch.basic_publish("", q, b"first")
    ch.basic_publish("", q, b"second")
    wait_until(lambda: ch.queue_declare(dlq, passive=True).method.message_count == 1, timeout=10)
    m, props, body = ch.basic_get(dlq, auto_ack=True)
    assert body == b"first"
    check_death(props, "maxlen", q, "", q)


def test_x_expires_deletes_an_unused_queue(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, arguments={"x-expires": 300})
    deadline = time.time() + 15
    while time.time() < deadline:
        # a passive declare counts as use and restarts the clock: probe less often than 300 ms
        time.sleep(1.0)
        probe = amqp.channel()
        try:
            probe.queue_declare(q, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 404
            return
    pytest.fail("queue with x-expires=300 still exists after 15 s")


@pytest.mark.parametrize("arg,value,why", [
    ("x-max-length", -1, "{value_negative,-1}"),
    ("x-message-ttl", "10", '"expected integer, got longstr"'),
    ("x-max-length", "10", '"expected integer, got longstr"'),
    ("x-expires", 0, "{value_zero,0}"),
])
def test_invalid_arguments(amqp, uname, arg, value, why):
    ch = amqp.channel()
    q = uname()
    text = expect_channel_close(lambda: ch.queue_declare(q, arguments={arg: value}), 406)
    assert text == "PRECONDITION_FAILED - invalid arg '%s' for queue '%s' in vhost '/': %s" % (arg, q, why)


def test_disk_alarm_blocks_publishers_but_not_consumers(broker_factory, uname):
    # An impossible disk_free_limit raises the disk alarm at start.
    if TARGET == "rabbitmq":
        pytest.skip("the RabbitMQ fixture does not translate disk_free_limit_bytes")
    b = broker_factory(disk_free_limit_bytes=2 ** 62)
    params = pika.ConnectionParameters(b.connect_host, b.port)
    consumer = pika.BlockingConnection(params)
    cch = consumer.channel()
    q = uname()
    cch.queue_declare(q)
    publisher = pika.BlockingConnection(params)
    blocked = []
    publisher.add_on_connection_blocked_callback(lambda conn, frame: blocked.append(frame.method.reason))
    pch = publisher.channel()
    pch.basic_publish("", q, b"first")    # read and routed; then the connection is blocked
    deadline = time.time() + 10
    while not blocked and time.time() < deadline:
        publisher.process_data_events(time_limit=0.1)
    assert blocked == ["low on disk"]
    pch.basic_publish("", q, b"second")   # sent by the client, not read by the broker
    publisher.process_data_events(time_limit=1.5)
    # consumers are not blocked: they declare, read and ack as usual
    assert cch.queue_declare(q, passive=True).method.message_count == 1
    m, _, body = cch.basic_get(q)
    assert body == b"first"
    cch.basic_ack(m.delivery_tag)
    assert cch.basic_get(q)[0] is None
    consumer.close()


def test_priority_queue_delivers_higher_priorities_first(amqp, uname, cleanup):
    ch = amqp.channel()
    q = uname()
    cleanup.append(q)
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    for body, prio in ((b"low", 1), (b"none", None), (b"high", 5), (b"mid", 3), (b"high2", 5), (b"over", 9)):
        ch.basic_publish("", q, body, pika.BasicProperties(priority=prio))
    wait_until(lambda: ch.queue_declare(q, passive=True).method.message_count == 6, timeout=10)
    # above x-max-priority counts as the maximum; equal priorities keep publish order
    assert bodies(ch, q) == [b"high", b"high2", b"over", b"mid", b"low", b"none"]


def test_consumer_priority(amqp, uname, cleanup):
    ch = amqp.channel()
    q = uname()
    cleanup.append(q)
    ch.queue_declare(q)
    got = {"low": 0, "high": 0}
    ch.basic_qos(prefetch_count=100)
    ch.basic_consume(q, lambda c, m, p, b: got.__setitem__("low", got["low"] + 1), auto_ack=False,
                     arguments={"x-priority": 1})
    ch.basic_consume(q, lambda c, m, p, b: got.__setitem__("high", got["high"] + 1), auto_ack=False,
                     arguments={"x-priority": 10})
    pub = amqp.channel()
    for i in range(20):
        pub.basic_publish("", q, b"%d" % i)
    wait_until(lambda: (amqp_events(amqp), sum(got.values()) == 20)[1], timeout=10)
    # the high-priority consumer has credit for all of them: it gets every message
    assert got == {"low": 0, "high": 20}


def test_single_active_consumer(amqp, uname, cleanup):
    ch = amqp.channel()
    q = uname()
    cleanup.append(q)
    ch.queue_declare(q, arguments={"x-single-active-consumer": True})
    got = {"a": [], "b": []}
    ta = ch.basic_consume(q, lambda c, m, p, b: (got["a"].append(b), c.basic_ack(m.delivery_tag)))
    ch.basic_consume(q, lambda c, m, p, b: (got["b"].append(b), c.basic_ack(m.delivery_tag)))
    for i in range(4):
        ch.basic_publish("", q, b"%d" % i)
    wait_until(lambda: (amqp_events(amqp), len(got["a"]) == 4)[1], timeout=10)
    ch.basic_cancel(ta)
    for i in range(4, 6):
        ch.basic_publish("", q, b"%d" % i)
    wait_until(lambda: (amqp_events(amqp), len(got["b"]) == 2)[1], timeout=10)
    assert got == {"a": [b"0", b"1", b"2", b"3"], "b": [b"4", b"5"]}


def amqp_events(amqp):
    for conn in amqp._conns:  # noqa: SLF001 - the fixture keeps the connections it opened
        conn.process_data_events(time_limit=0.05)


def test_policies_from_the_config(broker_factory, uname):
    if TARGET == "rabbitmq":
        pytest.skip("the RabbitMQ fixture does not translate /broker/policies (rabbitmqctl set_policy)")
    b = broker_factory(policies=[
        {"name": "limits", "pattern": "^lim\\.", "priority": 5, "apply_to": "queues",
         "definition": {"max-length": 2, "dead-letter-exchange": "", "dead-letter-routing-key": "dead.lim",
                        "ha-mode": "all"}},
        {"name": "ae", "pattern": "^routed$", "apply_to": "exchanges",
         "definition": {"alternate-exchange": "amq.fanout"}},
    ])
    c = pika.BlockingConnection(pika.ConnectionParameters(b.connect_host, b.port))
    ch = c.channel()
    ch.queue_declare("dead.lim")  # not matched by the policy itself
    ch.queue_declare("lim.q")
    ch.queue_declare("lim.client", arguments={"x-max-length": 1})   # lower than the policy: applies
    for q in ("lim.q", "lim.client"):
        for i in range(3):
            ch.basic_publish("", q, b"%d" % i)
    assert bodies(ch, "lim.q") == [b"1", b"2"]
    assert bodies(ch, "lim.client") == [b"2"]
    # overflowed messages went to the policy's dead-letter target
    dead = bodies(ch, "dead.lim")
    assert dead.count(b"0") == 2 and dead.count(b"1") == 1
    # the exchange policy gives "routed" an alternate exchange
    ch.exchange_declare("routed", "direct")
    ch.queue_declare("fan.q")
    ch.queue_bind("fan.q", "amq.fanout")
    ch.basic_publish("routed", "nowhere", b"via ae")
    assert bodies(ch, "fan.q") == [b"via ae"]
    c.close()
