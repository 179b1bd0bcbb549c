"""Management API, exchanges, queues and bindings (RabbitMQ 3.10's /api/exchanges,
/api/queues, /api/bindings): a queue declared over HTTP used by pika, purge, get, publish,
the four binding forms with Location and properties keys, connections closed with 320 and
X-Reason, health checks, list parameters, and rabbitmqadmin (Debian's) doing the same."""

import base64
import http.client
import json
import shutil
import subprocess
from urllib.parse import quote

import pika
import pytest

from brokers import target
from helpers import publish, wait_message_count
from test_mgmt_access import call

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="mqnode's management module")


@pytest.fixture
def node(broker_factory):
    return broker_factory(management=True)


def pika_channel(b):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, client_properties={
        "connection_name": "pika-test"}))
    return c, c.channel()


def test_a_queue_put_over_http_is_used_by_pika_purged_and_read(node):
    body = {"durable": True, "auto_delete": False, "arguments": {"x-max-length": 5}}
    assert call(node, "PUT", "/api/queues/%2F/hq", body)[0] == 201
    assert call(node, "PUT", "/api/queues/%2F/hq", body)[0] == 204
    status, err = call(node, "PUT", "/api/queues/%2F/hq", {"durable": False})
    assert status == 400 and err["error"] == "bad_request" and "durable" in err["reason"]
    c, ch = pika_channel(node)
    ok = ch.queue_declare("hq", passive=True)
    assert ok.method.message_count == 0
    for i in range(3):
        publish(ch, "hq", b"m%d" % i)
    wait_message_count(ch, "hq", 3)
    status, q = call(node, "GET", "/api/queues/%2F/hq")
    assert status == 200
    assert {k: q[k] for k in ("name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "messages",
                              "messages_ready", "messages_unacknowledged", "consumers", "state")} == \
        {"name": "hq", "vhost": "/", "durable": True, "auto_delete": False, "exclusive": False,
         "arguments": {"x-max-length": 5}, "messages": 3, "messages_ready": 3, "messages_unacknowledged": 0,
         "consumers": 0, "state": "running"}
    assert q["node"]
    # get with requeue leaves them; the count and shapes are RabbitMQ's.
    status, got = call(node, "POST", "/api/queues/%2F/hq/get",
                       {"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000})
    assert status == 200
    assert [m["payload"] for m in got] == ["m0", "m1"]
    assert got[0]["payload_encoding"] == "string" and got[0]["routing_key"] == "hq" and got[0]["exchange"] == ""
    assert got[0]["message_count"] == 2 and got[0]["redelivered"] is False and got[0]["payload_bytes"] == 2
    assert call(node, "GET", "/api/queues/%2F/hq")[1]["messages"] == 3
    assert call(node, "POST", "/api/queues/%2F/hq/get", {"count": 1}) == \
        (400, {"error": "bad_request", "reason": "[{key_missing,ackmode},{key_missing,encoding}]"})
    # if-empty refuses; purge empties it, and pika sees it empty.
    assert call(node, "DELETE", "/api/queues/%2F/hq?if-empty=true") == \
        (400, {"error": "bad_request", "reason": "queue 'hq' in vhost '/' not empty"})
    assert call(node, "DELETE", "/api/queues/%2F/hq/contents")[0] == 204
    assert ch.queue_declare("hq", passive=True).method.message_count == 0
    # A consumer shows up, as does the in-use refusal.
    ch.basic_consume("hq", lambda *a: None, consumer_tag="ctag-1")
    status, consumers = call(node, "GET", "/api/consumers/%2F")
    assert status == 200 and [(x["consumer_tag"], x["queue"]["name"]) for x in consumers] == [("ctag-1", "hq")]
    assert call(node, "GET", "/api/queues/%2F/hq")[1]["consumers"] == 1
    assert call(node, "DELETE", "/api/queues/%2F/hq?if-unused=true")[0] == 400
    assert call(node, "DELETE", "/api/queues/%2F/hq")[0] == 204
    assert call(node, "GET", "/api/queues/%2F/hq")[0] == 404
    assert call(node, "DELETE", "/api/queues/%2F/hq")[0] == 404
    c.close()


def test_publish_through_an_exchange_and_get_binary(node):
    assert call(node, "PUT", "/api/exchanges/%2F/hx", {"type": "topic", "durable": True})[0] == 201
    assert call(node, "PUT", "/api/exchanges/%2F/hx", {"type": "direct"}) == (400, {
        "error": "bad_request",
        "reason": "inequivalent arg 'type' for exchange 'hx' in vhost '/': received 'direct' but current is 'topic'"})
    status, ex = call(node, "GET", "/api/exchanges/%2F/hx")
    assert status == 200 and {k: ex[k] for k in ("name", "type", "durable", "auto_delete", "internal", "arguments")} == \
        {"name": "hx", "type": "topic", "durable": True, "auto_delete": False, "internal": False, "arguments": {}}
    assert call(node, "PUT", "/api/queues/%2F/bq", {})[0] == 201
    status, _ = call(node, "POST", "/api/bindings/%2F/e/hx/q/bq", {"routing_key": "a.#", "arguments": {}})
    assert status == 201
    msg = {"properties": {"delivery_mode": 2, "headers": {"h": "v"}}, "routing_key": "a.b",
           "payload": "AAEC/w==", "payload_encoding": "base64"}
    assert call(node, "POST", "/api/exchanges/%2F/hx/publish", msg) == (200, {"routed": True})
    msg["routing_key"] = "zz"
    assert call(node, "POST", "/api/exchanges/%2F/hx/publish", msg) == (200, {"routed": False})
    status, got = call(node, "POST", "/api/queues/%2F/bq/get",
                       {"count": 5, "ackmode": "ack_requeue_false", "encoding": "auto"})
    assert status == 200 and len(got) == 1
    assert got[0]["payload"] == "AAEC/w==" and got[0]["payload_encoding"] == "base64"
    assert got[0]["properties"] == {"delivery_mode": 2, "headers": {"h": "v"}}
    assert got[0]["routing_key"] == "a.b" and got[0]["exchange"] == "hx"
    assert call(node, "GET", "/api/queues/%2F/bq")[1]["messages"] == 0   # acked away
    assert call(node, "POST", "/api/exchanges/%2F/amq.default/publish",
                {"properties": {}, "routing_key": "bq", "payload": "p", "payload_encoding": "string"})[1] == \
        {"routed": True}
    assert call(node, "DELETE", "/api/exchanges/%2F/amq.direct") == (401, {"error": "not_authorised",
                                                                          "reason": "Access refused."})
    assert call(node, "DELETE", "/api/exchanges/%2F/hx?if-unused=true") == \
        (400, {"error": "bad_request", "reason": "exchange 'hx' in vhost '/' in use"})
    assert call(node, "DELETE", "/api/exchanges/%2F/hx")[0] == 204
    assert call(node, "GET", "/api/exchanges/%2F/hx")[0] == 404


def test_bindings_in_all_four_forms(node):
    for path, body in (("/api/exchanges/%2F/bx", {"type": "direct"}), ("/api/exchanges/%2F/by", {"type": "fanout"}),
                       ("/api/queues/%2F/bq", {})):
        assert call(node, "PUT", path, body)[0] == 201
    conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=10)
    conn.request("POST", "/api/bindings/%2F/e/bx/q/bq", body=json.dumps({"routing_key": "k~1", "arguments": {}}),
                 headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                          "Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    assert r.status == 201 and r.getheader("Location") == "bq/k%7E1"
    conn.close()
    assert call(node, "POST", "/api/bindings/%2F/e/bx/q/bq", {"routing_key": "", "arguments": {"x": 1}})[0] == 201
    assert call(node, "POST", "/api/bindings/%2F/e/bx/e/by", {"routing_key": "r"})[0] == 201
    status, between = call(node, "GET", "/api/bindings/%2F/e/bx/q/bq")
    assert status == 200
    assert sorted(b["routing_key"] for b in between) == ["", "k~1"]
    one = [b for b in between if b["routing_key"] == "k~1"][0]
    assert one == {"source": "bx", "vhost": "/", "destination": "bq", "destination_type": "queue",
                   "routing_key": "k~1", "arguments": {}, "properties_key": "k%7E1"}
    assert call(node, "GET", "/api/bindings/%2F/e/bx/q/bq/k%257E1") == (200, one)
    with_args = [b for b in between if b["routing_key"] == ""][0]
    assert with_args["properties_key"].startswith("~")
    # By queue: the default exchange's implicit binding first; by exchange as source.
    qb = call(node, "GET", "/api/queues/%2F/bq/bindings")[1]
    assert [(b["source"], b["routing_key"]) for b in qb][0] == ("", "bq")
    assert len(qb) == 3
    assert [b["destination"] for b in call(node, "GET", "/api/exchanges/%2F/bx/bindings/source")[1]] == \
        ["by", "bq", "bq"]
    assert [b["source"] for b in call(node, "GET", "/api/exchanges/%2F/by/bindings/destination")[1]] == ["bx"]
    assert len(call(node, "GET", "/api/bindings/%2F")[1]) == 4   # 1 implicit + 3
    # Routed as bound: pika publishes to bx with k~1.
    c, ch = pika_channel(node)
    publish(ch, "k~1", b"x", exchange="bx")
    wait_message_count(ch, "bq", 1)
    # Delete by properties key; a second time it is gone.
    assert call(node, "DELETE", "/api/bindings/%2F/e/bx/q/bq/k%257E1")[0] == 204
    assert call(node, "DELETE", "/api/bindings/%2F/e/bx/q/bq/k%257E1")[0] == 404
    assert call(node, "DELETE", "/api/bindings/%2F/e/bx/q/bq/" + with_args["properties_key"])[0] == 204
    assert call(node, "GET", "/api/bindings/%2F/e/bx/q/bq")[1] == []
    assert call(node, "POST", "/api/bindings/%2F/e/nope/q/bq", {})[0] == 404
    c.close()


def test_connections_are_listed_and_closed_with_320_and_the_reason(node):
    c, ch = pika_channel(node)
    status, conns = call(node, "GET", "/api/connections")
    assert status == 200 and len(conns) == 1
    conn = conns[0]
    assert conn["user"] == "guest" and conn["vhost"] == "/" and conn["channels"] == 1
    assert conn["peer_host"] == "127.0.0.1" and conn["port"] == node.port
    assert conn["name"] == "127.0.0.1:%d -> 127.0.0.1:%d" % (conn["peer_port"], node.port)
    assert conn["user_provided_name"] == "pika-test"
    chans = call(node, "GET", "/api/channels")[1]
    assert [x["number"] for x in chans] == [1] and chans[0]["connection_details"]["name"] == conn["name"]
    assert call(node, "DELETE", "/api/connections/" + quote(conn["name"], safe=""),
                headers={"X-Reason": "maintenance window"})[0] == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        for _ in range(50):
            c.process_data_events(0.1)
    assert e.value.reply_code == 320
    assert "maintenance window" in e.value.reply_text
    assert call(node, "GET", "/api/connections")[1] == []
    assert call(node, "DELETE", "/api/connections/nope")[0] == 404


def test_health_checks_aliveness_and_nodes(node):
    assert call(node, "GET", "/api/aliveness-test/%2F") == (200, {"status": "ok"})
    assert call(node, "GET", "/api/aliveness-test/nope")[0] == 404
    for check in ("alarms", "local-alarms", "virtual-hosts", "node-is-quorum-critical"):
        status, body = call(node, "GET", "/api/health/checks/" + check)
        assert status == 200 and body["status"] == "ok", check
    assert call(node, "GET", "/api/health/checks/port-listener/%d" % node.port) == \
        (200, {"status": "ok", "port": node.port})
    status, body = call(node, "GET", "/api/health/checks/port-listener/1")
    assert status == 503 and body["status"] == "failed" and body["missing"] == 1 and node.port in body["ports"]
    assert call(node, "GET", "/api/health/checks/protocol-listener/amqp") == (200, {"status": "ok", "protocol": "amqp"})
    assert call(node, "GET", "/api/health/checks/protocol-listener/mqtt")[0] == 503
    name = call(node, "GET", "/api/cluster-name")[1]["name"]
    nodes = call(node, "GET", "/api/nodes")[1]
    assert [n["name"] for n in nodes] == [name] and nodes[0]["running"] is True
    assert call(node, "GET", "/api/nodes/" + name)[1]["name"] == name


def test_list_parameters_sort_filter_page_columns(node):
    for n in ("A1", "a2", "b3", "c4", "B5"):
        assert call(node, "PUT", "/api/queues/%2F/" + n, {})[0] == 201
    assert [q["name"] for q in call(node, "GET", "/api/queues")[1]] == ["A1", "B5", "a2", "b3", "c4"]
    assert call(node, "GET", "/api/queues?sort=name&sort_reverse=true&columns=name")[1] == \
        [{"name": n} for n in ("c4", "b3", "a2", "B5", "A1")]
    page = call(node, "GET", "/api/queues?page=1&page_size=2&name=a&columns=name,vhost")[1]
    assert page == {"filtered_count": 2, "item_count": 2, "items": [{"name": "A1", "vhost": "/"},
                                                                    {"name": "a2", "vhost": "/"}],
                    "page": 1, "page_count": 1, "page_size": 2, "total_count": 5}
    page = call(node, "GET", "/api/queues?page=1&name=%5Eb&use_regex=true&columns=name")[1]
    assert page["items"] == [{"name": "B5"}, {"name": "b3"}]
    assert call(node, "GET", "/api/queues?page=9&page_size=2") == \
        (400, {"error": "page_out_of_range", "reason": "Page out of range, page: 9 page size: 2, len: 5"})


@pytest.mark.skipif(not shutil.which("rabbitmqadmin"), reason="rabbitmqadmin (Debian rabbitmq-server) not installed")
def test_rabbitmqadmin_manages_users_vhosts_queues_and_messages(node):
    base = ["rabbitmqadmin", "-H", "127.0.0.1", "-P", str(node.http_port), "-u", "guest", "-p", "guest"]

    def admin(*args):
        p = subprocess.run(base + list(args), capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
        return p.stdout

    admin("declare", "vhost", "name=adm")
    admin("declare", "user", "name=au", "password=apw", "tags=management")
    admin("declare", "permission", "vhost=adm", "user=au", "configure=.*", "write=.*", "read=.*")
    admin("declare", "permission", "vhost=adm", "user=guest", "configure=.*", "write=.*", "read=.*")
    admin("--vhost=adm", "declare", "exchange", "name=ax", "type=fanout")
    admin("--vhost=adm", "declare", "queue", "name=aq", "durable=true")
    admin("--vhost=adm", "declare", "binding", "source=ax", "destination=aq")
    admin("--vhost=adm", "publish", "exchange=ax", "routing_key=any", "payload=hello-admin")
    got = json.loads(admin("-f", "raw_json", "--vhost=adm", "get", "queue=aq", "ackmode=ack_requeue_true"))
    assert got[0]["payload"] == "hello-admin"
    queues = json.loads(admin("-f", "raw_json", "--vhost=adm", "list", "queues"))
    assert [(q["name"], q["messages"]) for q in queues] == [("aq", 1)]
    assert "aq" in admin("--vhost=adm", "list", "queues", "name", "messages")
    assert [u["name"] for u in json.loads(admin("-f", "raw_json", "list", "users"))] == ["alice", "au", "guest"]
    assert "adm" in admin("list", "vhosts")
    assert len(json.loads(admin("-f", "raw_json", "--vhost=adm", "list", "bindings"))) == 2
    admin("--vhost=adm", "purge", "queue", "name=aq")
    assert json.loads(admin("-f", "raw_json", "--vhost=adm", "list", "queues"))[0]["messages"] == 0
    # The user it made logs in over AMQP.
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port, "adm",
                                                          pika.PlainCredentials("au", "apw")))
    c.close()
    admin("--vhost=adm", "delete", "queue", "name=aq")
    admin("delete", "user", "name=au")
    admin("delete", "vhost", "name=adm")
    assert "adm" not in [v["name"] for v in json.loads(admin("-f", "raw_json", "list", "vhosts"))]
