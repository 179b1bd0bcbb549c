"""Protocol header, connection negotiation, authentication, heartbeats, SIGTERM."""

import socket
import time

import amqp
import pika.exceptions as pex
import pytest

import amqp_raw as R

# ---------------------------------------------------------------------------
# 1. protocol header
# ---------------------------------------------------------------------------


def test_protocol_header_accepted(amqp):
    r = amqp.raw(handshake=False)
    r.send_protocol_header()
    f = r.expect(R.CONNECTION_START)
    assert (f.args["version_major"], f.args["version_minor"]) == (0, 9)
    mechs = f.args["mechanisms"].split()
    assert "PLAIN" in mechs and "AMQPLAIN" in mechs
    assert "en_US" in f.args["locales"].split()


@pytest.mark.parametrize("header", [
    b"AMQP\x01\x01\x00\x0a",          # AMQP 0-10
    b"AMQP\x00\x00\x09\x00",          # 0-9-0 with protocol id 0
    b"AMQP\x00\x00\x08\x00",
    b"HTTP/1.1 200 OK\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"AMQP\x03\x01\x00\x00",          # AMQP 1.0 SASL (no AMQP 1.0 support)
], ids=["amqp0-10", "amqp0-9-0", "amqp0-8-0-bogus", "http-response", "http-get", "amqp1.0-sasl"])
def test_wrong_protocol_header_gets_supported_header_and_close(amqp, header):
    r = amqp.raw(handshake=False)
    r.send(header)
    data = r.recv_all_until_eof(timeout=10)
    assert data == R.PROTOCOL_HEADER


def test_connection_still_served_after_bad_headers(amqp, uname):
    for _ in range(5):
        r = amqp.raw(handshake=False)
        r.send(b"XXXXXXXX")
        assert r.recv_all_until_eof(timeout=10) == R.PROTOCOL_HEADER
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"still alive")
    m, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"still alive"


# ---------------------------------------------------------------------------
# 2. start / start-ok, server properties, tune
# ---------------------------------------------------------------------------

CAPABILITIES = ["publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                "consumer_cancel_notify", "connection.blocked", "authentication_failure_close",
                "per_consumer_qos", "direct_reply_to", "consumer_priorities"]


def _as_str(v):
    return v.decode() if isinstance(v, bytes) else v


def test_server_properties_pika(amqp):
    conn = amqp.connect()
    props = conn._impl.server_properties
    caps = props["capabilities"]
    for c in CAPABILITIES:
        assert caps.get(c) is True, "capability %s missing/false in %r" % (c, caps)
    # Product/version are deliberately RabbitMQ-compatible: kombu/celery look at them
    # (kombu's qos_semantics_matches_spec treats RabbitMQ >= 3.3 as "global=per channel").
    assert _as_str(props["product"]) == "RabbitMQ"
    version = tuple(int(x) for x in _as_str(props["version"]).split(".")[:2])
    assert version >= (3, 3)


def test_server_properties_raw(amqp):
    r = amqp.raw(handshake=False)
    r.send_protocol_header()
    sp = r.expect(R.CONNECTION_START).args["server_properties"]
    for c in CAPABILITIES:
        assert sp["capabilities"][c] is True
    for key in ("product", "version", "platform", "copyright", "information"):
        assert key in sp, key


def test_tune_proposed_values(amqp):
    r = amqp.raw()
    assert r.tune == {"channel_max": 2047, "frame_max": 131072, "heartbeat": 60}


def test_pika_negotiated_values(amqp):
    conn = amqp.connect()
    p = conn._impl.params
    assert (p.channel_max, p.frame_max, p.heartbeat) == (2047, 131072, 60)


def test_client_frame_max_4096_accepted(amqp, uname):
    conn = amqp.connect(frame_max=4096)
    assert conn._impl.params.frame_max == 4096
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    body = bytes(range(256)) * 100  # 25600 bytes -> several 4 KiB body frames
    ch.basic_publish("", q, body)
    m, _, got = ch.basic_get(q, auto_ack=True)
    assert got == body


