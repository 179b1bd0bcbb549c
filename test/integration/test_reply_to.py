"""Direct reply-to (amq.rabbitmq.reply-to)."""

import pika

from helpers import collect, expect_channel_close, sync

REPLY_TO = "amq.rabbitmq.reply-to"


def test_direct_reply_to_rpc(amqp, uname):
    server_conn = amqp.connect()
    sch = server_conn.channel()
    rpc_q = uname("rpc")
    sch.queue_declare(rpc_q, auto_delete=True)

    client_conn = amqp.connect()
    cch = client_conn.channel()
    replies = []
    cch.basic_consume(REPLY_TO, lambda c, m, p, b: replies.append((m, p, b)), auto_ack=True)
    cch.basic_publish("", rpc_q, b"ping",
                      pika.BasicProperties(reply_to=REPLY_TO, correlation_id="c-1"))

    requests = []
    sch.basic_consume(rpc_q, lambda c, m, p, b: requests.append((m, p, b)))
    collect(server_conn, requests, expected=1, timeout=5, settle=0)
    m, p, b = requests[0]
    assert b == b"ping"
    # the server rewrote reply_to into a routable pseudo-queue name
    assert p.reply_to.startswith(REPLY_TO + ".") and len(p.reply_to) > len(REPLY_TO) + 1
    sch.basic_publish("", p.reply_to, b"pong", pika.BasicProperties(correlation_id=p.correlation_id))
    sch.basic_ack(m.delivery_tag)

    collect(client_conn, replies, expected=1, timeout=5)
    assert len(replies) == 1
    rm, rp, rb = replies[0]
    assert rb == b"pong" and rp.correlation_id == "c-1"
    assert rm.routing_key == p.reply_to and rm.exchange == ""

    # a second round trip over the same pseudo queue works too
    cch.basic_publish("", rpc_q, b"ping2", pika.BasicProperties(reply_to=REPLY_TO))
    collect(server_conn, requests, expected=2, timeout=5, settle=0)
    p2 = requests[1][1]
    assert p2.reply_to == p.reply_to   # same token for the same channel
    sch.basic_publish("", p2.reply_to, b"pong2")
    collect(client_conn, replies, expected=2, timeout=5)
    assert [x[2] for x in replies] == [b"pong", b"pong2"]


def test_direct_reply_to_requires_no_ack(amqp):
    ch = amqp.channel()
    text = expect_channel_close(lambda: ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False), 406)
    assert text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"


def test_direct_reply_to_without_consumer(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)

    def pub():
        ch.basic_publish("", q, b"x", pika.BasicProperties(reply_to=REPLY_TO))
        sync(ch)
    text = expect_channel_close(pub, 406)
    assert text == "PRECONDITION_FAILED - fast reply consumer does not exist"


def test_direct_reply_to_reply_after_requester_gone_is_dropped(amqp, uname):
    conn = amqp.connect()
    sch = conn.channel()
    rpc_q = uname("rpc")
    sch.queue_declare(rpc_q, auto_delete=True)
    client = amqp.connect()
    cch = client.channel()
    cch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    cch.basic_publish("", rpc_q, b"req", pika.BasicProperties(reply_to=REPLY_TO))
    sync(cch)
    m, p, b = sch.basic_get(rpc_q, auto_ack=True)
    client.close()
    sch.basic_publish("", p.reply_to, b"late reply")   # silently dropped
    sync(sch)
    assert sch.is_open
