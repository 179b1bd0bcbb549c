"""Routing semantics: topic patterns, headers exchange, fanout, direct."""

import decimal

import pika

from helpers import drain_get, sync

# (binding pattern, routing key, matches?)
TOPIC_CASES = [
    ("#", "", True), ("#", "a", True), ("#", "a.b.c", True), ("#", "..", True),
    ("*", "a", True), ("*", "", False), ("*", "a.b", False), ("*", ".", False),
    ("a.*", "a.b", True), ("a.*", "a", False), ("a.*", "a.b.c", False), ("a.*", "a.", True),
    ("a.#", "a", True), ("a.#", "a.b", True), ("a.#", "a.b.c", True), ("a.#", "b.a", False),
    ("a.#", "ab", False),
    ("#.b", "b", True), ("#.b", "a.b", True), ("#.b", "a.c.b", True), ("#.b", "b.a", False),
    ("a.#.b", "a.b", True), ("a.#.b", "a.x.b", True), ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.b.c", False), ("a.#.b", "b.a.b", False),
    ("a.*.b", "a.x.b", True), ("a.*.b", "a.b", False), ("a.*.b", "a..b", True),
    ("a..b", "a..b", True), ("a..b", "a.x.b", False), ("a..b", "a.b", False),
    ("*.*", "a.b", True), ("*.*", "a", False), ("*.*", ".", True),
    ("#.#", "", True), ("#.#", "a.b.c", True),
    ("*.#", "a", True), ("*.#", "", False), ("#.*", "a.b", True),
    ("a", "a", True), ("a", "A", False), ("a", "a.b", False),
    ("", "", True), ("", "a", False),
    ("a.b.c", "a.b.c", True), ("a.*.#", "a.b", True), ("a.*.#", "a", False),
    ("*.b.#", "a.b", True), ("*.b.#", "a.b.c.d", True), ("*.b.#", "b", False),
]


def test_topic_patterns(amqp, uname):
    ch = amqp.channel()
    x = uname("x")
    ch.exchange_declare(x, exchange_type="topic", auto_delete=True)
    patterns = sorted({p for p, _, _ in TOPIC_CASES})
    keys = sorted({k for _, k, _ in TOPIC_CASES})
    qs = {}
    for p in patterns:
        q = uname()
        ch.queue_declare(q, auto_delete=True)
        ch.queue_bind(q, x, p)
        qs[p] = q
    for k in keys:
        ch.basic_publish(x, k, k.encode() + b"|")
    sync(ch)
    got = {p: sorted(b.decode()[:-1] for _, _, b in drain_get(ch, qs[p])) for p in patterns}
    mismatches = []
    for p, k, expected in TOPIC_CASES:
        if (k in got[p]) != expected:
            mismatches.append("pattern %r key %r: expected %s" % (p, k, "match" if expected else "no match"))
    assert not mismatches, "\n".join(mismatches)


def test_topic_queue_bound_twice_gets_one_copy(amqp, uname):
    ch = amqp.channel()
    x, q = uname("x"), uname()
    ch.exchange_declare(x, exchange_type="topic", auto_delete=True)
    ch.queue_declare(q, auto_delete=True)
    ch.queue_bind(q, x, "a.*")
    ch.queue_bind(q, x, "#")
    ch.queue_bind(q, x, "a.b")
    ch.basic_publish(x, "a.b", b"one")
    sync(ch)
    assert [b for _, _, b in drain_get(ch, q)] == [b"one"]


def test_direct_exchange(amqp, uname):
    ch = amqp.channel()
    x, q1, q2, q3 = uname("x"), uname(), uname(), uname()
    ch.exchange_declare(x, exchange_type="direct", auto_delete=True)
    for q in (q1, q2, q3):
        ch.queue_declare(q, auto_delete=True)
    ch.queue_bind(q1, x, "k1")
    ch.queue_bind(q2, x, "k1")
    ch.queue_bind(q2, x, "k2")
    ch.queue_bind(q3, x, "")
    ch.basic_publish(x, "k1", b"a")
    ch.basic_publish(x, "k2", b"b")
    ch.basic_publish(x, "K1", b"c")   # case sensitive
    ch.basic_publish(x, "", b"d")
    sync(ch)
    assert [b for _, _, b in drain_get(ch, q1)] == [b"a"]
    assert [b for _, _, b in drain_get(ch, q2)] == [b"a", b"b"]
    assert [b for _, _, b in drain_get(ch, q3)] == [b"d"]


def test_fanout_to_several_queues(amqp, uname):
    ch = amqp.channel()
    x = uname("x")
    ch.exchange_declare(x, exchange_type="fanout", auto_delete=True)
    qs = [uname() for _ in range(5)]
    for i, q in enumerate(qs):
        ch.queue_declare(q, auto_delete=True)
        ch.queue_bind(q, x, "key-%d" % i)   # binding keys are ignored by fanout
    ch.basic_publish(x, "anything", b"m1")
    ch.basic_publish(x, "", b"m2")
    sync(ch)
    for q in qs:
        got = drain_get(ch, q)
        assert [b for _, _, b in got] == [b"m1", b"m2"]
        assert got[0][0].routing_key == "anything"