def test_raw_frame_max_4096_server_respects_it(amqp, uname):
    """With frame_max 4096 negotiated, the server splits a big body into <=4096 byte frames."""
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    body = b"z" * 20000
    ch.basic_publish("", q, body)
    r = amqp.raw(frame_max=4096)
    r.open_channel(1)
    r.send_method(1, R.BASIC_GET, R.basic_get_args(q, no_ack=True))
    r.expect(R.BASIC_GET_OK)
    hdr = r.read_frame()
    assert hdr.type == R.FRAME_HEADER
    got = b""
    while len(got) < len(body):
        f = r.read_frame()
        assert f.type == R.FRAME_BODY
        assert len(f.payload) + 8 <= 4096
        got += f.payload
    assert got == body


def test_plain_login_pika(amqp):
    conn = amqp.connect()
    assert conn.is_open
    conn.channel().basic_qos(prefetch_count=1)


def test_amqplain_login_raw(amqp):
    r = amqp.raw(mechanism="AMQPLAIN")
    r.open_channel(1)


def test_amqplain_wrong_password_raw(amqp):
    r = amqp.raw(handshake=False)
    r.send_protocol_header()
    r.expect(R.CONNECTION_START)
    r.send_method(0, R.CONNECTION_START_OK, R.start_ok_args("guest", "nope", mechanism="AMQPLAIN"))
    close = r.wait_connection_close()
    assert close["reply_code"] == R.ACCESS_REFUSED
    assert close["reply_text"].startswith(
        "ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN")


def test_amqplain_login_py_amqp(broker):
    conn = amqp.Connection(host="%s:%d" % (broker.connect_host, broker.port), userid="guest",
                           password="guest", login_method="AMQPLAIN", connect_timeout=10)
    conn.connect()
    try:
        ch = conn.channel()
        q, _, _ = ch.queue_declare("", exclusive=True)
        assert q.startswith("amq.gen-")
    finally:
        conn.close()


def test_wrong_password_pika(amqp):
    with pytest.raises(pex.ProbableAuthenticationError) as ei:
        amqp.connect("guest", "wrong")
    assert "403" in str(ei.value) and "ACCESS_REFUSED" in str(ei.value)


def test_unknown_user_pika(amqp):
    with pytest.raises(pex.ProbableAuthenticationError):
        amqp.connect("nobody", "x")


def test_wrong_password_raw_with_auth_failure_close(amqp):
    r = amqp.raw(handshake=False)
    r.send_protocol_header()
    r.expect(R.CONNECTION_START)
    r.send_method(0, R.CONNECTION_START_OK, R.start_ok_args("guest", "wrong"))
    close = r.wait_connection_close()
    assert close == {"reply_code": 403, "class_id": 0, "method_id": 0,
                     "reply_text": "ACCESS_REFUSED - Login was refused using authentication "
                                   "mechanism PLAIN. For details see the broker logfile."}
    assert r.recv_all_until_eof(10) == b""


def test_wrong_password_raw_without_capability_is_silent_close(amqp):
    # RabbitMQ: client without authentication_failure_close gets no connection.close,
    # the socket is just closed (after a ~3 s anti brute-force delay).
    r = amqp.raw(handshake=False)
    r.send_protocol_header()
    r.expect(R.CONNECTION_START)
    r.send_method(0, R.CONNECTION_START_OK,
                  R.start_ok_args("guest", "wrong", client_properties={"product": "x"}))
    frames = r.wait_eof(timeout=15)
    assert frames == []


def test_unknown_mechanism_silent_close(amqp):
    # RabbitMQ: unknown SASL mechanism -> socket closed without connection.close (~3 s delay)
    r = amqp.raw(handshake=False)
    r.send_protocol_header()
    r.expect(R.CONNECTION_START)
    r.send_method(0, R.CONNECTION_START_OK, R.start_ok_args("guest", "guest", mechanism="FOO"))
    assert r.wait_eof(timeout=15) == []


def test_unknown_vhost_pika(amqp):
    with pytest.raises(pex.ProbableAccessDeniedError) as ei:
        amqp.connect(vhost="no-such-vhost")
    assert "530" in str(ei.value)


