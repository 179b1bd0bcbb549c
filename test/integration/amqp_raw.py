"""Minimal raw-socket AMQP 0-9-1 client used for protocol-level tests.

It speaks just enough of the protocol to do a handshake (PLAIN or AMQPLAIN),
open channels, send arbitrary (also malformed) frames and decode the replies
that the tests look at, in particular connection.close / channel.close and
their reply codes.  Everything is bounded by socket timeouts.
"""

import decimal
import socket
import struct
import time

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE

# (class_id, method_id) constants
CONNECTION_START = (10, 10)
CONNECTION_START_OK = (10, 11)
CONNECTION_SECURE = (10, 20)
CONNECTION_TUNE = (10, 30)
CONNECTION_TUNE_OK = (10, 31)
CONNECTION_OPEN = (10, 40)
CONNECTION_OPEN_OK = (10, 41)
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CONNECTION_BLOCKED = (10, 60)
CONNECTION_UNBLOCKED = (10, 61)
CHANNEL_OPEN = (20, 10)
CHANNEL_OPEN_OK = (20, 11)
CHANNEL_FLOW = (20, 20)
CHANNEL_FLOW_OK = (20, 21)
CHANNEL_CLOSE = (20, 40)
CHANNEL_CLOSE_OK = (20, 41)
EXCHANGE_DECLARE = (40, 10)
EXCHANGE_DECLARE_OK = (40, 11)
QUEUE_DECLARE = (50, 10)
QUEUE_DECLARE_OK = (50, 11)
QUEUE_DELETE = (50, 40)
QUEUE_DELETE_OK = (50, 41)
BASIC_QOS = (60, 10)
BASIC_QOS_OK = (60, 11)
BASIC_CONSUME = (60, 20)
BASIC_CONSUME_OK = (60, 21)
BASIC_CANCEL = (60, 30)
BASIC_CANCEL_OK = (60, 31)
BASIC_PUBLISH = (60, 40)
BASIC_RETURN = (60, 50)
BASIC_DELIVER = (60, 60)
BASIC_GET = (60, 70)
BASIC_GET_OK = (60, 71)
BASIC_GET_EMPTY = (60, 72)
BASIC_ACK = (60, 80)
CONFIRM_SELECT = (85, 10)
CONFIRM_SELECT_OK = (85, 11)

# Reply codes (AMQP 0-9-1 constants)
REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541


class PeerClosed(Exception):
    """The server closed the TCP connection (EOF or reset)."""


# ---------------------------------------------------------------------------
# Encoding helpers
# ---------------------------------------------------------------------------

