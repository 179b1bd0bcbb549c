"""The management module: the RabbitMQ-compatible HTTP API on /management/bind (basic
auth by an administrator), rabbitmqadmin against it, the Prometheus scrape, and the
control socket's lifecycle (mode 0600, stale file replaced, a second node refused)."""

import base64
import http.client
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

import brokers
from brokers import target
from helpers import publish, wait_message_count

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="mqnode's management module")


@pytest.fixture
def node(broker_factory):
    """A node with the TCP management listener on a free port (and a 'monitor' user
    that may log in but is not an administrator)."""
    users = brokers.DEFAULT_USERS + [{"name": "monitor", "password": "monpw", "tags": ["monitoring"]}]
    return broker_factory(management=True, users=users)


def request(b, method, path, body=None, auth=("guest", "guest"), extra_headers=None):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    headers = dict(extra_headers or {})
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
    if body is not None:
        body = json.dumps(body) if not isinstance(body, str) else body
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), r.getheader("WWW-Authenticate"), data


def jbody(data):
    return json.loads(data) if data else None


def test_api_needs_an_administrator_but_metrics_do_not(node):
    status, _, challenge, data = request(node, "GET", "/api/overview", auth=None)
    assert status == 401 and challenge.startswith("Basic realm="), (status, challenge)
    assert jbody(data)["error"] == "not_authorised"
    assert request(node, "GET", "/api/overview", auth=("guest", "wrong"))[0] == 401
    status, _, _, data = request(node, "GET", "/api/policies", auth=("monitor", "monpw"))
    assert status == 401 and jbody(data) == {"error": "not_authorised", "reason": "Not policymaker user"}
    assert request(node, "PUT", "/api/policies/%2F/p", {"pattern": ".*", "definition": {}},
                   auth=("monitor", "monpw"))[0] == 401
    status, ctype, _, data = request(node, "GET", "/api/overview")
    assert status == 200 and ctype == "application/json"
    ov = jbody(data)
    assert ov["product_name"] == "mqnode" and ov["node"] and ov["rabbitmq_version"]
    assert {"protocol": "amqp", "ip_address": "127.0.0.1", "port": node.port} == \
        {k: ov["listeners"][0][k] for k in ("protocol", "ip_address", "port")}
    status, ctype, _, _ = request(node, "GET", "/metrics", auth=None)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")


def test_policy_crud_in_rabbitmqs_shapes(node):
    body = {"pattern": "^crud\\.", "definition": {"max-length": 4}, "priority": 2, "apply-to": "queues"}
    assert request(node, "PUT", "/api/policies/%2F/crud", body)[0] == 201
    body["definition"] = {"max-length": 5}
    assert request(node, "PUT", "/api/policies/%2F/crud", body)[0] == 204   # an update
    status, _, _, data = request(node, "GET", "/api/policies/%2F/crud")
    assert status == 200
    assert jbody(data) == {"vhost": "/", "name": "crud", "pattern": "^crud\\.", "apply-to": "queues",
                           "definition": {"max-length": 5}, "priority": 2}
    assert [p["name"] for p in jbody(request(node, "GET", "/api/policies/%2F")[3])] == ["crud"]
    assert [p["name"] for p in jbody(request(node, "GET", "/api/policies")[3])] == ["crud"]
    assert jbody(request(node, "GET", "/api/policies/other")[3]) == []
    assert request(node, "GET", "/api/policies/nope")[0] == 404
    # Bad input: 400 with RabbitMQ's {"error": "bad_request", "reason": ...}
    status, _, _, data = request(node, "PUT", "/api/policies/%2F/bad",
                                 {"pattern": ".*", "definition": {"max-length": -1}})
    assert status == 400 and jbody(data)["error"] == "bad_request"
    assert "max-length" in jbody(data)["reason"]
    status, _, _, data = request(node, "PUT", "/api/policies/%2F/bad", "{not json")
    assert status == 400 and jbody(data)["reason"] == "the body is not valid JSON"
    status, _, _, data = request(node, "PUT", "/api/policies/%2F/bad", {"pattern": "(", "definition": {}})
    assert status == 400 and "pattern" in jbody(data)["reason"]
    assert request(node, "PUT", "/api/policies/nope/p", {"pattern": ".*", "definition": {}})[0] == 404
    assert request(node, "DELETE", "/api/policies/%2F/crud")[0] == 204
    assert request(node, "DELETE", "/api/policies/%2F/crud")[0] == 404
    assert request(node, "GET", "/api/policies/%2F/crud")[0] == 404


def test_a_policy_set_over_http_truncates_an_existing_queue(node):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
    ch = c.channel()
    ch.queue_declare("http.q")
    for i in range(6):
        publish(ch, "http.q", b"%d" % i)
    wait_message_count(ch, "http.q", 6)
    assert request(node, "PUT", "/api/policies/%2F/lim", {"pattern": "^http\\.", "definition": {"max-length": 1}})[0] == 201
    wait_message_count(ch, "http.q", 1)
    assert ch.basic_get("http.q", auto_ack=True)[2] == b"5"
    c.close()


