"""How connections end (issue 10): a close is finished with a FIN, never a reset. After
close-ok (sent or received) the broker stops sending and reads and discards whatever the
client still had in flight -- amqplib writes connection.close ahead of the publishes it
has buffered -- until the client closes; a socket closed with unread input would make
the kernel answer with a reset, and the client would see EPIPE instead of its close-ok.
The same goes for the broker's own closes: connection errors (a channel.close in the middle
of a content is one, 505, as in RabbitMQ) and the 320 at shutdown."""

import json
import os
import shutil
import signal
import struct
import subprocess

import pika
import pika.exceptions as pex
import pytest

import amqp_raw as R
from brokers import target

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")

# mqnode's FIN-then-drain ending. RabbitMQ 3.10 waits for the client's FIN after close-ok
# instead of sending its own, and ends some of these with a reset.
mqnode_ending = pytest.mark.skipif(target() != "mqnode", reason="mqnode's FIN after close-ok")


def publishes(queue, count, size=1024):
    """<count> complete basic.publish contents to the default exchange, as bytes."""
    one = (R.method_frame(1, R.BASIC_PUBLISH, R.basic_publish_args("", queue))
           + R.header_frame(1, size) + R.body_frame(1, b"p" * size))
    return one * count


def methods(frames):
    return [f.method for f in frames if f.type == R.FRAME_METHOD]


def ends_with_a_fin(r, queue):
    """The close is settled: the broker shuts its side down (a FIN) with nothing more to
    say, then reads and drops what the client still sends until the client closes."""
    assert methods(r.frames_until_fin()) == []
    r.send_then_close(publishes(queue, 512))
    r.close()


def declare(r, queue):
    r.open_channel(1)
    r.send_method(1, R.QUEUE_DECLARE, R.queue_declare_args(queue))
    r.expect(R.QUEUE_DECLARE_OK, channel=1)


def message_count(amqp, queue):
    return amqp.channel().queue_declare(queue, passive=True).method.message_count


@mqnode_ending
def test_client_close_ahead_of_its_publishes_ends_with_a_fin(amqp, uname):
    q = uname()
    r = amqp.raw()
    declare(r, q)
    # connection.close overtakes 512 KiB of publishes, as amqplib's close does.
    r.send(R.method_frame(0, R.CONNECTION_CLOSE, R.close_args()) + publishes(q, 512))
    r.expect(R.CONNECTION_CLOSE_OK)
    ends_with_a_fin(r, q)
    # What came after the close was read and dropped, not routed.
    assert message_count(amqp, q) == 0


def header_without_publish(queue):
    return R.header_frame(1, 5)


def channel_close_mid_content(queue):
    # A method where a body frame belongs: the publish state machine's 505, as in RabbitMQ.
    return (R.method_frame(1, R.BASIC_PUBLISH, R.basic_publish_args("", queue)) + R.header_frame(1, 2048)
            + R.body_frame(1, b"a" * 1024) + R.method_frame(1, R.CHANNEL_CLOSE, R.close_args()))


@mqnode_ending
@pytest.mark.parametrize("provoke,class_method", [(header_without_publish, (0, 0)),
                                                  (channel_close_mid_content, (60, 40))])
def test_connection_error_with_content_still_arriving_ends_with_a_fin(amqp, uname, provoke, class_method):
    q = uname()
    r = amqp.raw()
    declare(r, q)
    r.send(provoke(q))
    close = r.wait_connection_close(reply_close_ok=False)
    assert (close["reply_code"], close["class_id"], close["method_id"]) == (R.UNEXPECTED_FRAME,) + class_method
    # close-ok, then the rest of a content and more publishes the client had buffered.
    r.send(R.method_frame(0, R.CONNECTION_CLOSE_OK) + R.body_frame(1, b"b" * 1024) + publishes(q, 512))
    ends_with_a_fin(r, q)
    assert message_count(amqp, q) == 0


@pytest.mark.skipif(target() != "mqnode", reason="stops the broker with SIGTERM in the middle of the test")
def test_shutdown_close_then_client_publishes_ends_with_a_fin(broker_factory, uname):
    b = broker_factory()
    q = uname()
    r = R.RawConnection(b.connect_host, b.port).handshake()
    declare(r, q)
    b.stopped_by_us = True
    b.proc.send_signal(signal.SIGTERM)
    assert r.wait_connection_close(reply_close_ok=False)["reply_code"] == R.CONNECTION_FORCED
    # close-ok, then the publishes the client had buffered meanwhile.
    r.send(R.method_frame(0, R.CONNECTION_CLOSE_OK) + publishes(q, 512))
    ends_with_a_fin(r, q)
    assert b.proc.wait(30) == 0


@pytest.mark.skipif(target() != "mqnode", reason="stops the broker with SIGTERM in the middle of the test")
def test_pika_publishing_through_shutdown_gets_the_320(broker_factory, clients_for, uname):
    b = broker_factory()
    ch = clients_for(b).channel()
    q = uname()
    ch.queue_declare(q)
    b.stopped_by_us = True
    b.proc.send_signal(signal.SIGTERM)
    with pytest.raises(pex.ConnectionClosedByBroker) as ei:
        for _ in range(1000000):
            ch.basic_publish("", q, b"m" * 1024)
    assert ei.value.reply_code == 320
    assert b.proc.wait(30) == 0


def test_pika_close_after_a_burst_of_publishes(amqp, uname):
    q = uname()
    conn = amqp.connect()
    ch = conn.channel()
    ch.queue_declare(q)
    for _ in range(2000):
        ch.basic_publish("", q, b"m" * 1024)
    conn.close()   # raises if the broker reset the connection
    assert conn.is_closed
    assert message_count(amqp, q) == 2000


def test_amqplib_close_while_its_publishes_are_buffered(amqp, uname):
    if not shutil.which("node"):
        pytest.fail("node is not installed (build.sh test installs nodejs)")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "amqplib")):
        pytest.fail("amqplib is not installed: run `npm ci` in %s (build.sh test does)" % NODE_DIR)
    q = uname()
    host = amqp.host if ":" not in amqp.host else "[%s]" % amqp.host
    url = "amqp://guest:guest@%s:%d" % (host, amqp.port)
    p = subprocess.run(["node", os.path.join(NODE_DIR, "close_while_publishing.js"), url, q, "5"],
                       cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    # Against a broker that resets: "write EPIPE" and the close callback never fires.
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["rounds"] == 5
    # Publishes that came after the close were dropped; none was invented.
    assert message_count(amqp, q) <= sum(result["published"])