def shortstr(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    assert len(s) < 256
    return struct.pack(">B", len(s)) + s


def longstr(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    return struct.pack(">I", len(s)) + s


def _field_value(v):
    if isinstance(v, bool):
        return b"t" + struct.pack(">B", 1 if v else 0)
    if isinstance(v, int):
        if -2 ** 31 <= v < 2 ** 31:
            return b"I" + struct.pack(">i", v)
        return b"l" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"d" + struct.pack(">d", v)
    if isinstance(v, decimal.Decimal):
        sign, digits, exp = v.as_tuple()
        n = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        return b"D" + struct.pack(">Bi", -exp if exp < 0 else 0, n)
    if isinstance(v, str):
        return b"S" + longstr(v)
    if isinstance(v, bytes):
        return b"x" + longstr(v)
    if isinstance(v, dict):
        return b"F" + table(v)
    if isinstance(v, (list, tuple)):
        body = b"".join(_field_value(x) for x in v)
        return b"A" + struct.pack(">I", len(body)) + body
    if v is None:
        return b"V"
    raise TypeError("cannot encode %r" % (v,))


def table(d):
    body = b"".join(shortstr(k) + _field_value(v) for k, v in (d or {}).items())
    return struct.pack(">I", len(body)) + body


def bits(*flags):
    v = 0
    for i, f in enumerate(flags):
        if f:
            v |= 1 << i
    return struct.pack(">B", v)


def frame(ftype, channel, payload, end=FRAME_END):
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + bytes([end])


def method_payload(cm, args=b""):
    return struct.pack(">HH", cm[0], cm[1]) + args


def method_frame(channel, cm, args=b""):
    return frame(FRAME_METHOD, channel, method_payload(cm, args))


def header_frame(channel, body_size, class_id=60, flags=0, props=b""):
    return frame(FRAME_HEADER, channel,
                 struct.pack(">HHQH", class_id, 0, body_size, flags) + props)


def body_frame(channel, data):
    return frame(FRAME_BODY, channel, data)


# ---------------------------------------------------------------------------
# Decoding helpers
# ---------------------------------------------------------------------------

class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))

    def octet(self):
        return self.unpack(">B")[0]

    def short(self):
        return self.unpack(">H")[0]

    def long(self):
        return self.unpack(">I")[0]

    def longlong(self):
        return self.unpack(">Q")[0]

    def shortstr(self):
        n = self.octet()
        return self.take(n).decode("utf-8", "replace")

    def longstr(self):
        n = self.long()
        return self.take(n)

    def table(self):
        n = self.long()
        sub = Reader(self.take(n))
        out = {}
        while sub.pos < len(sub.data):
            k = sub.shortstr()
            out[k] = sub.field_value()
        return out

    def field_value(self):
        t = self.take(1)
        if t == b"t":
            return bool(self.octet())
        if t == b"b":
            return self.unpack(">b")[0]
        if t == b"B":
            return self.unpack(">B")[0]
        if t == b"s":
            return self.unpack(">h")[0]
        if t == b"u":
            return self.unpack(">H")[0]
        if t == b"I":
            return self.unpack(">i")[0]
        if t == b"i":
            return self.unpack(">I")[0]
        if t == b"l":
            return self.unpack(">q")[0]
        if t == b"f":
            return self.unpack(">f")[0]
        if t == b"d":
            return self.unpack(">d")[0]
        if t == b"D":
            scale = self.octet()
            val = self.unpack(">i")[0]
            return decimal.Decimal(val) / (decimal.Decimal(10) ** scale)
        if t == b"S":
            return self.longstr().decode("utf-8", "replace")
        if t == b"x":
            return self.longstr()
        if t == b"T":
            return self.longlong()
        if t == b"F":
            return self.table()
        if t == b"A":
            n = self.long()
            sub = Reader(self.take(n))
            items = []
            while sub.pos < len(sub.data):
                items.append(sub.field_value())
            return items
        if t == b"V":
            return None
        raise ValueError("unknown field type %r" % t)


class Frame:
    def __init__(self, ftype, channel, payload):
        self.type = ftype
        self.channel = channel
        self.payload = payload
        self.method = None
        self.args = {}
        if ftype == FRAME_METHOD and len(payload) >= 4:
            self.method = struct.unpack(">HH", payload[:4])
            try:
                self.args = decode_method(self.method, payload[4:])
            except Exception:  # keep undecodable args raw
                self.args = {"raw": payload[4:]}

    def __repr__(self):
        return "Frame(type=%d, ch=%d, method=%r, args=%r)" % (
            self.type, self.channel, self.method, self.args)


def decode_method(cm, data):
    r = Reader(data)
    if cm == CONNECTION_START:
        return {"version_major": r.octet(), "version_minor": r.octet(),
                "server_properties": r.table(),
                "mechanisms": r.longstr().decode(), "locales": r.longstr().decode()}
    if cm == CONNECTION_TUNE:
        return {"channel_max": r.short(), "frame_max": r.long(), "heartbeat": r.short()}
    if cm in (CONNECTION_CLOSE, CHANNEL_CLOSE):
        return {"reply_code": r.short(), "reply_text": r.shortstr(),
                "class_id": r.short(), "method_id": r.short()}
    if cm == CONNECTION_SECURE:
        return {"challenge": r.longstr()}
    if cm == CONNECTION_BLOCKED:
        return {"reason": r.shortstr()}
    if cm == CHANNEL_FLOW_OK or cm == CHANNEL_FLOW:
        return {"active": bool(r.octet() & 1)}
    if cm == QUEUE_DECLARE_OK:
        return {"queue": r.shortstr(), "message_count": r.long(), "consumer_count": r.long()}
    if cm == QUEUE_DELETE_OK:
        return {"message_count": r.long()}
    if cm in (BASIC_CONSUME_OK, BASIC_CANCEL_OK):
        return {"consumer_tag": r.shortstr()}
    if cm == BASIC_CANCEL:
        return {"consumer_tag": r.shortstr(), "nowait": bool(r.octet() & 1)}
    if cm == BASIC_DELIVER:
        return {"consumer_tag": r.shortstr(), "delivery_tag": r.longlong(),
                "redelivered": bool(r.octet() & 1), "exchange": r.shortstr(),
                "routing_key": r.shortstr()}
    if cm == BASIC_GET_OK:
        return {"delivery_tag": r.longlong(), "redelivered": bool(r.octet() & 1),
                "exchange": r.shortstr(), "routing_key": r.shortstr(),
                "message_count": r.long()}
    if cm == BASIC_RETURN:
        return {"reply_code": r.short(), "reply_text": r.shortstr(),
                "exchange": r.shortstr(), "routing_key": r.shortstr()}
    if cm in (BASIC_ACK, (60, 120)):
        return {"delivery_tag": r.longlong(), "multiple": bool(r.octet() & 1)}
    return {}


