"""Message content: body sizes, frame splitting, property round trips, user_id
validation, max_message_size."""

import datetime
import decimal
import hashlib
import os
import struct
import time

import pika
import pytest

import amqp_raw as R
from helpers import collect, expect_channel_close, sync

FRAME_MAX = 131072
MiB = 1024 * 1024


def _body(n):
    # deterministic, non-repeating-ish content so misordered frames are detected
    seed = hashlib.sha256(b"%d" % n).digest()
    reps = n // len(seed) + 1
    return (seed * reps)[:n] if n < 4096 else (os.urandom(4096) * (n // 4096 + 1))[:n]


def _roundtrip(conn, q, body, via="get"):
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, body)
    if via == "get":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m, p, got = ch.basic_get(q, auto_ack=True)
            if m is not None:
                return got
            time.sleep(0.05)
        raise AssertionError("message never arrived")
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    collect(conn, got, expected=1, timeout=60, settle=0)
    assert len(got) == 1
    return got[0]


SIZES = [0, 1, FRAME_MAX - 9, FRAME_MAX - 8, FRAME_MAX - 7, FRAME_MAX, FRAME_MAX + 1,
         2 * (FRAME_MAX - 8), MiB, 16 * MiB]


@pytest.mark.parametrize("size", SIZES)
def test_body_sizes(amqp, uname, size):
    conn = amqp.connect()
    body = _body(size)
    got = _roundtrip(conn, uname(), body, via="get" if size % 2 == 0 else "consume")
    assert len(got) == size and got == body


@pytest.mark.parametrize("size", [0, 1, 4087, 4088, 4089, 4096, 3 * 4088, 100000, MiB])
def test_body_sizes_client_frame_max_4096(amqp, uname, size):
    conn = amqp.connect(frame_max=4096)
    assert conn._impl.params.frame_max == 4096
    body = _body(size)
    got = _roundtrip(conn, uname(), body, via="consume" if size % 2 else "get")
    assert got == body


@pytest.mark.time_limit(300)
def test_body_128_mib(amqp, uname):
    # 128 MiB == RabbitMQ's default max_message_size (134217728): still accepted.
    conn = amqp.connect()
    size = 128 * MiB
    body = b"\xab" * size
    t0 = time.monotonic()
    got = _roundtrip(conn, uname(), body)
    assert len(got) == size and got == body
    assert time.monotonic() - t0 < 240


def test_body_split_in_irregular_frames_raw(amqp, uname):
    q = uname()
    amqp.channel().queue_declare(q, auto_delete=True)
    r = amqp.raw()
    r.open_channel(1)
    parts = [b"a", b"bc" * 10, b"", b"d" * 1000, b"e"]   # an empty body frame is legal
    body = b"".join(parts)
    r.send_method(1, R.BASIC_PUBLISH, R.basic_publish_args("", q))
    r.send(R.header_frame(1, len(body)))
    for part in parts:
        r.send(R.body_frame(1, part))
    r.send_method(1, R.BASIC_GET, R.basic_get_args(q, no_ack=True))
    r.expect(R.BASIC_GET_OK, channel=1)
    hdr = r.read_frame()
    assert hdr.type == R.FRAME_HEADER
    assert struct.unpack(">HHQ", hdr.payload[:12])[2] == len(body)
    got = b""
    while len(got) < len(body):
        f = r.read_frame()
        assert f.type == R.FRAME_BODY and f.channel == 1
        got += f.payload
    assert got == body


def test_zero_size_body_has_no_body_frame_raw(amqp, uname):
    q = uname()
    amqp.channel().queue_declare(q, auto_delete=True)
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.BASIC_PUBLISH, R.basic_publish_args("", q))
    r.send(R.header_frame(1, 0))
    r.send_method(1, R.BASIC_GET, R.basic_get_args(q, no_ack=True))
    r.expect(R.BASIC_GET_OK, channel=1)
    hdr = r.read_frame()
    assert hdr.type == R.FRAME_HEADER
    # the next frame is the reply to the following method, not an empty body frame
    r.send_method(1, R.BASIC_GET, R.basic_get_args(q, no_ack=True))
    assert r.read_frame().method == R.BASIC_GET_EMPTY


ALL_HEADERS = {
    "str": "text \u00fc\u4e2d",
    "empty-str": "",
    "bytes": b"\x00\x01\xfe\xff",
    "int-small": 42,
    "int-zero": 0,
    "int-max32": 2 ** 31 - 1,
    "int-min32": -(2 ** 31),
    "int-large": 2 ** 40 + 3,
    # (negative 64-bit ints: pika 1.2 encodes 'l' signed but decodes it unsigned, so
    # they are covered byte-for-byte by test_raw_field_types_round_trip_bytes instead)
    "int-neg": -7,
    "bool-true": True,
    "bool-false": False,
    "decimal": decimal.Decimal("3.14"),
    "decimal-neg": decimal.Decimal("-0.005"),
    "timestamp": datetime.datetime(2021, 6, 7, 8, 9, 10),
    "void": None,
    "nested": {"a": {"b": {"c": "deep"}}, "n": 1, "l": [1, 2]},
    "empty-table": {},
    "list": [1, "two", True, None, {"k": "v"}, [2, [3]], b"\x02", 2 ** 40,
             decimal.Decimal("1.5"), datetime.datetime(2000, 1, 1)],
    "empty-list": [],
}


