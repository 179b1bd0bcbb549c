"""Channels: many per connection, close/close-ok, channel_max, channel.flow."""

import amqp_raw as R
from helpers import expect_connection_close


def test_hundred_channels_on_one_connection(amqp, uname):
    conn = amqp.connect()
    chans = [conn.channel() for _ in range(100)]
    assert len({c.channel_number for c in chans}) == 100
    q = uname()
    chans[0].queue_declare(q, auto_delete=True)
    for i, c in enumerate(chans):
        c.basic_publish("", q, b"%d" % i)
    for c in chans[50:]:
        c.close()
    for c in chans[:50]:
        c.basic_qos(prefetch_count=1)
    n = chans[1].queue_declare(q, passive=True).method.message_count
    assert n == 100


def test_channel_close_and_reopen_same_number_raw(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.CHANNEL_CLOSE, R.close_args(200, "bye"))
    r.expect(R.CHANNEL_CLOSE_OK, channel=1)
    r.open_channel(1)
    r.send_method(1, R.QUEUE_DECLARE, R.queue_declare_args("", exclusive=True))
    ok = r.expect(R.QUEUE_DECLARE_OK, channel=1)
    assert ok.args["queue"].startswith("amq.gen-")


def test_channel_close_ok_from_client_after_server_close(amqp, uname):
    """Server closes a channel (404); client answers close-ok; channel number is reusable."""
    r = amqp.raw()
    r.open_channel(3)
    r.send_method(3, R.QUEUE_DECLARE, R.queue_declare_args(uname(), passive=True))
    f = r.expect(R.CHANNEL_CLOSE, channel=3)
    assert f.args["reply_code"] == 404
    assert (f.args["class_id"], f.args["method_id"]) == (50, 10)
    # Until close-ok is sent, further methods on the channel are dropped (spec/RabbitMQ).
    r.send_method(3, R.QUEUE_DECLARE, R.queue_declare_args("", exclusive=True))
    r.send_method(3, R.CHANNEL_CLOSE_OK)
    r.open_channel(3)
    r.send_method(3, R.QUEUE_DECLARE, R.queue_declare_args("", exclusive=True))
    r.expect(R.QUEUE_DECLARE_OK, channel=3)


def test_high_channel_numbers(amqp):
    r = amqp.raw()
    r.open_channel(2047)
    r.open_channel(1000)


def test_second_channel_open_is_connection_error(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.CHANNEL_OPEN, R.shortstr(""))
    close = r.wait_connection_close()
    assert close == {"reply_code": 504, "reply_text": "CHANNEL_ERROR - second 'channel.open' seen",
                     "class_id": 20, "method_id": 10}


def test_channel_open_on_channel_zero(amqp):
    r = amqp.raw()
    r.send_method(0, R.CHANNEL_OPEN, R.shortstr(""))
    close = r.wait_connection_close()
    assert close == {"reply_code": 504,
                     "reply_text": "CHANNEL_ERROR - unexpected method in connection state running",
                     "class_id": 20, "method_id": 10}


def test_channel_flow(amqp):
    ch = amqp.channel()
    assert ch.flow(True) is True
    # RabbitMQ 3.10 does not implement client-initiated flow stop: 540 connection close.
    expect_connection_close(lambda: ch.flow(False), 540, "NOT_IMPLEMENTED - active=false")


def test_channel_flow_raw(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.CHANNEL_FLOW, R.bits(True))
    assert r.expect(R.CHANNEL_FLOW_OK, channel=1).args["active"] is True
    r.send_method(1, R.CHANNEL_FLOW, R.bits(False))
    close = r.wait_connection_close()
    assert close == {"reply_code": 540, "reply_text": "NOT_IMPLEMENTED - active=false",
                     "class_id": 20, "method_id": 20}


def test_channel_max(broker_factory, clients_for):
    b = broker_factory(channel_max=8)
    cl = clients_for(b)

    r = cl.raw(handshake=False)
    r.send_protocol_header()
    r.expect(R.CONNECTION_START)
    r.send_method(0, R.CONNECTION_START_OK, R.start_ok_args("guest", "guest"))
    assert r.expect(R.CONNECTION_TUNE).args["channel_max"] == 8
    r.close()

    # pika adopts the server's channel_max and refuses locally beyond it
    conn = cl.connect()
    assert conn._impl.params.channel_max == 8

    # RabbitMQ limits the NUMBER of open channels, not the channel id:
    # with channel_max 8, channel id 9 (or 2000) can be opened while fewer than 8 are open.
    r = cl.raw()
    r.open_channel(9)
    r.open_channel(2000)
    r.send_method(2000, R.CHANNEL_CLOSE, R.close_args())
    r.expect(R.CHANNEL_CLOSE_OK, channel=2000)
    for n in range(1, 8):          # now 8 channels are open: 9 + 1..7
        r.open_channel(n)
    r.send_method(100, R.CHANNEL_OPEN, R.shortstr(""))
    close = r.wait_connection_close()
    # RabbitMQ: opening a channel beyond channel_max is a connection error 530
    assert close == {"reply_code": 530, "class_id": 0, "method_id": 0,
                     "reply_text": "NOT_ALLOWED - number of channels opened (8) has reached "
                                   "the negotiated channel_max (8)"}

    # closing a channel frees a slot
    r = cl.raw()
    for n in range(1, 9):
        r.open_channel(n)
    r.send_method(5, R.CHANNEL_CLOSE, R.close_args())
    r.expect(R.CHANNEL_CLOSE_OK, channel=5)
    r.open_channel(12)

    # a client negotiating a lower channel_max gets that limit enforced
    r = cl.raw(channel_max=2)
    r.open_channel(1)
    r.open_channel(2)
    r.send_method(3, R.CHANNEL_OPEN, R.shortstr(""))
    close = r.wait_connection_close()
    assert close["reply_code"] == 530
    assert close["reply_text"] == ("NOT_ALLOWED - number of channels opened (2) has reached "
                                   "the negotiated channel_max (2)")

    # other connections are unaffected
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
