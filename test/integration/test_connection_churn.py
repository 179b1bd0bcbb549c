"""Many connections and connection churn leak nothing: 2,000 AMQP connections held at once
(a fresh client is still served), then 10 s of connections opened and closed (half with
connection.close, half dropped) while a client publishes and gets; afterwards the node's
descriptor count is back to its baseline and it reports no connection. The bounded form of
bench/conn_churn.py (10,000 connections, a minute of 1,000/s, release build, figures).
mqnode only: the node's /proc entries are read."""

import asyncio
import resource

import pika
import pytest

import churn
from brokers import target

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="reads the node's /proc entries")

HELD = 2000


@pytest.fixture
def more_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = HELD + 1000  # per process: this one and the node (which inherits it) each hold one per connection
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, need))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def served(b):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, connection_attempts=1,
                                                             socket_timeout=10, stack_timeout=15))
    ch = conn.channel()
    ch.queue_declare("churn.q")
    ch.basic_publish("", "churn.q", b"still here")
    method, _props, body = ch.basic_get("churn.q", auto_ack=True)
    conn.close()
    return body


def test_many_connections_and_churn_leak_nothing(broker_factory, more_fds):
    b = broker_factory(handshake_timeout_ms=30000)
    pid = b.proc.pid
    base_fds = churn.node_fds(pid)
    # Warm up: the first connections size the node's buffers and tables.
    asyncio.run(churn.churn(b.port, rate=200, seconds=1))
    assert churn.wait_fds(pid, base_fds) == base_fds
    base_rss = churn.node_rss_kib(pid)

    async def hold():
        conns = await churn.open_many(b.port, HELD)
        held_fds = churn.node_fds(pid)
        body = await asyncio.get_running_loop().run_in_executor(None, served, b)
        await churn.close_all(conns)
        return held_fds, body
    held_fds, body = asyncio.run(hold())
    assert held_fds >= base_fds + HELD, (held_fds, base_fds)
    assert body == b"still here"
    peak_rss = churn.node_rss_kib(pid)

    n = asyncio.run(churn.churn(b.port, rate=300, seconds=10))
    assert n > 300
    assert served(b) == b"still here"
    end_fds = churn.wait_fds(pid, base_fds)
    end_rss = churn.node_rss_kib(pid)
    print("fds base=%d held=%d end=%d; rss KiB base=%d after %d held=%d after churn of %d=%d"
          % (base_fds, held_fds, end_fds, base_rss, HELD, peak_rss, n, end_rss))
    assert end_fds == base_fds
    r = b.ctl("list_connections", "--no-table-headers", "-q")
    assert r.returncode == 0 and r.stdout.strip() == "", (r.stdout, r.stderr)