def test_unknown_vhost_raw(amqp):
    r = amqp.raw(handshake=False)
    with pytest.raises(AssertionError):
        r.handshake(vhost="no-such-vhost")
    # handshake() raised on the connection.close it read; redo it to see the frame.
    r2 = amqp.raw(handshake=False)
    r2.send_protocol_header()
    r2.expect(R.CONNECTION_START)
    r2.send_method(0, R.CONNECTION_START_OK, R.start_ok_args("guest", "guest"))
    r2.expect(R.CONNECTION_TUNE)
    r2.send_method(0, R.CONNECTION_TUNE_OK, R.tune_ok_args(2047, 131072, 0))
    r2.send_method(0, R.CONNECTION_OPEN, R.open_args("no-such-vhost"))
    close = r2.wait_connection_close()
    assert close == {"reply_code": 530, "reply_text": "NOT_ALLOWED - vhost no-such-vhost not found",
                     "class_id": 10, "method_id": 40}
    assert r2.recv_all_until_eof(10) == b""


def test_client_connection_close(amqp):
    r = amqp.raw()
    r.open_channel(1)
    r.send_method(0, R.CONNECTION_CLOSE, R.close_args(200, "bye"))
    r.expect(R.CONNECTION_CLOSE_OK)
    # RabbitMQ leaves closing the TCP socket to the client (it drops it itself only
    # after 30 s); frames sent after close-ok are ignored.
    r.send_method(1, R.QUEUE_DECLARE, R.queue_declare_args("", exclusive=True))
    with pytest.raises((socket.timeout, R.PeerClosed)):
        r.read_frame(timeout=1.0)


def _tune_ok_only(amqp, channel_max, frame_max, heartbeat=0):
    r = amqp.raw(handshake=False)
    r.send_protocol_header()
    r.expect(R.CONNECTION_START)
    r.send_method(0, R.CONNECTION_START_OK, R.start_ok_args("guest", "guest"))
    r.expect(R.CONNECTION_TUNE)
    r.send_method(0, R.CONNECTION_TUNE_OK, R.tune_ok_args(channel_max, frame_max, heartbeat))
    return r


@pytest.mark.parametrize("cmax,fmax", [
    (2047, 4095),      # below the 4096 minimum
    (2047, 200000),    # above the server's frame_max
    (2047, 0),         # 0 = unlimited, but the server has a limit
    (4000, 131072),    # above the server's channel_max
    (0, 131072),       # 0 = unlimited, but the server has a limit
], ids=["fmax-4095", "fmax-too-big", "fmax-0", "cmax-too-big", "cmax-0"])
def test_bad_tune_ok_closes_silently(amqp, cmax, fmax):
    # RabbitMQ: an out-of-range tune-ok is a handshake error: no connection.close,
    # the socket is closed (after a ~3 s delay).
    r = _tune_ok_only(amqp, cmax, fmax)
    assert r.wait_eof(timeout=15) == []


def test_tune_ok_lower_values_accepted(amqp):
    r = _tune_ok_only(amqp, 10, 4096)
    r.send_method(0, R.CONNECTION_OPEN, R.open_args("/"))
    r.expect(R.CONNECTION_OPEN_OK)
    r.open_channel(1)


def test_tune_ok_heartbeat_is_the_clients_choice(amqp):
    # RabbitMQ accepts any client heartbeat, also one above the proposed 60 s
    r = _tune_ok_only(amqp, 2047, 131072, heartbeat=600)
    r.send_method(0, R.CONNECTION_OPEN, R.open_args("/"))
    r.expect(R.CONNECTION_OPEN_OK)
    r.open_channel(1)


# ---------------------------------------------------------------------------
# heartbeats (fresh broker with heartbeat_s = 1)
# ---------------------------------------------------------------------------


