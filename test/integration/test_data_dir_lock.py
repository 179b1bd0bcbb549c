"""One process per data dir (issue 10): a second mqnode started on a live node's data dir
is refused before it touches a file there -- it exits 3 naming the dir and the pid that
holds it -- and the running node loses nothing: not its paged-out transient messages
(which a store opening at start would drop), not its persistent ones, whether the second
start comes while the node is idle or while it pages and commits."""

import base64
import http.client
import json
import os
import subprocess

import pika
import pytest

from brokers import target
from helpers import consume, wait_message_count

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="mqnode's data dir lock")

EXIT_DATA_DIR_BUSY = 3
COUNT = 2000
SIZE = 1024          # 2 MB in all, 30 times the queue's RAM window
RAM_WINDOW = 65536   # the smallest /broker/queue_ram_bytes: most messages are paged out


def body(i):
    head = b"%08d:" % i
    return head + bytes([i % 251]) * (SIZE - len(head))


@pytest.fixture
def node(broker_factory):
    return broker_factory(management=True, queue_ram_bytes=RAM_WINDOW)


def overview(b):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    c.request("GET", "/api/overview", headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status == 200, data
    return json.loads(data)["queue_totals"]


def start_second(b):
    """Another mqnode on <b>'s data dir, with a listener of its own (so only the data dir
    can be what refuses it)."""
    config = os.path.join(b.workdir, "second.json")
    section = b.broker_section()
    section["listeners"] = [{"bind": "127.0.0.1:0"}]
    with open(config, "w") as f:
        json.dump({"broker": section}, f)
    return subprocess.Popen([b.binary, "--config", config, "--data-dir", b.data_dir],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def assert_refused(b, second):
    _, err = second.communicate(timeout=30)
    assert second.returncode == EXIT_DATA_DIR_BUSY, (second.returncode, err)
    assert "pid %d" % b.proc.pid in err and b.data_dir in err, err
    # The refused process left the holder's lock file as it was.
    with open(os.path.join(b.data_dir, "mqnode.lock")) as f:
        assert f.read() == "%d\n" % b.proc.pid


@pytest.mark.time_limit(150)
@pytest.mark.parametrize("persistent,moment", [(False, "idle"), (False, "paging"),
                                               (True, "idle"), (True, "committing")])
def test_a_second_node_on_the_data_dir_is_refused_and_nothing_is_lost(node, persistent, moment):
    conn = pika.BlockingConnection(pika.ConnectionParameters(node.connect_host, node.port))
    ch = conn.channel()
    ch.queue_declare("lock.q", durable=persistent)
    if persistent:
        ch.confirm_delivery()   # a persistent publish returns once its commit is on disk
    props = pika.BasicProperties(delivery_mode=2 if persistent else 1)
    published = 0
    for _ in range(COUNT // 2):
        ch.basic_publish("", "lock.q", body(published), props)
        published += 1
    second = None
    if moment != "idle":
        # The second start's whole life overlaps publishes that page out (or commit).
        second = start_second(node)
        for _ in range(COUNT * 10):
            if published >= COUNT and second.poll() is not None:
                break
            ch.basic_publish("", "lock.q", body(published), props)
            published += 1
    else:
        for _ in range(COUNT - published):
            ch.basic_publish("", "lock.q", body(published), props)
            published += 1
        wait_message_count(ch, "lock.q", published)
        second = start_second(node)
    assert_refused(node, second)

    wait_message_count(ch, "lock.q", published)
    assert overview(node)["messages_ready"] == published
    got = consume(ch, "lock.q", published)
    assert len(got) == published
    bad = [i for i, (data, _) in enumerate(got) if data != body(i)]
    assert not bad, "messages lost, reordered or altered from index %d" % bad[0]
    assert ch.queue_declare("lock.q", durable=persistent, passive=True).method.message_count == 0
    assert overview(node)["messages"] == 0
    conn.close()


def test_the_lock_is_released_when_the_node_stops(node):
    assert node.terminate() == 0
    node.stopped_by_us = False
    node.start()   # the same data dir, the lock file left behind
    with open(os.path.join(node.data_dir, "mqnode.lock")) as f:
        assert f.read() == "%d\n" % node.proc.pid
