"""Many AMQP connections and connection churn against a node, for
test/integration/test_connection_churn.py (bounded) and bench/conn_churn.py (10,000
connections, a minute of churn). Connections are raw sockets driven by asyncio through the
whole AMQP handshake (connection.open-ok), so one Python process holds thousands; the
node's side is read from /proc: open descriptors and RSS."""

import asyncio
import os
import struct
import time

FRAME_END = 0xCE


def _frame(ftype, channel, payload):
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + bytes([FRAME_END])


def _method(class_id, method_id, args):
    return _frame(1, 0, struct.pack(">HH", class_id, method_id) + args)


def _shortstr(s):
    b = s.encode()
    return bytes([len(b)]) + b


def _longstr(b):
    return struct.pack(">I", len(b)) + b


START_OK = _method(10, 11, _longstr(b"") + _shortstr("PLAIN") + _longstr(b"\0guest\0guest") + _shortstr("en_US"))
TUNE_OK = _method(10, 31, struct.pack(">HIH", 2047, 131072, 0))
OPEN = _method(10, 40, _shortstr("/") + _shortstr("") + b"\0")
CLOSE = _method(10, 50, struct.pack(">H", 200) + _shortstr("bye") + struct.pack(">HH", 0, 0))


async def _read_method(reader):
    header = await reader.readexactly(7)
    ftype, _channel, size = struct.unpack(">BHI", header)
    payload = await reader.readexactly(size + 1)
    if ftype != 1:
        return await _read_method(reader)  # heartbeats: none are asked for, but skip any
    return struct.unpack(">HH", payload[:4])


async def open_connection(port, timeout=30.0):
    """A connection through connection.open-ok: (reader, writer)."""
    async def handshake():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"AMQP\x00\x00\x09\x01")
        assert await _read_method(reader) == (10, 10)  # start
        writer.write(START_OK)
        assert await _read_method(reader) == (10, 30)  # tune
        writer.write(TUNE_OK + OPEN)
        assert await _read_method(reader) == (10, 41)  # open-ok
        return reader, writer
    return await asyncio.wait_for(handshake(), timeout)


async def close_connection(conn, polite=True):
    """connection.close and its close-ok (<polite>), or the socket dropped at once."""
    reader, writer = conn
    try:
        if polite:
            writer.write(CLOSE)
            await asyncio.wait_for(_read_method(reader), 10)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def open_many(port, n, parallel=200):
    """<n> connections, at most <parallel> handshakes at a time."""
    sem = asyncio.Semaphore(parallel)

    async def one():
        async with sem:
            return await open_connection(port)
    return await asyncio.gather(*(one() for _ in range(n)))


async def close_all(conns):
    await asyncio.gather(*(close_connection(c, polite=i % 2 == 0) for i, c in enumerate(conns)))


async def churn(port, rate, seconds, parallel=100):
    """Opens and closes connections at up to <rate> a second for <seconds>; returns how many
    were opened and closed. Half close politely, half drop the socket."""
    done = 0
    sem = asyncio.Semaphore(parallel)
    tasks = []
    start = time.monotonic()

    async def one(i):
        nonlocal done
        async with sem:
            conn = await open_connection(port)
            await close_connection(conn, polite=i % 2 == 0)
            done += 1

    i = 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while i < due:
            tasks.append(asyncio.ensure_future(one(i)))
            i += 1
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    return done


def node_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def node_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_fds(pid, want, timeout=30.0):
    """The node's descriptor count once it is <want> (the closes are asynchronous), or the
    last count seen after <timeout>."""
    deadline = time.monotonic() + timeout
    while True:
        n = node_fds(pid)
        if n <= want or time.monotonic() > deadline:
            return n
        time.sleep(0.1)
