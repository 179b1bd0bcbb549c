"""A stateful AMQP fuzzer: random *valid* method sequences on several connections and
channels against a live node (declares, binds and unbinds, publishes plain, confirmed and in
transactions, gets, consumers coming and going, acks out of order, multiple acks, nacks and
rejects, recover, purges, tx commits and rollbacks, channels closed with deliveries
unacknowledged, a channel closed in the middle of a content), with a model of how many
messages each queue holds and which of them clients hold unacknowledged. After every step
every delivery the node made is seen by the client (a synchronous call on each connection)
and each queue's ready count (queue.declare passive) equals the model's: what was routed
to it, less what was acknowledged, rejected without requeue, purged or held by a client.
Every few steps a fresh client is served. At the end every channel is closed
(unacknowledged messages go back) and the ready counts must equal the model's totals; the
broker fixture then fails the test on any sanitizer report in the node's stderr.

Bounded for CI (FUZZ_SECONDS, default 40, or FUZZ_STEPS); FUZZ_SEED replays a run (the seed
is printed). A soak: FUZZ_SECONDS=3600. Runs against RabbitMQ too (AMQP_TARGET=rabbitmq),
which checks the model."""

import os
import random
import time

import pika
import pytest

import amqp_raw as raw
from brokers import target

QUEUES = ["fz.q%d" % i for i in range(4)]
EXCHANGES = {"fz.direct": "direct", "fz.fanout": "fanout", "fz.topic": "topic"}
KEYS = ["a", "b", "a.b", "c"]


def topic_match(pattern, key):
    def match(p, k):
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])
    return match(pattern.split("."), key.split("."))


class Model:
    """What the node should hold: per queue the messages in it (ready or unacknowledged)
    and the bindings that route to it."""

    def __init__(self):
        self.total = {q: 0 for q in QUEUES}
        self.bindings = set()  # (exchange, queue, key)

    def routes(self, exchange, key):
        if exchange == "":
            return [key] if key in self.total else []
        kind = EXCHANGES[exchange]
        out = set()
        for ex, q, k in self.bindings:
            if ex != exchange:
                continue
            if kind == "fanout" or (kind == "direct" and k == key) or (kind == "topic" and topic_match(k, key)):
                out.add(q)
        return sorted(out)


class Chan:
    """One channel of the fuzzer with its mode and the deliveries it holds."""

    def __init__(self, conn, mode):
        self.ch = conn.channel()
        self.mode = mode  # "plain", "confirm" or "tx"
        if mode == "confirm":
            self.ch.confirm_delivery()
        elif mode == "tx":
            self.ch.tx_select()
        self.unacked = {}  # delivery tag -> queue
        self.tx_publishes = []  # queues a pending tx publish routes to
        self.tx_pending = 0  # publishes in the pending tx
        self.tx_acks = set()  # tags acked in the pending tx: still held, no longer ackable
        self.consumers = {}  # tag -> queue

    def on_delivery(self, queue):
        def cb(ch, method, props, body):
            self.unacked[method.delivery_tag] = queue
        return cb


