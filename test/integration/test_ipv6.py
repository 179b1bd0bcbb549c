"""IPv6 (issue 10): a listener on every address -- the default, RabbitMQ's [::]:5672, or
{"port": N} -- is dual-stack: clients reach the same broker over ::1 and over 127.0.0.1.
The guest user's loopback-only rule holds behind it: ::1 and IPv4 loopback (which the
socket sees as ::ffff:127.0.0.1) are loopback; the host's other addresses, in either
family, are not. The management API's guest check follows the same rule."""

import base64
import http.client
import subprocess

import pika
import pika.exceptions as pex
import pytest

from brokers import free_port, target
from helpers import ALICE, GUEST

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="mqnode's {\"port\": N} listener form")


def global_address(family):
    """One of the host's non-loopback addresses ("inet" or "inet6"), None if it has none."""
    out = subprocess.run(["ip", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[out.index(family) + 1].split("/")[0] if family in out else None


@pytest.fixture
def node(broker_factory):
    port = free_port()
    return broker_factory(port=port, listeners=[{"port": port}])


def connect(host, port, creds=GUEST):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host, port, credentials=pika.PlainCredentials(*creds), connection_attempts=1, socket_timeout=10))


def test_one_listener_serves_ipv6_and_ipv4_loopback(node):
    v6 = connect("::1", node.port)
    v4 = connect("127.0.0.1", node.port)
    q = v6.channel().queue_declare("", exclusive=False, auto_delete=False).method.queue
    v6.channel().basic_publish("", q, b"over ::1")
    assert v4.channel().basic_get(q, auto_ack=True)[2] == b"over ::1"
    v4.channel().queue_delete(q)
    v6.close()
    v4.close()


@pytest.mark.parametrize("family", ["inet", "inet6"])
def test_guest_is_refused_from_the_hosts_other_addresses(node, family):
    address = global_address(family)
    if address is None:
        pytest.skip("this host has no global %s address" % family)
    # The address reaches the broker (alice may log in from anywhere) ...
    connect(address, node.port, ALICE).close()
    # ... but guest is loopback-only: ::ffff:192.0.2.2 or fd00::2 are not loopback.
    with pytest.raises(pex.AMQPConnectionError) as ei:
        connect(address, node.port, GUEST)
    assert "ACCESS_REFUSED" in repr(ei.value) or "403" in repr(ei.value), repr(ei.value)


def test_guest_may_use_the_management_api_over_ipv4_loopback_on_a_dual_stack_bind(broker_factory):
    b = broker_factory(management="[::]")
    auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
    for host in ("127.0.0.1", "::1"):   # the first is ::ffff:127.0.0.1 to the socket
        c = http.client.HTTPConnection(host, b.http_port, timeout=10)
        c.request("GET", "/api/overview", headers=auth)
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 200, (host, r.status)