def test_all_properties_round_trip(amqp, uname):
    conn = amqp.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    props = pika.BasicProperties(
        content_type="application/x-test; charset=utf-8",
        content_encoding="gzip",
        headers=ALL_HEADERS,
        delivery_mode=2,
        priority=7,
        correlation_id="corr-123",
        reply_to="reply.queue",
        expiration="600000",
        message_id="msg-\u00e9",
        timestamp=1700000000,
        type="my.type",
        user_id="guest",
        app_id="the-app",
        cluster_id="cluster-x",
    )
    ch.basic_publish("", q, b"payload", props)
    for via in ("get", "consume"):
        if via == "consume":
            ch.basic_publish("", q, b"payload", props)
            got = []
            ch.basic_consume(q, lambda c, m, p, b: got.append((p, b)), auto_ack=True)
            collect(conn, got, expected=1)
            p, b = got[0]
        else:
            m, p, b = ch.basic_get(q, auto_ack=True)
        assert b == b"payload"
        for name in ("content_type", "content_encoding", "delivery_mode", "priority",
                     "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                     "type", "user_id", "app_id", "cluster_id"):
            assert getattr(p, name) == getattr(props, name), name
        assert p.headers == ALL_HEADERS


def test_no_properties_round_trip(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"bare")
    m, p, b = ch.basic_get(q, auto_ack=True)
    assert b == b"bare"
    for name in ("content_type", "headers", "delivery_mode", "priority", "message_id",
                 "timestamp", "user_id", "expiration"):
        assert getattr(p, name) is None, name


def _raw_header_payload(table_bytes):
    # flags: content_type (bit 15) + headers (bit 13) + delivery_mode (bit 12)
    flags = (1 << 15) | (1 << 13) | (1 << 12)
    props = R.shortstr("raw/types") + table_bytes + struct.pack(">B", 1)
    return flags, props


def test_raw_field_types_round_trip_bytes(amqp, uname):
    """Every AMQP/RabbitMQ field type in headers comes back byte-for-byte."""
    q = uname()
    amqp.channel().queue_declare(q, auto_delete=True)
    fields = [
        (b"b", struct.pack(">b", -5)), (b"B", struct.pack(">B", 250)),
        (b"s", struct.pack(">h", -300)), (b"u", struct.pack(">H", 60000)),
        (b"I", struct.pack(">i", -70000)), (b"i", struct.pack(">I", 4000000000)),
        (b"l", struct.pack(">q", -(2 ** 60))), (b"f", struct.pack(">f", 1.5)),
        (b"d", struct.pack(">d", -2.25)), (b"D", struct.pack(">Bi", 2, 314)),
        (b"S", R.longstr("long string")), (b"x", R.longstr(b"\x00bin")),
        (b"T", struct.pack(">Q", 1600000000)), (b"t", b"\x01"), (b"V", b""),
        (b"F", R.table({"in": "ner"})),
        (b"A", struct.pack(">I", 7) + b"I" + struct.pack(">i", 1) + b"t\x00"),
    ]
    body = b"".join(R.shortstr("k" + t.decode()) + t + v for t, v in fields)
    table_bytes = struct.pack(">I", len(body)) + body
    flags, props = _raw_header_payload(table_bytes)
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(1, R.BASIC_PUBLISH, R.basic_publish_args("", q))
    r.send(R.header_frame(1, 3, flags=flags, props=props))
    r.send(R.body_frame(1, b"abc"))
    r.send_method(1, R.BASIC_GET, R.basic_get_args(q, no_ack=True))
    r.expect(R.BASIC_GET_OK, channel=1)
    hdr = r.read_frame()
    assert hdr.type == R.FRAME_HEADER
    cls, weight, size, rflags = struct.unpack(">HHQH", hdr.payload[:14])
    assert (cls, weight, size, rflags) == (60, 0, 3, flags)
    assert hdr.payload[14:] == props
    rd = R.Reader(hdr.payload[14:])
    assert rd.shortstr() == "raw/types"
    decoded = rd.table()
    assert decoded["ku"] == 60000 and decoded["kf"] == 1.5 and decoded["kV"] is None
    assert r.read_frame().payload == b"abc"


def test_user_id_must_match(amqp, uname):
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"ok", pika.BasicProperties(user_id="guest"))

    def pub():
        ch.basic_publish("", q, b"bad", pika.BasicProperties(user_id="bob"))
        sync(ch)
    text = expect_channel_close(pub, 406)
    assert text == "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'"
    ch = amqp.channel()
    assert ch.queue_declare(q, passive=True).method.message_count == 1


def test_max_message_size(broker_factory, clients_for, uname):
    b = broker_factory(max_message_size=MiB)
    cl = clients_for(b)
    conn = cl.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"x" * MiB)            # exactly the limit: accepted
    sync(ch)
    assert ch.queue_declare(q, passive=True).method.message_count == 1

    def pub():
        ch.basic_publish("", q, b"x" * (MiB + 1))
        sync(ch)
    text = expect_channel_close(pub, 406)
    assert text == "PRECONDITION_FAILED - message size %d is larger than configured max size %d" % (
        MiB + 1, MiB)
    # only the channel is closed
    ch2 = conn.channel()
    assert ch2.queue_declare(q, passive=True).method.message_count == 1
    ch2.basic_publish("", q, b"small")
    sync(ch2)
    assert ch2.queue_declare(q, passive=True).method.message_count == 2
