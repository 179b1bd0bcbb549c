"""Per-user limits as RabbitMQ 3.10 has them (rabbitmqctl set_user_limits / clear_user_limits,
/api/user-limits): max-connections refused with 530 at connection.open, max-channels with 530
at channel.open, rabbitmqctl's banners, texts and exit codes (checked against Debian's
rabbitmqctl 3.10.8), and the limits kept across a restart (they are definitions: one catalog
change, stored like users)."""

import base64
import json
import urllib.error
import urllib.request

import pika
import pika.exceptions as pex
import pytest

from brokers import target


def connect(b):
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, connection_attempts=1,
                                                             socket_timeout=10, stack_timeout=15))


def ctl_ok(b, *args):
    r = b.ctl(*args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


@pytest.mark.time_limit(240)  # rabbitmqctl takes seconds a call
def test_user_limits_refuse_connections_and_channels(broker_factory):
    b = broker_factory()
    out = ctl_ok(b, "set_user_limits", "guest", '{"max-connections": 1, "max-channels": 2}')
    assert 'Setting user limits to "{"max-connections": 1, "max-channels": 2}" for user "guest" ...' in out
    first = connect(b)
    with pytest.raises(pex.ProbableAccessDeniedError) as e:
        connect(b)
    assert ('(530) "NOT_ALLOWED - connection refused for user \'guest\': user connection limit (1) is reached"'
            in str(e.value))
    first.channel()
    ch = first.channel()
    with pytest.raises(pex.ConnectionClosedByBroker) as e:
        first.channel()
    assert e.value.reply_code == 530
    assert e.value.reply_text == ("NOT_ALLOWED - number of channels opened for user 'guest' has reached the maximum "
                                  "allowed user limit of (2)")
    del ch
    # A set merges into the limits there; clearing one keeps the other.
    ctl_ok(b, "set_user_limits", "guest", '{"max-channels": 3}')
    out = ctl_ok(b, "clear_user_limits", "guest", "max-connections")
    assert 'Clearing "max-connections" limit for user "guest" ...' in out
    conns = [connect(b), connect(b)]
    for c in conns[:1]:
        for _ in range(3):
            c.channel()
    with pytest.raises(pex.ConnectionClosedByBroker):
        conns[1].channel()  # the user's channels count over all its connections
    # Clearing a limit that is not set is no error (as rabbitmqctl).
    ctl_ok(b, "clear_user_limits", "guest", "max-connections")
    # A negative limit is none.
    ctl_ok(b, "set_user_limits", "guest", '{"max-channels": -1}')
    c = connect(b)
    for _ in range(5):
        c.channel()
    c.close()
    conns[0].close()
    assert 'Clearing all limits for user "guest" ...' in ctl_ok(b, "clear_user_limits", "guest", "all")
    r = b.ctl("clear_user_limits", "nouser", "max-channels")
    assert (r.returncode, r.stderr.strip()) == (69, 'Error:\n{:no_such_user, "nouser"}'), (r.stdout, r.stderr)


@pytest.mark.parametrize("user,definition,text", [
    ("nouser", '{"max-connections": 1}', '{:no_such_user, "nouser"}'),
    ("guest", '{"max-connections": "x"}', 'max-connections should be a number, actually was <<"x">>'),
    ("guest", '{"foo": 1}', 'Unrecognised terms [{<<"foo">>,1}] in user-limits'),
    ("guest", 'notjson', 'JSON decoding error. Reason: badarg'),
])
def test_set_user_limits_errors(broker, user, definition, text):
    r = broker.ctl("set_user_limits", user, definition)
    assert (r.returncode, r.stderr.strip()) == (69, "Error:\n" + text), (r.stdout, r.stderr)


@pytest.mark.skipif(target() != "mqnode", reason="mqnode's management API fixture")
def test_user_limits_over_http_and_kept_across_a_restart(broker_factory):
    b = broker_factory(management=True)
    auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}

    def call(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (b.http_port, path), data=data, method=method,
                                     headers=dict(auth, **({"Content-Type": "application/json"} if data else {})))
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    assert call("GET", "/api/user-limits") == (200, [])
    assert call("PUT", "/api/user-limits/guest/max-connections", {"value": 10})[0] == 204
    assert call("PUT", "/api/user-limits/guest/max-channels", {"value": 20})[0] == 204
    want = [{"user": "guest", "value": {"max-connections": 10, "max-channels": 20}}]
    assert call("GET", "/api/user-limits") == (200, want)
    assert call("GET", "/api/user-limits/guest") == (200, want)
    assert call("GET", "/api/user-limits/nouser")[0] == 404
    assert call("PUT", "/api/user-limits/nouser/max-channels", {"value": 1})[0] == 404
    status, body = call("PUT", "/api/user-limits/guest/max-queues", {"value": 1})
    assert status == 400 and "Unrecognised terms" in body["reason"], body
    assert call("DELETE", "/api/user-limits/guest/max-connections")[0] == 204
    b.stop()
    b.start()
    assert call("GET", "/api/user-limits/guest") == (200, [{"user": "guest", "value": {"max-channels": 20}}])
    assert call("DELETE", "/api/user-limits/guest/max-channels")[0] == 204
    b.stop()
    b.start()
    assert call("GET", "/api/user-limits") == (200, [])