# ---------------------------------------------------------------------------
# Method argument builders for the client side
# ---------------------------------------------------------------------------

def start_ok_args(user, password, mechanism="PLAIN", client_properties=None, locale="en_US"):
    if client_properties is None:
        client_properties = {
            "product": "mqnode-raw-test",
            "capabilities": {"authentication_failure_close": True,
                             "consumer_cancel_notify": True,
                             "publisher_confirms": True,
                             "basic.nack": True},
        }
    if mechanism == "PLAIN":
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
    elif mechanism == "AMQPLAIN":
        # AMQPLAIN response is a field table without the leading length.
        response = table({"LOGIN": user, "PASSWORD": password})[4:]
    else:
        response = b""
    return (table(client_properties) + shortstr(mechanism) + longstr(response)
            + shortstr(locale))


def tune_ok_args(channel_max, frame_max, heartbeat):
    return struct.pack(">HIH", channel_max, frame_max, heartbeat)


def open_args(vhost="/"):
    return shortstr(vhost) + shortstr("") + bits(False)


def close_args(code=200, text="bye", class_id=0, method_id=0):
    return struct.pack(">H", code) + shortstr(text) + struct.pack(">HH", class_id, method_id)


def queue_declare_args(name, passive=False, durable=False, exclusive=False,
                       auto_delete=False, nowait=False, arguments=None):
    return (struct.pack(">H", 0) + shortstr(name)
            + bits(passive, durable, exclusive, auto_delete, nowait) + table(arguments))


def basic_publish_args(exchange="", routing_key="", mandatory=False, immediate=False):
    return struct.pack(">H", 0) + shortstr(exchange) + shortstr(routing_key) + bits(mandatory, immediate)


def basic_consume_args(queue, tag="", no_local=False, no_ack=False, exclusive=False,
                       nowait=False, arguments=None):
    return (struct.pack(">H", 0) + shortstr(queue) + shortstr(tag)
            + bits(no_local, no_ack, exclusive, nowait) + table(arguments))


def basic_get_args(queue, no_ack=False):
    return struct.pack(">H", 0) + shortstr(queue) + bits(no_ack)


# ---------------------------------------------------------------------------
# Connection object
# ---------------------------------------------------------------------------

