"""loopback_users: guest may only log in over loopback; other users may connect remotely.

The client runs inside a private network namespace and reaches the broker over a
veth pair (10.213.N.0/30), i.e. from a non-loopback address.
"""

import json

PIKA_CLIENT = r"""
import json, sys, pika, pika.exceptions as pex
host, port, user, pw = sys.argv[1:5] if len(sys.argv) > 4 else (%r, %d, %r, %r)
out = {}
try:
    c = pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=int(port), credentials=pika.PlainCredentials(user, pw),
        connection_attempts=1, socket_timeout=10, stack_timeout=20))
    ch = c.channel()
    q = ch.queue_declare("alice.netns.q", auto_delete=True).method.queue
    ch.basic_publish("", q, b"over veth")
    m, p, body = ch.basic_get(q, auto_ack=True)
    out = {"ok": True, "body": body.decode()}
    c.close()
except pex.ProbableAuthenticationError as e:
    out = {"ok": False, "error": "ProbableAuthenticationError", "text": str(e)}
except Exception as e:
    out = {"ok": False, "error": type(e).__name__, "text": str(e)}
print(json.dumps(out))
"""

RAW_CLIENT = r"""
import json
import amqp_raw as R
r = R.RawConnection(%r, %d)
r.send_protocol_header()
r.expect(R.CONNECTION_START)
r.send_method(0, R.CONNECTION_START_OK, R.start_ok_args(%r, %r))
f = r.read_method()
print(json.dumps({"method": list(f.method), "args": f.args if f.method == R.CONNECTION_CLOSE else {}}))
"""


def _run(netns, code):
    p = netns.run_python(code)
    assert p.returncode == 0, "client failed: %s %s" % (p.stdout, p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_guest_refused_from_non_loopback(netns, remote_broker):
    res = _run(netns, PIKA_CLIENT % (remote_broker.host, remote_broker.port, "guest", "guest"))
    assert res["ok"] is False
    assert res["error"] == "ProbableAuthenticationError", res
    assert "403" in res["text"] and "ACCESS_REFUSED" in res["text"], res


def test_guest_refused_raw_reply(netns, remote_broker):
    res = _run(netns, RAW_CLIENT % (remote_broker.host, remote_broker.port, "guest", "guest"))
    assert res["method"] == [10, 50]
    assert res["args"] == {"reply_code": 403, "class_id": 0, "method_id": 0,
                           "reply_text": "ACCESS_REFUSED - Login was refused using authentication "
                                         "mechanism PLAIN. For details see the broker logfile."}


def test_alice_accepted_from_non_loopback(netns, remote_broker):
    res = _run(netns, PIKA_CLIENT % (remote_broker.host, remote_broker.port, "alice", "alicepw"))
    assert res == {"ok": True, "body": "over veth"}


def test_alice_tune_from_non_loopback(netns, remote_broker):
    res = _run(netns, RAW_CLIENT % (remote_broker.host, remote_broker.port, "alice", "alicepw"))
    assert res["method"] == [10, 30]   # connection.tune: login accepted
