"""A full disk under the data dir: confirms turn into nacks, the node keeps serving, and
nothing that was confirmed is lost. Needs root to mount a small tmpfs."""

import os
import shutil
import subprocess
import tempfile

import pika
import pytest

from brokers import MqnodeBroker, target

pytestmark = [
    pytest.mark.skipif(target() != "mqnode", reason="mounts a tmpfs as mqnode's data dir"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]


@pytest.fixture
def small_disk():
    d = tempfile.mkdtemp(prefix="mqnode-diskfull-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", d], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", d], check=False)
        shutil.rmtree(d, ignore_errors=True)


def test_full_disk_nacks_publishers_and_keeps_serving(small_disk, tmp_path):
    # disk_free_limit 0: let the disk really fill, to exercise the store's error path
    b = MqnodeBroker(str(tmp_path), {"disk_free_limit_bytes": 0})
    b.data_dir = os.path.join(small_disk, "data")
    b.start()
    try:
        params = pika.ConnectionParameters(b.connect_host, b.port)
        c = pika.BlockingConnection(params)
        ch = c.channel()
        ch.queue_declare("full.q", durable=True)
        ch.confirm_delivery()
        confirmed, nacked = [], 0
        body = b"x" * 16384
        for i in range(2000):
            try:
                ch.basic_publish("", "full.q", body, pika.BasicProperties(delivery_mode=2, message_id=str(i)))
                confirmed.append(i)
            except pika.exceptions.NackError:
                nacked += 1
                if nacked >= 3:
                    break
        assert nacked >= 1, "3 MB of disk took %d x 16 KiB persistent messages without a nack" % len(confirmed)
        assert confirmed, "nothing was confirmed before the disk filled"
        # the node still serves: a transient queue on another connection works
        other = pika.BlockingConnection(params).channel()
        other.queue_declare("mem.q", durable=False)
        other.basic_publish("", "mem.q", b"still here")
        assert other.basic_get("mem.q", auto_ack=True)[2] == b"still here"
        assert b.alive()
        assert "store commit failed" in b.stderr_text()
        c.close()
        # every confirmed message survives a restart
        assert b.terminate() == 0
        b.start()
        ch = pika.BlockingConnection(params).channel()
        ids = set()
        while True:
            m, props, _ = ch.basic_get("full.q", auto_ack=True)
            if m is None:
                break
            ids.add(int(props.message_id))
        assert set(confirmed) <= ids
    finally:
        b.stop()
        assert not b.problems(), b.describe_failure()