def test_heartbeats(broker_factory, clients_for):
    b = broker_factory(heartbeat_s=1)
    cl = clients_for(b)

    # proposed value
    r = cl.raw(handshake=False)
    r.send_protocol_header()
    r.expect(R.CONNECTION_START)
    r.send_method(0, R.CONNECTION_START_OK, R.start_ok_args("guest", "guest"))
    tune = r.expect(R.CONNECTION_TUNE).args
    assert tune["heartbeat"] == 1
    r.close()

    # 1) client negotiating heartbeat 1 and sending heartbeats: receives heartbeats, stays up.
    #    (The rules, interval by interval, are unit-tested on HeartbeatMonitor; here a real
    #    socket sees them, with bounds loose enough for a loaded machine.)
    r = cl.raw(heartbeat=1)
    seen = 0
    deadline = time.monotonic() + 15.0
    next_beat = time.monotonic()
    while time.monotonic() < deadline and seen < 3:
        if time.monotonic() >= next_beat:
            r.send(R.frame(R.FRAME_HEARTBEAT, 0, b""))
            next_beat = time.monotonic() + 0.4
        try:
            f = r.read_frame(timeout=0.2)
        except socket.timeout:
            continue
        assert f.type == R.FRAME_HEARTBEAT and f.channel == 0 and f.payload == b"", f
        seen += 1
    assert seen >= 3, "expected heartbeat frames every interval, got %d in 15s" % seen
    r.open_channel(1)  # still alive

    # 2) client that goes silent after open is disconnected after ~2-3 intervals
    #    (RabbitMQ: TCP close without connection.close, ~3 s for heartbeat 1; it keeps
    #    sending its own heartbeats every heartbeat/2 until then)
    r2 = cl.raw(heartbeat=1)
    t0 = time.monotonic()
    frames = r2.wait_eof(timeout=20)
    elapsed = time.monotonic() - t0
    assert all(f.type == R.FRAME_HEARTBEAT for f in frames), frames
    assert elapsed >= 1.5, "disconnected after %.2fs, before two silent intervals" % elapsed

    # 3) client negotiating heartbeat 0: server sends no heartbeats and does not time out
    r3 = cl.raw(heartbeat=0)
    with pytest.raises(socket.timeout):
        r3.read_frame(timeout=3.5)
    r3.open_channel(1)

    # 4) pika with heartbeat=1 keeps the connection alive across idle periods
    conn = cl.connect(heartbeat=1)
    assert conn._impl.params.heartbeat == 1
    for _ in range(4):
        conn.process_data_events(time_limit=1.0)
    assert conn.is_open
    conn.channel().basic_qos(prefetch_count=1)


# ---------------------------------------------------------------------------
# 13. SIGTERM
# ---------------------------------------------------------------------------


def test_sigterm_closes_connections_with_320(broker_factory, clients_for, uname):
    b = broker_factory()
    cl = clients_for(b)
    conn = cl.connect()
    ch = conn.channel()
    q = uname()
    ch.queue_declare(q)
    r = cl.raw()
    r.open_channel(1)

    rc = b.terminate(timeout=30)
    assert rc == 0, "broker exit status after SIGTERM: %r" % rc

    close = r.wait_connection_close(timeout=5)
    assert close == {"reply_code": 320, "class_id": 0, "method_id": 0,
                     "reply_text": "CONNECTION_FORCED - broker forced connection closure "
                                   "with reason 'shutdown'"}

    with pytest.raises(pex.ConnectionClosedByBroker) as ei:
        for _ in range(50):
            conn.process_data_events(time_limit=0.1)
    assert ei.value.reply_code == 320


def test_handshake_timeout(amqp):
    # RabbitMQ (handshake_timeout = 10 s): a connection that does not complete the
    # handshake is closed silently (no connection.close) ~10 s after it was accepted.
    idle = amqp.raw(handshake=False)
    partial = amqp.raw(handshake=False)
    partial.send(R.PROTOCOL_HEADER[:3])
    started = amqp.raw(handshake=False)
    started.send_protocol_header()
    started.expect(R.CONNECTION_START)
    tuned = amqp.raw(handshake=False)
    tuned.send_protocol_header()
    tuned.expect(R.CONNECTION_START)
    tuned.send_method(0, R.CONNECTION_START_OK, R.start_ok_args("guest", "guest"))
    tuned.expect(R.CONNECTION_TUNE)
    tuned.send_method(0, R.CONNECTION_TUNE_OK, R.tune_ok_args(2047, 131072, 0))
    t0 = time.monotonic()
    for r in (idle, partial, started, tuned):
        assert r.recv_all_until_eof(timeout=20) == b""
    elapsed = time.monotonic() - t0
    assert 5 <= elapsed <= 16, "closed after %.1fs" % elapsed