class RawConnection:
    def __init__(self, host, port, timeout=10.0):
        self.host = host
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.start = None
        self.tune = None
        self.frame_max = None

    # -- low level ---------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def send_method(self, channel, cm, args=b""):
        self.send(method_frame(channel, cm, args))

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out waiting for data")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as e:
                raise PeerClosed("connection reset") from e
            if not chunk:
                raise PeerClosed("EOF")
            self.buf += chunk

    def recv_exact(self, n, timeout=10.0):
        self._fill(n, time.monotonic() + timeout)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv_all_until_eof(self, timeout=10.0, limit=1 << 20):
        """Read until EOF (returns everything received) or raise on timeout."""
        deadline = time.monotonic() + timeout
        data = self.buf
        self.buf = b""
        while len(data) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("no EOF within %.1fs (got %r)" % (timeout, data[:64]))
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk
        return data

    def read_frame(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        self._fill(7, deadline)
        ftype, channel, size = struct.unpack(">BHI", self.buf[:7])
        self._fill(7 + size + 1, deadline)
        payload = self.buf[7:7 + size]
        end = self.buf[7 + size]
        self.buf = self.buf[7 + size + 1:]
        if end != FRAME_END:
            raise ValueError("bad frame end from server: %r" % end)
        return Frame(ftype, channel, payload)

    def read_method(self, timeout=10.0, skip_heartbeats=True):
        deadline = time.monotonic() + timeout
        while True:
            f = self.read_frame(max(0.0, deadline - time.monotonic()))
            if f.type == FRAME_HEARTBEAT and skip_heartbeats:
                continue
            return f

    def expect(self, cm, timeout=10.0, channel=None):
        """Read frames until a method `cm` arrives.  Anything else -> AssertionError."""
        f = self.read_method(timeout)
        if f.method != cm or (channel is not None and f.channel != channel):
            raise AssertionError("expected %r on channel %r, got %r" % (cm, channel, f))
        return f

    def wait_connection_close(self, timeout=10.0, reply_close_ok=True):
        """Read until connection.close arrives; returns its args dict.

        Frames received before it are ignored (e.g. deliveries, heartbeats).
        Raises PeerClosed if the socket is closed without a connection.close.
        """
        deadline = time.monotonic() + timeout
        while True:
            f = self.read_method(max(0.0, deadline - time.monotonic()))
            if f.method == CONNECTION_CLOSE:
                if reply_close_ok:
                    try:
                        self.send_method(0, CONNECTION_CLOSE_OK)
                    except OSError:
                        pass
                return f.args

    def wait_eof(self, timeout=10.0):
        """Wait until the server closes the socket; returns the frames seen."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.read_frame(max(0.0, deadline - time.monotonic())))
            except PeerClosed:
                return frames
            except ValueError:
                return frames

    def frames_until_fin(self, timeout=10.0):
        """Frames the server sends until it shuts its side down with a FIN (returns them).
        A reset raises ConnectionResetError."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.read_frame(max(0.0, deadline - time.monotonic())))
            except PeerClosed as e:
                if isinstance(e.__cause__, ConnectionResetError):
                    raise e.__cause__
                return frames

    def send_then_close(self, data):
        """A client still flushing after the server's FIN: sends <data>, closes our side and
        returns once the server has seen our FIN. A server that closed its socket instead of
        reading answers the data with a reset: this raises ConnectionResetError or
        BrokenPipeError then."""
        self.sock.sendall(data)
        self.sock.shutdown(socket.SHUT_WR)
        self.sock.settimeout(10)
        if self.sock.recv(1) != b"":
            raise AssertionError("data from the server after its FIN")

    # -- handshake ---------------------------------------------------------
    def send_protocol_header(self, header=PROTOCOL_HEADER):
        self.send(header)

    def handshake(self, user="guest", password="guest", vhost="/", mechanism="PLAIN",
                  channel_max=None, frame_max=None, heartbeat=0,
                  client_properties=None, timeout=10.0):
        """Full handshake up to connection.open-ok.  None = accept server's value."""
        self.send_protocol_header()
        start = self.expect(CONNECTION_START, timeout)
        self.start = start.args
        self.send_method(0, CONNECTION_START_OK,
                         start_ok_args(user, password, mechanism, client_properties))
        f = self.read_method(timeout)
        if f.method == CONNECTION_CLOSE:
            raise AssertionError("connection closed during login: %r" % (f.args,))
        if f.method != CONNECTION_TUNE:
            raise AssertionError("expected connection.tune, got %r" % (f,))
        self.tune = f.args
        cmax = self.tune["channel_max"] if channel_max is None else channel_max
        fmax = self.tune["frame_max"] if frame_max is None else frame_max
        hb = self.tune["heartbeat"] if heartbeat is None else heartbeat
        self.frame_max = fmax
        self.send_method(0, CONNECTION_TUNE_OK, tune_ok_args(cmax, fmax, hb))
        self.send_method(0, CONNECTION_OPEN, open_args(vhost))
        f = self.read_method(timeout)
        if f.method != CONNECTION_OPEN_OK:
            raise AssertionError("expected connection.open-ok, got %r" % (f,))
        return self

    def open_channel(self, channel, timeout=10.0):
        self.send_method(channel, CHANNEL_OPEN, shortstr(""))
        return self.expect(CHANNEL_OPEN_OK, timeout, channel)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
