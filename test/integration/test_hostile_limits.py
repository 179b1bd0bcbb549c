"""Per-vhost limits of /broker/limits as RabbitMQ 3.10 enforces them (set_vhost_limits), with
its reply codes and texts: max-connections (530 at connection.open) and max-queues (406 at
queue.declare). channel_max, frame_max and max_message_size are tested in test_channel.py,
test_errors.py and test_content.py. mqnode only: the limits come from mqnode's config."""

import pika
import pika.exceptions as pex
import pytest

from brokers import target
from helpers import expect_channel_close

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="configures mqnode's limits")


def connect(b, **kw):
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, connection_attempts=1,
                                                             socket_timeout=10, stack_timeout=15, **kw))


def test_vhost_max_connections(broker_factory):
    b = broker_factory(vhosts=["/", "small"], limits={"small": {"max-connections": 2}},
                       permissions=[{"user": "guest", "vhost": "/"}, {"user": "guest", "vhost": "small"}],
                       users=[{"name": "guest", "password": "guest", "tags": ["administrator"]}])
    first = [connect(b, virtual_host="small") for _ in range(2)]
    with pytest.raises(pex.ProbableAccessDeniedError) as e:  # pika's name for a close at connection.open
        connect(b, virtual_host="small")
    assert ('(530) "NOT_ALLOWED - access to vhost \'small\' refused for user \'guest\': '
            'connection limit (2) is reached"') in str(e.value)
    # Other vhosts are not limited; the two connections up keep working.
    others = [connect(b) for _ in range(3)]
    for c in first:
        c.channel().queue_declare("", exclusive=True)
    first[0].close()
    again = connect(b, virtual_host="small")  # room again
    for c in [first[1], again] + others:
        c.close()


def test_vhost_max_queues(broker_factory):
    b = broker_factory(limits={"/": {"max-queues": 2}})
    conn = connect(b)
    ch = conn.channel()
    ch.queue_declare("q1")
    ch.queue_declare("q2")
    ch.queue_declare("q1")  # redeclaring an existing queue is not a new one
    expect_channel_close(lambda: ch.queue_declare("q3"), 406,
                         "PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '/' (2) is reached")
    ch = conn.channel()
    ch.queue_delete("q2")
    ch.queue_declare("q3")
    conn.close()


def test_vhost_max_connections_zero_refuses_all(broker_factory):
    b = broker_factory(limits={"/": {"max-connections": 0}})
    with pytest.raises(pex.ProbableAccessDeniedError) as e:
        connect(b)
    assert "(530) \"NOT_ALLOWED - access to vhost '/' refused for user 'guest': connection limit (0)" in str(e.value)