class Fuzzer:
    def __init__(self, b, rng, log):
        self.b = b
        self.rng = rng
        self.log = log
        self.model = Model()
        self.params = pika.ConnectionParameters("127.0.0.1", b.port, connection_attempts=1, socket_timeout=10,
                                                stack_timeout=15, blocked_connection_timeout=30)
        self.conns = [pika.BlockingConnection(self.params) for _ in range(2)]
        self.chans = []
        self.probes = [conn.channel() for conn in self.conns]
        setup = self.conns[0].channel()
        for name, kind in EXCHANGES.items():
            setup.exchange_declare(name, kind)
        for q in QUEUES:
            setup.queue_declare(q)
        setup.close()
        for _ in range(4):
            self.open_channel()

    # -- helpers ------------------------------------------------------------------------
    def open_channel(self):
        conn = self.rng.choice(self.conns)
        self.chans.append(Chan(conn, self.rng.choice(["plain", "plain", "confirm", "tx"])))

    def pick(self):
        return self.rng.choice(self.chans)

    def barrier(self, c):
        """A synchronous call on <c>: the node has handled everything sent on it before."""
        c.ch.queue_declare(QUEUES[0], passive=True)

    def settle(self, c, tags):
        for t in tags:
            self.model.total[c.unacked.pop(t)] -= 1

    def unacked_seen(self, q):
        return sum(1 for c in self.chans for queue in c.unacked.values() if queue == q)

    def node_ready(self):
        """Each queue's ready count, once every delivery the node sent has reached its
        consumer's callback: a synchronous call on every connection (the node writes a
        delivery before any later reply on that connection), then the callbacks run."""
        for probe in self.probes:
            probe.queue_declare(QUEUES[0], passive=True)
        for conn in self.conns:
            conn.process_data_events(0)
        return {q: self.probes[0].queue_declare(q, passive=True).method.message_count for q in QUEUES}

    def check(self, step, what):
        ready = self.node_ready()
        want = {q: self.model.total[q] - self.unacked_seen(q) for q in QUEUES}
        assert ready == want, "step %d (%s): node ready %r, model ready %r (totals %r)" % (
            step, what, ready, want, self.model.total)

    # -- operations ---------------------------------------------------------------------
    def op_bind(self):
        # RabbitMQ routes a publish in a transaction when it is published, mqnode when it
        # is committed (test_tx_publish_is_routed_when_published): the bindings stay as
        # they are while a transaction holds publishes.
        if any(c.tx_pending for c in self.chans):
            return "bind: a transaction holds publishes"
        c, ex, q, key = self.pick(), self.rng.choice(list(EXCHANGES)), self.rng.choice(QUEUES), self.rng.choice(KEYS)
        if EXCHANGES[ex] == "topic":
            key = self.rng.choice(KEYS + ["a.*", "#", "*.b"])
        if self.rng.random() < 0.7:
            c.ch.queue_bind(q, ex, key)
            self.model.bindings.add((ex, q, key))
        else:
            c.ch.queue_unbind(q, ex, key)
            self.model.bindings.discard((ex, q, key))
        return "bind %s %s %s" % (ex, q, key)

    def op_publish(self):
        c = self.pick()
        ex = self.rng.choice([""] + list(EXCHANGES))
        key = self.rng.choice(QUEUES + KEYS) if ex == "" else self.rng.choice(KEYS)
        n = self.rng.randint(1, 5)
        routes = self.model.routes(ex, key)
        for i in range(n):
            props = pika.BasicProperties(delivery_mode=self.rng.choice([1, 2]))
            c.ch.basic_publish(ex, key, b"m" * self.rng.randint(0, 3000), props)
        if c.mode == "tx":
            c.tx_publishes += routes * n
            c.tx_pending += n
        else:
            for q in routes:
                self.model.total[q] += n
            self.barrier(c)
        return "publish %d to %r/%r (%s) -> %s" % (n, ex, key, c.mode, routes)

    def op_get(self):
        c, q = self.pick(), self.rng.choice(QUEUES)
        no_ack = self.rng.random() < 0.3
        method, _props, _body = c.ch.basic_get(q, auto_ack=no_ack)
        if method:
            if no_ack:
                self.model.total[q] -= 1
            else:
                c.unacked[method.delivery_tag] = q
        return "get %s no_ack=%s -> %s" % (q, no_ack, bool(method))

    def op_ack(self):
        c = self.pick()
        ackable = sorted(set(c.unacked) - c.tx_acks)
        if not ackable:
            return "ack: nothing"
        tag = self.rng.choice(ackable)
        multiple = self.rng.random() < 0.25
        c.ch.basic_ack(tag, multiple=multiple)
        tags = [t for t in ackable if t <= tag] if multiple else [tag]
        if c.mode == "tx":
            c.tx_acks.update(tags)  # settled at commit; a rollback makes them ackable again
        else:
            self.settle(c, tags)
            self.barrier(c)
        return "ack %d multiple=%s (%s)" % (tag, multiple, c.mode)

    def op_nack(self):
        c = self.pick()
        if not c.unacked or c.mode == "tx":
            return "nack: nothing"
        tag = self.rng.choice(sorted(c.unacked))
        requeue = self.rng.random() < 0.7
        if self.rng.random() < 0.5:
            c.ch.basic_reject(tag, requeue=requeue)
        else:
            c.ch.basic_nack(tag, multiple=False, requeue=requeue)
        q = c.unacked.pop(tag)
        if not requeue:
            self.model.total[q] -= 1
        self.barrier(c)
        return "nack %d requeue=%s" % (tag, requeue)

    def op_recover(self):
        c = self.pick()
        if c.mode == "tx":
            return "recover: tx channel"
        c.ch.basic_recover(requeue=True)
        c.unacked.clear()  # back in their queues: totals unchanged
        return "recover"

    def op_consume(self):
        c, q = self.pick(), self.rng.choice(QUEUES)
        if len(c.consumers) >= 2:
            tag = self.rng.choice(sorted(c.consumers))
            c.ch.basic_cancel(tag)
            del c.consumers[tag]
            return "cancel %s" % tag
        c.ch.basic_qos(prefetch_count=self.rng.randint(1, 10))
        tag = c.ch.basic_consume(q, c.on_delivery(q))
        c.consumers[tag] = q
        return "consume %s prefetch" % q

    def op_tx_end(self):
        c = self.pick()
        if c.mode != "tx":
            return "tx end: not a tx channel"
        if self.rng.random() < 0.6:
            c.ch.tx_commit()
            for q in c.tx_publishes:
                self.model.total[q] += 1
            self.settle(c, c.tx_acks)
            what = "commit"
        else:
            c.ch.tx_rollback()  # publishes dropped; acked messages stay unacknowledged
            what = "rollback"
        c.tx_publishes, c.tx_acks, c.tx_pending = [], set(), 0
        return "tx %s" % what

    def op_purge(self):
        c, q = self.pick(), self.rng.choice(QUEUES)
        c.ch.queue_purge(q)
        # Ready messages go; unacknowledged ones stay, and may be requeued later.
        self.node_ready()  # every delivery made before the purge is seen
        self.model.total[q] = self.unacked_seen(q)
        return "purge %s" % q

    def op_close_channel(self):
        if len(self.chans) <= 2:
            self.open_channel()
            return "open channel"
        c = self.chans.pop(self.rng.randrange(len(self.chans)))
        c.ch.close()  # its unacknowledged messages are requeued; a pending tx is rolled back
        return "close channel (%d unacked back)" % len(c.unacked)

    def op_fresh_channel(self):
        self.open_channel()
        return "open channel"

    def op_close_mid_content(self):
        """A raw client closes its channel between a content header and its body: the node
        ends that connection with 505 and routes nothing."""
        r = raw.RawConnection("127.0.0.1", self.b.port)
        try:
            r.handshake()
            r.send_method(1, raw.CHANNEL_OPEN, raw.shortstr(""))
            r.expect(raw.CHANNEL_OPEN_OK, channel=1)
            r.send_method(1, raw.BASIC_PUBLISH, raw.basic_publish_args("", self.rng.choice(QUEUES)))
            r.send(raw.header_frame(1, 10))
            r.send_method(1, raw.CHANNEL_CLOSE, raw.close_args())
            args = r.wait_connection_close()
            assert args["reply_code"] == 505, args
        finally:
            r.sock.close()
        return "close mid-content"

    def fresh_client(self):
        conn = pika.BlockingConnection(self.params)
        ch = conn.channel()
        for q in QUEUES:
            ch.queue_declare(q, passive=True)
        conn.close()

    def finish(self):
        for c in self.chans:
            c.ch.close()
        self.chans = []
        ch = self.conns[0].channel()
        ready = {q: ch.queue_declare(q, passive=True).method.message_count for q in QUEUES}
        ch.close()
        for conn in self.conns:
            conn.close()
        return ready