@pytest.mark.skipif(not shutil.which("rabbitmqadmin"), reason="rabbitmqadmin (Debian rabbitmq-server) not installed")
def test_rabbitmqadmin_declares_lists_and_deletes_policies(node):
    base = ["rabbitmqadmin", "-H", "127.0.0.1", "-P", str(node.http_port), "-u", "guest", "-p", "guest"]

    def admin(*args):
        p = subprocess.run(base + list(args), capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        return p.stdout

    admin("declare", "policy", "name=adm", "pattern=^adm\\.", 'definition={"message-ttl": 1000}',
          "priority=4", "apply-to=queues")
    listed = json.loads(admin("-f", "raw_json", "list", "policies"))
    assert listed == [{"vhost": "/", "name": "adm", "pattern": "^adm\\.", "apply-to": "queues",
                       "definition": {"message-ttl": 1000}, "priority": 4}]
    assert "mqnode" in admin("-f", "raw_json", "show", "overview")
    admin("delete", "policy", "name=adm")
    assert json.loads(admin("-f", "raw_json", "list", "policies")) == []
    p = subprocess.run(base[:-4] + ["-u", "guest", "-p", "nope", "list", "policies"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "Access refused" in p.stderr, p.stderr  # its words for a 401


def scrape(node):
    status, _, _, data = request(node, "GET", "/metrics", auth=None)
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(data.decode())}
    return families


def value(families, name, **labels):
    # prometheus_client strips "_total" from counter family names but keeps it on samples.
    fam = families.get(name) or families.get(name[:-len("_total")] if name.endswith("_total") else None)
    assert fam is not None, "no family %s in the scrape" % name
    matches = [s.value for s in fam.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, "%s%r: %r" % (name, labels, fam.samples)
    return matches[0]


def test_metrics_scrape_counts_what_happened(node):
    before = scrape(node)
    published_before = value(before, "mqnode_broker_messages_published_total")
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
    ch = c.channel()
    ch.queue_declare("m.q")
    for i in range(7):
        publish(ch, "m.q", b"x" * 10)
    wait_message_count(ch, "m.q", 7)
    m, _, _ = ch.basic_get("m.q", auto_ack=False)   # one unacked
    f = scrape(node)
    assert f["mqnode_broker_messages_published"].type == "counter"
    assert value(f, "mqnode_broker_messages_published_total") == published_before + 7
    assert value(f, "mqnode_queue_messages_ready", vhost="/", queue="m.q") == 6
    assert value(f, "mqnode_queue_messages_ready_bytes", vhost="/", queue="m.q") == 60
    assert value(f, "mqnode_broker_messages_unacked") == 1
    assert value(f, "mqnode_broker_connections") == 1
    assert value(f, "mqnode_broker_channels") == 1
    assert value(f, "mqnode_build_info")  == 1
    assert value(f, "process_resident_memory_bytes") > 1 << 20
    assert value(f, "mqnode_module_health", module="broker", state="ok") == 1
    assert value(f, "mqnode_module_health", module="broker", state="down") == 0
    assert value(f, "mqnode_broker_alarm", resource="memory") == 0
    ch.basic_ack(m.delivery_tag)
    c.close()
    f = scrape(node)
    assert value(f, "mqnode_broker_messages_unacked") == 0
    assert value(f, "mqnode_broker_messages_acked_total") == 1
    assert value(f, "mqnode_broker_connections") == 0


def test_metrics_show_a_lazy_queue_holding_only_its_window_in_ram(node):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
    ch = c.channel()
    ch.queue_declare("m.lazy", arguments={"x-queue-mode": "lazy"})
    for i in range(2000):
        publish(ch, "m.lazy", b"%04d" % i + b"z" * 4092)
    wait_message_count(ch, "m.lazy", 2000)
    f = scrape(node)
    assert value(f, "mqnode_queue_messages_ready", vhost="/", queue="m.lazy") == 2000
    assert value(f, "mqnode_queue_messages_ready_bytes", vhost="/", queue="m.lazy") == 2000 * 4096
    # A lazy queue's window is 256 KiB: about 60 of these messages, the rest paged out.
    assert 0 < value(f, "mqnode_queue_messages_ram", vhost="/", queue="m.lazy") < 100
    assert value(f, "mqnode_queue_messages_ram_bytes", vhost="/", queue="m.lazy") <= 256 << 10
    ch.queue_delete("m.lazy")
    c.close()


def test_control_socket_is_private_replaced_when_stale_and_removed_at_stop(broker_factory):
    b = broker_factory()
    sock = os.path.join(b.data_dir, "mqnode.sock")
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    # A second node on the same data dir is refused (by the data dir's lock, before it
    # gets to the socket: test_data_dir_lock.py) and leaves the socket alone.
    other = brokers.MqnodeBroker(tempfile.mkdtemp(prefix="mqtest-mgmt-"))
    other.data_dir = b.data_dir
    with pytest.raises(brokers.BrokerError) as ei:
        other.start()
    assert "is in use" in str(ei.value) and "pid %d" % b.proc.pid in str(ei.value)
    shutil.rmtree(other.workdir, ignore_errors=True)
    assert b.ctl("status").returncode == 0   # the first one still serves it
    # kill -9 leaves the file behind; the next start replaces it.
    b.stopped_by_us = True
    os.killpg(b.proc.pid, signal.SIGKILL)
    b.proc.wait(10)
    assert os.path.exists(sock)
    b.stopped_by_us = False
    b.start()
    assert b.ctl("status").returncode == 0
    assert b.terminate() == 0
    assert not os.path.exists(sock)
