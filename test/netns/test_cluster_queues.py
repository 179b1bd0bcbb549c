"""Any node serves any queue: a queue lives on the node where it was declared (its home)
and a client on another node uses it with the same semantics, through the cluster links.
Publish with confirms, consume with a prefetch and acks, basic.get, purge, dead-lettering
to a queue homed elsewhere, delete; and the home's death as RabbitMQ 3.10 reports it
(404 "home node … is down or inaccessible", consumers cancelled, unconfirmed publishes
nacked), the queue and its persistent messages back when the home returns.

Three namespaces on a bridge, three mqnode processes (test_cluster.Cluster); every wait is
bounded and processes are killed by pid.
"""

import json
import signal

import pytest

import vrrp_net
from cluster_net import Cluster
from vrrp_net import wait_for


@pytest.fixture
def lan():
    yield from vrrp_net.lan_fixture_hosts(3)


PRELUDE = """
import json, pika
def connect():
    return pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', 5672, heartbeat=0))
out = {}
"""


def run_py(c, h, code, timeout=60):
    """Runs <code> with pika in mq<h>'s namespace; returns the dict it leaves in `out`."""
    prog = PRELUDE + code + "\nprint('RESULT=' + json.dumps(out))\n"
    r = c.lan.exec(h, ["/usr/bin/python3", "-c", prog], check=False, timeout=timeout)
    assert r.returncode == 0, "mq%d: rc=%d\n%s\n%s" % (h, r.returncode, r.stdout, r.stderr)
    line = [l for l in r.stdout.splitlines() if l.startswith("RESULT=")]
    assert line, r.stdout
    return json.loads(line[-1][len("RESULT="):])


def form(c):
    for h in (1, 2, 3):
        c.start(h)
    wait_for(lambda: (c.status(1) or {}).get("running_nodes") == ["mq1"], 30, step=0.2, what="mq1 running alone")
    for h in (2, 3):
        c.ctl(h, "stop_app")
        c.ctl(h, "reset")
        c.ctl(h, "join_cluster", "rabbit@mq1")
        c.ctl(h, "start_app")
    wait_for(lambda: all((c.status(h) or {}).get("running_nodes") == ["mq1", "mq2", "mq3"] for h in (1, 2, 3)),
             60, step=0.5, what="three running nodes in every view")


def test_any_node_serves_any_queue(lan):
    c = Cluster(lan)
    try:
        form(c)
        scenarios(c)
        node_down(c)
        for h in (3, 2, 1):
            assert c.procs[h].stop() == 0, c.procs[h].output()[-3000:]
    finally:
        c.cleanup()