OPS = [("op_publish", 6), ("op_get", 4), ("op_ack", 4), ("op_nack", 2), ("op_bind", 2), ("op_consume", 2),
       ("op_tx_end", 2), ("op_recover", 1), ("op_purge", 1), ("op_close_channel", 1), ("op_fresh_channel", 1),
       ("op_close_mid_content", 0.3)]


def test_stateful_fuzz(broker_factory):
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(1 << 30)))
    seconds = float(os.environ.get("FUZZ_SECONDS", "40"))
    max_steps = int(os.environ.get("FUZZ_STEPS", "100000"))
    print("FUZZ_SEED=%d" % seed)
    rng = random.Random(seed)
    b = broker_factory()
    names, weights = zip(*OPS)
    fz = Fuzzer(b, rng, print)
    history = []
    deadline = time.monotonic() + seconds
    step = 0
    while step < max_steps and time.monotonic() < deadline:
        step += 1
        what = getattr(fz, rng.choices(names, weights)[0])()
        history.append(what)
        fz.check(step, "; ".join(history[-5:]))
        if step % 25 == 0:
            fz.fresh_client()
    ready = fz.finish()
    assert ready == fz.model.total, (ready, fz.model.total)
    print("FUZZ steps=%d seed=%d final=%s" % (step, seed, ready))
    assert step >= 20, "too few steps in %.0f s" % seconds


@pytest.mark.xfail(target() == "mqnode", strict=True,
                   reason="mqnode routes a transaction's publishes at tx.commit, RabbitMQ at basic.publish")
def test_tx_publish_is_routed_when_published(broker_factory):
    """Found by the fuzzer: a queue bound after a transactional publish and before its commit
    gets nothing in RabbitMQ 3.10 (the publish was routed when it arrived)."""
    b = broker_factory()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, connection_attempts=1))
    ch = conn.channel()
    ch.exchange_declare("fz.late", "fanout")
    ch.queue_declare("fz.late.q")
    tx = conn.channel()
    tx.tx_select()
    tx.basic_publish("fz.late", "", b"x")
    ch.queue_bind("fz.late.q", "fz.late")
    tx.tx_commit()
    ready = ch.queue_declare("fz.late.q", passive=True).method.message_count
    conn.close()
    assert ready == 0
