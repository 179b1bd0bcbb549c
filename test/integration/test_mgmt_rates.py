"""Management API message, length and data rates (RabbitMQ 3.10's *_details): pika publishes,
gets and acks; after a sample the overview, queue, exchange, channel and connection show
the counts and rates, and a msg_rates_age/msg_rates_incr window gives samples whose avg_rate
agrees with them. rabbitmqadmin reads the same fields."""

import shutil
import subprocess

import pika
import pytest

from brokers import target
from helpers import wait_until
from test_mgmt_access import call

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="mqnode's management module")

N = 20
WINDOW = "msg_rates_age=30&msg_rates_incr=1&lengths_age=30&lengths_incr=1&data_rates_age=30&data_rates_incr=1"


@pytest.fixture
def node(broker_factory):
    b = broker_factory(management=True)
    # Samples every 200 ms, so a test waits for a few of them, not for 5 s ones.
    b.terminate()
    b.sections["management"]["collect_statistics_interval"] = 200
    b.start()
    return b


def pika_channel(b):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port))
    return conn, conn.channel()


def get(b, path):
    status, body = call(b, "GET", path)
    assert status == 200, (path, status, body)
    return body


def check_window(details, expect_newest):
    """A window's samples: newest first, one a second, and avg/avg_rate computed from them."""
    samples = details["samples"]
    assert samples and samples[0]["sample"] == expect_newest, details
    stamps = [s["timestamp"] for s in samples]
    assert stamps == sorted(stamps, reverse=True) and all(a - b == 1000 for a, b in zip(stamps, stamps[1:]))
    values = [s["sample"] for s in samples]
    assert details["avg"] == pytest.approx(sum(values) / len(values))
    if len(samples) >= 2:
        span_s = (stamps[0] - stamps[-1]) / 1000
        assert details["avg_rate"] == pytest.approx((values[0] - values[-1]) / span_s)


def test_publish_get_ack_show_as_counts_rates_and_samples(node):
    conn, ch = pika_channel(node)
    ch.confirm_delivery()
    ch.exchange_declare("rx", "direct")
    ch.queue_declare("rq")
    ch.queue_bind("rq", "rx", "k")
    for i in range(N):
        ch.basic_publish("rx", "k", b"m%d" % i)
    ch.basic_publish("rx", "nowhere", b"lost")  # in, not out
    for _ in range(5):
        method, _, _ = ch.basic_get("rq")
        ch.basic_ack(method.delivery_tag)
    ch.basic_get("rq", auto_ack=True)
    remaining = N - 6

    # A rate needs two samples around the activity; it shows once a sample saw the counts.
    def sampled():
        o = get(node, "/api/overview?" + WINDOW)
        samples = o["message_stats"]["publish_details"]["samples"]
        return o if samples and samples[0]["sample"] == N + 1 else None
    o = wait_until(sampled, 10, 0.1, "a sample after the publishes")
    m = o["message_stats"]
    assert (m["publish"], m["confirm"], m["get"], m["get_no_ack"], m["ack"], m["deliver_get"]) == (N + 1, N + 1, 5, 1, 5, 6)
    check_window(m["publish_details"], N + 1)
    check_window(o["queue_totals"]["messages_details"], remaining)
    assert o["queue_totals"]["messages"] == remaining
    # The rate is the last two samples' difference: positive just after, zero once idle.
    idle = wait_until(lambda: (lambda o: o if o["message_stats"]["publish_details"]["rate"] == 0 else None)(
        get(node, "/api/overview")), 10, 0.1, "the publish rate to fall to 0")
    assert set(idle["message_stats"]["publish_details"]) == {"rate"}

    q = get(node, "/api/queues/%2F/rq?" + WINDOW)
    qs = q["message_stats"]
    assert (qs["publish"], qs["get"], qs["get_no_ack"], qs["ack"], qs["deliver_get"]) == (N, 5, 1, 5, 6)
    assert "deliver" not in qs and "redeliver" not in qs  # never happened: left out, as RabbitMQ
    check_window(qs["publish_details"], N)
    check_window(q["messages_ready_details"], remaining)
    assert q["messages_ready"] == remaining and q["messages_details"]["rate"] == 0

    ex = get(node, "/api/exchanges/%2F/rx?" + WINDOW)["message_stats"]
    assert (ex["publish_in"], ex["publish_out"]) == (N + 1, N)
    check_window(ex["publish_out_details"], N)

    [chan] = get(node, "/api/channels?" + WINDOW)
    cs = chan["message_stats"]
    assert (cs["publish"], cs["confirm"], cs["ack"], cs["get"], cs["get_no_ack"]) == (N + 1, N + 1, 5, 5, 1)
    check_window(cs["confirm_details"], N + 1)

    [c] = get(node, "/api/connections?" + WINDOW)
    assert c["recv_oct"] > N * 10 and c["send_oct"] > 0 and "rate" in c["recv_oct_details"]
    check_window(c["recv_oct_details"], c["recv_oct"])
    conn.close()


def test_a_consumer_counts_deliver_and_redeliver(node):
    conn, ch = pika_channel(node)
    ch.queue_declare("cq")
    for i in range(3):
        ch.basic_publish("", "cq", b"x")
    got = []
    ch.basic_consume("cq", lambda c, m, p, b: got.append(m.delivery_tag))
    wait_until(lambda: conn.process_data_events(0.05) or len(got) == 3, 10, 0, "3 deliveries")
    ch.basic_nack(got[-1], multiple=True, requeue=True)
    wait_until(lambda: conn.process_data_events(0.05) or len(got) == 6, 10, 0, "3 redeliveries")
    for tag in got[3:]:
        ch.basic_ack(tag)
    wait_until(lambda: get(node, "/api/queues/%2F/cq")["message_stats"].get("ack") == 3, 10, 0.1, "3 acks")
    qs = get(node, "/api/queues/%2F/cq")["message_stats"]
    assert (qs["publish"], qs["deliver"], qs["redeliver"], qs["ack"], qs["deliver_get"]) == (3, 6, 3, 3, 6)
    conn.close()


def test_a_bad_window_is_refused_with_rabbitmqs_error(node):
    status, body = call(node, "GET", "/api/overview?msg_rates_age=60")
    assert status == 400 and body["error"] == "bad_request" and "msg_rates_incr" in body["reason"]
    status, body = call(node, "GET", "/api/queues?lengths_age=60&lengths_incr=0")
    assert status == 400 and "lengths_incr" in body["reason"]
    assert call(node, "GET", "/api/overview")[0] == 200  # and the node keeps serving


@pytest.mark.skipif(shutil.which("rabbitmqadmin") is None, reason="rabbitmqadmin is not installed")
def test_rabbitmqadmin_lists_queue_rates(node):
    conn, ch = pika_channel(node)
    ch.queue_declare("aq")
    for _ in range(4):
        ch.basic_publish("", "aq", b"x")
    wait_until(lambda: get(node, "/api/queues/%2F/aq")["messages"] == 4, 10, 0.1, "4 messages")
    out = subprocess.run(["rabbitmqadmin", "-H", "127.0.0.1", "-P", str(node.http_port), "-u", "guest", "-p", "guest",
                          "-f", "tsv", "list", "queues", "name", "messages", "message_stats.publish",
                          "message_stats.publish_details.rate"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert rows[0] == ["name", "messages", "message_stats.publish", "message_stats.publish_details.rate"]
    [row] = [r for r in rows[1:] if r[0] == "aq"]
    assert row[1:3] == ["4", "4"] and float(row[3]) >= 0
    conn.close()