def scenarios(c):
    # Homes: 'work' and 'ex' on mq1; 'dead' on mq3.
    run_py(c, 1, """
conn = connect(); ch = conn.channel()
ch.exchange_declare('ex', 'direct', durable=True)
ch.queue_declare('work', durable=True, arguments={'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dead'})
ch.queue_bind('work', 'ex', 'k')
conn.close()
""")
    run_py(c, 3, """
conn = connect(); ch = conn.channel()
ch.queue_declare('dead', durable=True)
conn.close()
""")
    wait_for(lambda: c.visible(2, exchange="ex", queue="work") and c.visible(2, queue="dead"), 20, step=0.3,
             what="the definitions on mq2")

    # Publish through mq2 (not the home) with confirms: every message confirmed, in order;
    # an unroutable mandatory publish comes back.
    out = run_py(c, 2, """
conn = connect(); ch = conn.channel(); ch.confirm_delivery()
for i in range(200):
    ch.basic_publish('ex' if i % 2 else '', 'k' if i % 2 else 'work', b'm%03d' % i,
                     pika.BasicProperties(delivery_mode=2), mandatory=True)
try:
    ch.basic_publish('ex', 'nowhere', b'x', mandatory=True)
    out['returned'] = False
except pika.exceptions.UnroutableError:
    out['returned'] = True
conn.close()
""")
    assert out["returned"] is True

    # The counts come from the home, through mq3.
    out = run_py(c, 3, """
conn = connect(); ch = conn.channel()
ok = ch.queue_declare('work', passive=True)
out['count'] = ok.method.message_count
m, props, body = ch.basic_get('work')
out['first'] = body.decode(); out['left'] = m.message_count
ch.basic_ack(m.delivery_tag)
conn.close()
""")
    assert out == {"count": 200, "first": "m000", "left": 199}

    # Consume through mq2 with a prefetch: order kept, acks reach the home; one rejected
    # message dead-letters into 'dead', homed on mq3.
    out = run_py(c, 2, """
conn = connect(); ch = conn.channel(); ch.basic_qos(prefetch_count=10)
got = []
for m, props, body in ch.consume('work', inactivity_timeout=10):
    if m is None: break
    got.append(body.decode())
    if len(got) == 1: ch.basic_reject(m.delivery_tag, requeue=False)
    else: ch.basic_ack(m.delivery_tag)
    if len(got) == 150: break
ch.cancel()
out['got'] = got
conn.close()
""")
    assert out["got"] == ["m%03d" % i for i in range(1, 151)]

    out = run_py(c, 1, """
conn = connect(); ch = conn.channel()
out['work'] = ch.queue_declare('work', passive=True).method.message_count
m, props, body = ch.basic_get('dead', auto_ack=True)
out['dead'] = body.decode(); out['reason'] = props.headers['x-death'][0]['reason']
out['purged'] = ch.queue_purge('work').method.message_count
conn.close()
""")
    assert out == {"work": 49, "dead": "m001", "reason": "rejected", "purged": 49}

    # tx through a non-home node: commit-ok once the home has the messages.
    out = run_py(c, 3, """
conn = connect(); ch = conn.channel(); ch.tx_select()
for i in range(5): ch.basic_publish('', 'work', b't%d' % i, pika.BasicProperties(delivery_mode=2))
ch.tx_commit()
out['count'] = ch.queue_declare('work', passive=True).method.message_count
conn.close()
""")
    assert out["count"] == 5

    # An exclusive consumer on the home shuts out one through another node (403).
    out = run_py(c, 2, """
owner = connect(); och = owner.channel()
och.basic_consume('work', lambda *a: None, exclusive=True)
owner.process_data_events(0.5)
other = connect(); ch = other.channel()
try:
    ch.basic_consume('work', lambda *a: None)
    other.process_data_events(1)
    out['code'] = 0
except pika.exceptions.ChannelClosedByBroker as e:
    out['code'] = e.reply_code; out['text'] = e.reply_text
owner.close()
""")
    assert out["code"] == 403 and "in exclusive use" in out["text"], out

    # Deleted through mq3: gone everywhere, its bindings too.
    run_py(c, 3, """
conn = connect(); ch = conn.channel()
out['deleted'] = ch.queue_delete('work').method.message_count
conn.close()
""")
    wait_for(lambda: not c.visible(1, queue="work"), 20, step=0.3, what="'work' gone on its home")


def node_down(c):
    # A durable queue homed on mq3 with persistent messages, a consumer on mq1.
    run_py(c, 3, """
conn = connect(); ch = conn.channel(); ch.confirm_delivery()
ch.queue_declare('on3', durable=True)
for i in range(20): ch.basic_publish('', 'on3', b'p%d' % i, pika.BasicProperties(delivery_mode=2))
conn.close()
""")
    wait_for(lambda: c.visible(1, queue="on3"), 20, step=0.3, what="'on3' on mq1")
    consumer = c.lan.start(1, ["/usr/bin/python3", "-c", PRELUDE + """
import sys
conn = connect(); ch = conn.channel(); ch.basic_qos(prefetch_count=1)
def cancelled(frame): print('CANCELLED', flush=True)
ch.add_on_cancel_callback(cancelled)
seen = []
def on_msg(ch, m, props, body):
    if not seen: print('FIRST', body.decode(), flush=True)
    seen.append(body)
ch.basic_consume('on3', on_msg)
import time
deadline = time.time() + 60
while time.time() < deadline:
    conn.process_data_events(0.2)
"""], "consumer-on-mq1")
    wait_for(lambda: "FIRST p0" in consumer.output(), 20, step=0.2, what="the consumer on mq1 served from mq3")

    victim = c.procs[3]
    victim.signal(signal.SIGKILL)
    victim.proc.wait(10)
    wait_for(lambda: "CANCELLED" in consumer.output(), 20, step=0.2, what="basic.cancel on mq1")
    consumer.signal(signal.SIGKILL)
    consumer.proc.wait(10)

    out = run_py(c, 1, """
conn = connect(); ch = conn.channel()
try:
    ch.queue_declare('on3', passive=True)
    out['code'] = 0
except pika.exceptions.ChannelClosedByBroker as e:
    out['code'] = e.reply_code; out['text'] = e.reply_text
conn.close()
""")
    assert out["code"] == 404, out
    assert "home node 'mq3' of durable queue 'on3' in vhost '/' is down or inaccessible" in out["text"], out

    # The home returns with its persistent messages (the unacked one redelivered).
    c.start(3)
    out = {}
    def back():
        out.update(run_py(c, 1, """
conn = connect(); ch = conn.channel()
try:
    out['count'] = ch.queue_declare('on3', passive=True).method.message_count
except pika.exceptions.ChannelClosedByBroker as e:
    out['count'] = -1
conn.close()
"""))
        return out["count"] == 20
    wait_for(back, 60, step=1, what="'on3' back with its 20 messages (now %s)" % out)
