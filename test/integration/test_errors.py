"""Protocol errors: channel vs connection errors, exact reply codes/texts, and
robustness against garbage input."""

import random
import struct
import time

import pytest

import amqp_raw as R
from helpers import collect, expect_channel_close


def _close(r, timeout=10):
    return r.wait_connection_close(timeout)


def test_channel_error_leaves_connection_usable(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    keep = conn.channel()
    q = uname()
    keep.queue_declare(q, auto_delete=True)
    expect_channel_close(lambda: ch.queue_declare(uname(), passive=True), 404)
    assert conn.is_open and keep.is_open
    keep.basic_publish("", q, b"still")
    assert keep.basic_get(q, auto_ack=True)[2] == b"still"
    for _ in range(3):     # repeated channel errors do not accumulate into a connection error
        c = conn.channel()
        expect_channel_close(lambda: c.queue_declare(uname(), passive=True), 404)
    conn.channel().basic_qos(prefetch_count=1)


def test_method_on_never_opened_channel(amqp):
    r = amqp.raw()
    r.send_method(5, R.QUEUE_DECLARE, R.queue_declare_args("x"))
    assert _close(r) == {"reply_code": 504, "reply_text": "CHANNEL_ERROR - expected 'channel.open'",
                         "class_id": 50, "method_id": 10}


def test_method_on_closed_channel(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.CHANNEL_CLOSE, R.close_args())
    r.expect(R.CHANNEL_CLOSE_OK, channel=1)
    r.send_method(1, R.QUEUE_DECLARE, R.queue_declare_args("x"))
    assert _close(r) == {"reply_code": 504, "reply_text": "CHANNEL_ERROR - expected 'channel.open'",
                         "class_id": 50, "method_id": 10}


def test_content_header_without_publish(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send(R.header_frame(1, 5))
    assert _close(r) == {"reply_code": 505, "class_id": 0, "method_id": 0,
                         "reply_text": "UNEXPECTED_FRAME - expected method frame, got non method "
                                       "frame instead"}


def test_body_without_publish(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send(R.body_frame(1, b"abc"))
    assert _close(r) == {"reply_code": 505, "class_id": 0, "method_id": 0,
                         "reply_text": "UNEXPECTED_FRAME - expected method frame, got non method "
                                       "frame instead"}


def test_method_instead_of_content_header(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.BASIC_PUBLISH, R.basic_publish_args("", "x"))
    r.send_method(1, R.QUEUE_DECLARE, R.queue_declare_args("x"))
    assert _close(r) == {"reply_code": 505, "class_id": 60, "method_id": 40,
                         "reply_text": "UNEXPECTED_FRAME - expected content header for class 60, "
                                       "got non content header frame instead"}


def test_content_header_for_wrong_class(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.BASIC_PUBLISH, R.basic_publish_args("", "x"))
    r.send(R.header_frame(1, 10, class_id=50))
    assert _close(r) == {"reply_code": 505, "class_id": 60, "method_id": 40,
                         "reply_text": "UNEXPECTED_FRAME - expected content header for class 60, "
                                       "got one for class 50 instead"}


def test_body_frame_on_channel_zero(amqp):
    r = amqp.raw()
    r.send(R.body_frame(0, b"x"))
    assert _close(r) == {"reply_code": 505, "class_id": 0, "method_id": 0,
                         "reply_text": 'UNEXPECTED_FRAME - type 3, all octets = <<"x">>'}


def test_heartbeat_on_nonzero_channel(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send(R.frame(R.FRAME_HEARTBEAT, 1, b""))
    assert _close(r) == {"reply_code": 505, "class_id": 0, "method_id": 0,
                         "reply_text": "UNEXPECTED_FRAME - type 8, all octets = <<>>"}


def test_bad_frame_end(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send(R.frame(R.FRAME_METHOD, 1, R.method_payload(R.QUEUE_DECLARE, R.queue_declare_args("x")),
                   end=0x00))
    close = _close(r)
    assert (close["reply_code"], close["class_id"], close["method_id"]) == (501, 0, 0)
    # RabbitMQ: "FRAME_ERROR - type 1, all octets = <<...>>: {invalid_frame_end_marker,0}"
    assert close["reply_text"].startswith("FRAME_ERROR - type 1, all octets = <<")
    assert "invalid_frame_end_marker" in close["reply_text"]


def _declare_payload_of_size(size):
    """A queue.declare method payload of exactly `size` bytes."""
    base = R.method_payload(R.QUEUE_DECLARE, R.queue_declare_args("", exclusive=True,
                                                                  arguments={"pad": ""}))
    payload = R.method_payload(R.QUEUE_DECLARE, R.queue_declare_args(
        "", exclusive=True, arguments={"pad": "p" * (size - len(base))}))
    assert len(payload) == size
    return payload


@pytest.mark.parametrize("negotiated", [None, 4096])
def test_frame_larger_than_frame_max(amqp, negotiated):
    r = amqp.raw(frame_max=negotiated)
    fmax = r.frame_max
    r.open_channel(1)
    # a whole frame of frame_max octets (payload frame_max - 8) is allowed by the spec
    r.send(R.frame(R.FRAME_METHOD, 1, _declare_payload_of_size(fmax - 8)))
    r.expect(R.QUEUE_DECLARE_OK, channel=1)
    # RabbitMQ tolerates 8 extra octets ("frame size fudge"): payload == frame_max is accepted
    r.send(R.frame(R.FRAME_METHOD, 1, _declare_payload_of_size(fmax)))
    r.expect(R.QUEUE_DECLARE_OK, channel=1)
    # payload frame_max + 1 is a connection error; the text reports frame_max - 8 as the limit
    r.send(R.frame(R.FRAME_METHOD, 1, _declare_payload_of_size(fmax + 1)))
    close = _close(r)
    assert close == {"reply_code": 501, "class_id": 0, "method_id": 0,
                     "reply_text": "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,%d,%d}"
                                   % (fmax + 1, fmax - 8)}


def test_huge_frame_size_field(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send(struct.pack(">BHI", 1, 1, 0xFFFFFFF0))   # header only, no payload follows
    close = _close(r)
    assert close["reply_code"] == 501
    assert close["reply_text"] == ("FRAME_ERROR - type 1, all octets = <<>>: "
                                   "{frame_too_large,%d,131064}" % 0xFFFFFFF0)


def test_unknown_frame_type(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send(R.frame(7, 1, b"abc"))
    assert _close(r) == {"reply_code": 501, "class_id": 0, "method_id": 0,
                         "reply_text": 'FRAME_ERROR - type 7, all octets = <<"abc">>: unknown_frame'}


def test_truncated_method_arguments(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.QUEUE_DECLARE, b"\x00\x00\x05ab")
    # RabbitMQ reports undecodable arguments as 501 FRAME_ERROR (not 502 SYNTAX_ERROR)
    assert _close(r) == {"reply_code": 501, "class_id": 50, "method_id": 10,
                         "reply_text": "FRAME_ERROR - cannot decode <<0,0,5,97,98>>"}


def test_method_frame_too_short_for_ids(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send(R.frame(R.FRAME_METHOD, 1, b"\x00\x32"))
    assert _close(r) == {"reply_code": 501, "class_id": 0, "method_id": 0,
                         "reply_text": "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame"}


def test_content_header_frame_too_short(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.BASIC_PUBLISH, R.basic_publish_args("", "x"))
    r.send(R.frame(R.FRAME_HEADER, 1, b"\x00\x3c\x00"))
    assert _close(r) == {"reply_code": 501, "class_id": 0, "method_id": 0,
                         "reply_text": "FRAME_ERROR - type 2, all octets = <<0,60,0>>: unknown_frame"}


def test_trailing_bytes_after_method_arguments(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.QUEUE_DECLARE, R.queue_declare_args("x") + b"extra")
    close = _close(r)
    assert (close["reply_code"], close["class_id"], close["method_id"]) == (501, 50, 10)
    assert close["reply_text"] == ("FRAME_ERROR - cannot decode "
                                   "<<0,0,1,120,0,0,0,0,0,101,120,116,114,97>>")


def test_unknown_field_type_in_arguments_drops_connection(amqp):
    r = amqp.raw()
    r.open_channel(1)
    args = R.queue_declare_args("", exclusive=True, arguments={"a": "b"})
    assert args[-6:-5] == b"S"
    r.send_method(1, R.QUEUE_DECLARE, args[:-6] + b"Z" + args[-5:])   # field type S -> Z
    frames = r.wait_eof(timeout=10)
    # RabbitMQ 3.10 drops the connection without connection.close; a 501/502 close is tolerated.
    assert all(f.method == R.CONNECTION_CLOSE and f.args["reply_code"] in (501, 502)
               for f in frames), frames


@pytest.mark.parametrize("cm", [(60, 999), (77, 10), (10, 99)], ids=["bad-method", "bad-class",
                                                                     "bad-conn-method"])
def test_unknown_class_or_method(amqp, cm):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1 if cm[0] != 10 else 0, cm, b"")
    t0 = time.monotonic()
    frames = r.wait_eof(timeout=10)
    assert time.monotonic() - t0 < 9, "connection not closed"
    # RabbitMQ 3.10 drops the TCP connection without connection.close
    # (the reader crashes on unknown_method_id); a 540/503 close is tolerated.
    closes = [f for f in frames if f.method == R.CONNECTION_CLOSE]
    assert all(f.args["reply_code"] in (503, 540) for f in closes), closes
    assert all(f.type in (R.FRAME_METHOD, R.FRAME_HEARTBEAT) for f in frames)


def test_non_connection_method_on_channel_zero(amqp):
    r = amqp.raw()
    r.send_method(0, R.QUEUE_DECLARE, R.queue_declare_args("x"))
    assert _close(r) == {"reply_code": 504, "class_id": 50, "method_id": 10,
                         "reply_text": "CHANNEL_ERROR - unexpected method in connection state running"}


def test_connection_method_on_channel_one(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.CONNECTION_OPEN, R.open_args())
    assert _close(r) == {"reply_code": 503, "class_id": 10, "method_id": 40,
                         "reply_text": "COMMAND_INVALID - unimplemented method"}


def test_second_connection_open(amqp):
    r = amqp.raw()
    r.send_method(0, R.CONNECTION_OPEN, R.open_args())
    assert _close(r) == {"reply_code": 504, "class_id": 10, "method_id": 40,
                         "reply_text": "CHANNEL_ERROR - unexpected method in connection state running"}


def test_channel_open_before_connection_open(amqp):
    r = amqp.raw(handshake=False)
    r.send_protocol_header()
    r.expect(R.CONNECTION_START)
    r.send_method(0, R.CONNECTION_START_OK, R.start_ok_args("guest", "guest"))
    r.expect(R.CONNECTION_TUNE)
    r.send_method(0, R.CONNECTION_TUNE_OK, R.tune_ok_args(2047, 131072, 0))
    r.send_method(1, R.CHANNEL_OPEN, R.shortstr(""))
    assert _close(r) == {"reply_code": 505, "class_id": 0, "method_id": 0,
                         "reply_text": "UNEXPECTED_FRAME - type 1, all octets = <<0,20,0,10,0>>"}


def test_method_before_start_ok_is_silent_close(amqp):
    # RabbitMQ: anything but start-ok during the handshake -> silent close (after ~3 s)
    r = amqp.raw(handshake=False)
    r.send_protocol_header()
    r.expect(R.CONNECTION_START)
    r.send_method(0, R.QUEUE_DECLARE, R.queue_declare_args("x"))
    assert r.wait_eof(timeout=15) == []


def test_connection_error_does_not_affect_other_connections(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    r = amqp.raw()
    r.send(R.frame(7, 0, b"boom"))
    assert _close(r)["reply_code"] == 501
    ch.basic_publish("", q, b"unaffected")
    assert ch.basic_get(q, auto_ack=True)[2] == b"unaffected"


# ---------------------------------------------------------------------------
# garbage
# ---------------------------------------------------------------------------

@pytest.mark.time_limit(120)
def test_garbage_input_does_not_hurt_the_broker(amqp, uname):
    rnd = random.Random(20240607)
    # a well-behaved client that stays connected during the garbage
    good = amqp.connect()
    gch = good.channel()
    q = uname()
    gch.queue_declare(q, auto_delete=True)
    received = []
    gch.basic_consume(q, lambda c, m, p, b: received.append(b), auto_ack=True)

    socks = []
    expect_closed = []
    deadline = time.monotonic() + 60

    def new_sock(handshake):
        r = amqp.raw(handshake=handshake)
        socks.append(r)
        return r

    for i in range(40):
        assert time.monotonic() < deadline
        kind = i % 8
        try:
            if kind == 0:     # random bytes instead of a protocol header
                r = new_sock(False)
                r.send(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300))))
                expect_closed.append(r)
            elif kind == 1:   # random bytes after a handshake
                r = new_sock(True)
                r.send(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(8, 2000))))
            elif kind == 2:   # huge size field
                r = new_sock(True)
                r.send(struct.pack(">BHI", rnd.choice([1, 2, 3]), rnd.randint(0, 5),
                                   rnd.randint(1 << 20, 0xFFFFFFFF)))
                expect_closed.append(r)
            elif kind == 3:   # truncated frame, then hang up
                r = new_sock(True)
                full = R.method_frame(0, R.CONNECTION_CLOSE, R.close_args())
                r.send(full[:rnd.randint(1, len(full) - 1)])
                r.close()
            elif kind == 4:   # partial protocol header, then hang up
                r = new_sock(False)
                r.send(R.PROTOCOL_HEADER[:rnd.randint(1, 7)])
                r.close()
            elif kind == 5:   # valid frames with random method ids / args
                r = new_sock(True)
                r.open_channel(1)
                r.send_method(1, (rnd.choice([10, 20, 40, 50, 60, 85, 90]), rnd.randint(0, 130)),
                              bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 50))))
            elif kind == 6:   # content frames with absurd sizes
                r = new_sock(True)
                r.open_channel(1)
                r.send_method(1, R.BASIC_PUBLISH, R.basic_publish_args("", q))
                r.send(R.header_frame(1, rnd.randint(0, 1 << 62)))
                r.send(R.body_frame(1, b"x" * rnd.randint(0, 100)))
                r.close()
            else:             # abrupt close in the middle of the handshake
                r = new_sock(False)
                r.send_protocol_header()
                r.close()
        except (OSError, R.PeerClosed, AssertionError):
            pass   # the broker is allowed to drop any of these
        if i % 10 == 9:
            gch.basic_publish("", q, b"during-%d" % i)
            good.process_data_events(time_limit=0.01)

    for r in expect_closed:
        try:
            r.wait_eof(timeout=15)
        except (OSError, ValueError):
            pass
    for r in socks:
        r.close()

    collect(good, received, expected=4, timeout=10)
    assert received == [b"during-9", b"during-19", b"during-29", b"during-39"]
    # a brand new client works normally
    fresh = amqp.connect()
    fch = fresh.channel()
    fq = uname()
    fch.queue_declare(fq, auto_delete=True)
    fch.basic_publish("", fq, b"after garbage")
    got = []
    fch.basic_consume(fq, lambda c, m, p, b: got.append(b), auto_ack=True)
    collect(fresh, got, expected=1)
    assert got == [b"after garbage"]