# headers exchange ---------------------------------------------------------

# (binding arguments, message headers, matches?)
HEADERS_CASES = [
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 3}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 2, "b": "x"}, False),
    ({"x-match": "all", "a": 1, "b": "x"}, None, False),
    ({"x-match": "any", "a": 1, "b": "x"}, {"a": 1}, True),
    ({"x-match": "any", "a": 1, "b": "x"}, {"b": "x", "z": 0}, True),
    ({"x-match": "any", "a": 1, "b": "x"}, {"a": 2, "b": "y"}, False),
    ({"x-match": "any", "a": 1, "b": "x"}, {}, False),
    ({"a": 1}, {"a": 1, "q": "w"}, True),                           # default is all
    ({"a": 1}, {"q": "w"}, False),
    # x- prefixed binding keys are ignored for all/any
    ({"x-match": "all", "a": 1, "x-foo": "bar"}, {"a": 1}, True),
    ({"x-match": "any", "x-foo": "bar", "a": 1}, {"x-foo": "bar"}, False),
    ({"x-match": "any", "x-foo": "bar", "a": 1}, {"a": 1}, True),
    # all-with-x / any-with-x (RabbitMQ 3.10) do consider x- keys
    ({"x-match": "all-with-x", "a": 1, "x-foo": "bar"}, {"a": 1}, False),
    ({"x-match": "all-with-x", "a": 1, "x-foo": "bar"}, {"a": 1, "x-foo": "bar"}, True),
    ({"x-match": "any-with-x", "x-foo": "bar"}, {"x-foo": "bar"}, True),
    # value types matter: int 1 is not the string "1"
    ({"x-match": "all", "a": 1}, {"a": "1"}, False),
    ({"x-match": "all", "s": "v"}, {"s": "v"}, True),
    ({"x-match": "all", "t": True}, {"t": True}, True),
    ({"x-match": "all", "t": True}, {"t": False}, False),
    ({"x-match": "all", "big": 2 ** 40}, {"big": 2 ** 40}, True),
    # a void binding value matches any value of that header (presence check)
    ({"x-match": "all", "p": None}, {"p": "anything"}, True),
    ({"x-match": "all", "p": None}, {"other": 1}, False),
    ({"x-match": "all", "d": decimal.Decimal("1.5")}, {"d": decimal.Decimal("1.5")}, True),
]


def test_headers_exchange_matching(amqp, uname):
    ch = amqp.channel()
    x = uname("x")
    ch.exchange_declare(x, exchange_type="headers", auto_delete=True)
    bindings = []
    for args, _, _ in HEADERS_CASES:
        if args not in bindings:
            bindings.append(args)
    qs = []
    for args in bindings:
        q = uname()
        ch.queue_declare(q, auto_delete=True)
        ch.queue_bind(q, x, "", arguments=args)
        qs.append(q)
    for i, (args, headers, _) in enumerate(HEADERS_CASES):
        ch.basic_publish(x, "ignored", b"%d" % i, pika.BasicProperties(headers=headers))
    sync(ch)
    received = {q: {int(b) for _, _, b in drain_get(ch, q)} for q in qs}
    mismatches = []
    for i, (args, headers, expected) in enumerate(HEADERS_CASES):
        q = qs[bindings.index(args)]
        if (i in received[q]) != expected:
            mismatches.append("binding %r headers %r: expected %s" % (args, headers,
                                                                     "match" if expected else "no match"))
    assert not mismatches, "\n".join(mismatches)


def test_headers_exchange_empty_binding(amqp, uname):
    ch = amqp.channel()
    x, q_all, q_any = uname("x"), uname(), uname()
    ch.exchange_declare(x, exchange_type="headers", auto_delete=True)
    ch.queue_declare(q_all, auto_delete=True)
    ch.queue_declare(q_any, auto_delete=True)
    ch.queue_bind(q_all, x, "", arguments={"x-match": "all"})
    ch.queue_bind(q_any, x, "", arguments={"x-match": "any"})
    ch.basic_publish(x, "", b"h", pika.BasicProperties(headers={"a": 1}))
    ch.basic_publish(x, "", b"n")
    sync(ch)
    # RabbitMQ: "all" with no (non x-) keys matches everything, "any" matches nothing
    assert sorted(b for _, _, b in drain_get(ch, q_all)) == [b"h", b"n"]
    assert drain_get(ch, q_any) == []


def test_headers_invalid_x_match(amqp, uname):
    from helpers import expect_channel_close
    ch = amqp.channel()
    q = uname()
    ch.queue_declare(q, auto_delete=True)
    text = expect_channel_close(
        lambda: ch.queue_bind(q, "amq.headers", "", arguments={"x-match": "foo"}), 406)
    assert text == ('PRECONDITION_FAILED - Invalid x-match field value <<"foo">>; '
                    'expected all, any, all-with-x, or any-with-x')
