"""Definitions export and import over the management API and with `mqnode ctl`
(export → fresh node → import → export equal; a bad file changes nothing), and
rabbitmqctl's user, vhost, permission and list verbs with their texts and exit codes."""

import json
import os

import pika
import pytest

from brokers import target
from test_mgmt_access import call

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="mqnode's management module")


def populate(b):
    assert call(b, "PUT", "/api/vhosts/prod")[0] == 201
    assert call(b, "PUT", "/api/users/app", {"password": "apppw", "tags": "monitoring"})[0] == 201
    assert call(b, "PUT", "/api/permissions/prod/app", {"configure": "^app", "write": ".*", "read": ".*"})[0] == 201
    assert call(b, "PUT", "/api/policies/prod/ttl", {"pattern": "^app", "definition": {"message-ttl": 5000},
                                                      "apply-to": "queues"})[0] == 201
    assert call(b, "PUT", "/api/exchanges/prod/app.x", {"type": "topic", "durable": True})[0] == 201
    assert call(b, "PUT", "/api/queues/prod/app.q", {"durable": True, "arguments": {"x-max-length": 10}})[0] == 201
    assert call(b, "POST", "/api/bindings/prod/e/app.x/q/app.q", {"routing_key": "a.#"})[0] == 201


def test_definitions_round_trip_through_a_fresh_node(broker_factory):
    a = broker_factory(management=True)
    populate(a)
    status, exported = call(a, "GET", "/api/definitions")
    assert status == 200
    assert exported["queues"] == [{"name": "app.q", "vhost": "prod", "durable": True, "auto_delete": False,
                                   "arguments": {"x-max-length": 10}}]
    assert exported["bindings"] == [{"source": "app.x", "vhost": "prod", "destination": "app.q",
                                     "destination_type": "queue", "routing_key": "a.#", "arguments": {}}]
    assert {"name": "prod"} in exported["vhosts"]
    app = [u for u in exported["users"] if u["name"] == "app"][0]
    assert app["tags"] == ["monitoring"] and app["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    b = broker_factory(management=True)
    assert call(b, "POST", "/api/definitions", exported)[0] == 204
    assert call(b, "GET", "/api/definitions")[1] == exported
    # The imported user logs in with its password (the hash came across).
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, "prod",
                                                          pika.PlainCredentials("app", "apppw")))
    c.channel().queue_declare("app.q", passive=True)
    c.close()
    # One vhost's definitions, into another vhost.
    status, prod = call(a, "GET", "/api/definitions/prod")
    assert status == 200 and "users" not in prod and "vhost" not in prod["queues"][0]
    assert call(b, "PUT", "/api/vhosts/staging")[0] == 201
    assert call(b, "POST", "/api/definitions/staging", prod)[0] == 204
    assert call(b, "GET", "/api/definitions/staging")[1] == prod


def test_a_bad_definitions_file_is_refused_whole(broker_factory):
    b = broker_factory(management=True)
    before = call(b, "GET", "/api/definitions")[1]
    bad = {"vhosts": [{"name": "new"}],
           "queues": [{"name": "ok.q", "vhost": "new", "durable": True, "auto_delete": False, "arguments": {}}],
           "bindings": [{"source": "missing.x", "vhost": "new", "destination": "ok.q", "destination_type": "queue",
                         "routing_key": "", "arguments": {}}]}
    assert call(b, "POST", "/api/definitions", bad) == (400, {
        "error": "bad_request",
        "reason": "/bindings/0/source: exchange 'missing.x' does not exist in vhost 'new' (nor in this file)"})
    status, body = call(b, "POST", "/api/definitions", {"queues": [], "colour": "red"})
    assert status == 400 and body["reason"].startswith("/colour: unknown key")
    status, body = call(b, "POST", "/api/definitions", "{not json")
    assert status == 400 and "not valid JSON" in body["reason"]
    assert call(b, "GET", "/api/definitions")[1] == before   # nothing of it was applied
    assert call(b, "GET", "/api/vhosts/new")[0] == 404


def ctl(b, *args, stdin=None):
    import subprocess
    p = subprocess.run([b.binary, "ctl", "--data-dir", b.data_dir] + list(args), input=stdin,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def test_ctl_users_vhosts_permissions_with_rabbitmqctls_texts(broker_factory):
    b = broker_factory()
    assert ctl(b, "add_user", "cu1", "pw1") == (0, 'Adding user "cu1" ...\nDone. Don\'t forget to grant the user '
               "permissions to some virtual hosts! See 'rabbitmqctl help set_permissions' to learn more.\n", "")
    assert ctl(b, "add_user", "cu1", "pw1") == (70, 'Adding user "cu1" ...\n', 'Error:\nUser "cu1" already exists\n')
    assert ctl(b, "add_user", "cu1")[0] == 64
    assert ctl(b, "change_password", "nobody", "x") == (67, 'Changing password for user "nobody" ...\n',
                                                       'Error:\nUser "nobody" does not exist\n')
    assert ctl(b, "set_user_tags", "cu1", "administrator", "monitoring") == \
        (0, 'Setting tags for user "cu1" to [administrator, monitoring] ...\n', "")
    rc, out, _ = ctl(b, "-q", "list_users")
    assert rc == 0 and out.splitlines()[0] == "user\ttags" and "cu1\t[administrator, monitoring]" in out.splitlines()
    assert ctl(b, "add_vhost", "cv1") == (0, 'Adding vhost "cv1" ...\n', "")
    assert ctl(b, "add_vhost", "cv1")[0] == 0
    assert "cv1" in ctl(b, "list_vhosts")[1].splitlines()
    assert ctl(b, "set_permissions", "-p", "cv1", "cu1", "^cu", ".*", ".*") == \
        (0, 'Setting permissions for user "cu1" in vhost "cv1" ...\n', "")
    assert ctl(b, "set_permissions", "-p", "nov", "cu1", ".*", ".*", ".*")[0:3:2] == \
        (69, "Error:\nVirtual host nov does not exist\n")
    assert ctl(b, "set_permissions", "-p", "cv1", "nobody", ".*", ".*", ".*")[0] == 67
    assert ctl(b, "-q", "list_permissions", "-p", "cv1") == (0, "user\tconfigure\twrite\tread\ncu1\t^cu\t.*\t.*\n", "")
    assert ctl(b, "-q", "list_user_permissions", "cu1") == (0, "vhost\tconfigure\twrite\tread\ncv1\t^cu\t.*\t.*\n", "")
    # The user and its permissions work over AMQP.
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, "cv1",
                                                          pika.PlainCredentials("cu1", "pw1")))
    c.close()
    assert ctl(b, "change_password", "cu1", "pw2")[0] == 0
    pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, "cv1",
                                                      pika.PlainCredentials("cu1", "pw2"))).close()
    assert ctl(b, "clear_permissions", "-p", "cv1", "cu1")[0] == 0
    assert ctl(b, "-q", "list_permissions", "-p", "cv1") == (0, "user\tconfigure\twrite\tread\n", "")
    assert ctl(b, "list_permissions", "-p", "nov")[0] == 65
    assert ctl(b, "delete_vhost", "cv1") == (0, 'Deleting vhost "cv1" ...\n', "")
    assert ctl(b, "delete_vhost", "cv1") == (65, 'Deleting vhost "cv1" ...\n', "Virtual host 'cv1' does not exist\n")
    assert ctl(b, "delete_user", "cu1")[0] == 0
    assert ctl(b, "delete_user", "cu1") == (67, 'Deleting user "cu1" ...\n', 'Error:\nUser "cu1" does not exist\n')


def test_ctl_lists_exports_and_imports(broker_factory, tmp_path):
    b = broker_factory()
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port))
    ch = c.channel()
    ch.queue_declare("lq", durable=True)
    ch.basic_publish("", "lq", b"x")
    ch.exchange_declare("lx", "fanout")
    ch.queue_bind("lq", "lx")
    rc, out, _ = ctl(b, "-q", "list_queues", "name", "messages", "durable")
    assert rc == 0 and out.splitlines() == ["name\tmessages\tdurable", "lq\t1\ttrue"]
    assert ctl(b, "list_queues", "bogus")[0] == 64
    rc, out, _ = ctl(b, "-q", "list_exchanges", "name", "type")
    assert rc == 0 and "lx\tfanout" in out.splitlines() and "amq.direct\tdirect" in out.splitlines()
    rc, out, _ = ctl(b, "-q", "list_bindings")
    assert rc == 0 and "lx\texchange\tlq\tqueue\tlq\t[]" in out.splitlines()  # pika binds with the queue name
    assert "\texchange\tlq\tqueue\tlq\t[]" in out.splitlines()
    rc, out, _ = ctl(b, "-q", "list_connections", "user", "vhost", "channels")
    assert rc == 0 and out.splitlines() == ["user\tvhost\tchannels", "guest\t/\t1"]
    c.close()
    path = str(tmp_path / "defs.json")
    assert ctl(b, "export_definitions", path) == (0, 'Exporting definitions in JSON to a file at "%s" ...\n' % path, "")
    with open(path) as f:
        defs = json.load(f)
    assert [q["name"] for q in defs["queues"]] == ["lq"]
    fresh = broker_factory()
    assert ctl(fresh, "import_definitions", path)[0] == 0
    rc, out, _ = ctl(fresh, "export_definitions", "-")
    assert rc == 0 and {k: v for k, v in json.loads(out).items() if k != "product_version"} == \
        {k: v for k, v in defs.items() if k != "product_version"}
    bad = str(tmp_path / "bad.json")
    with open(bad, "w") as f:
        f.write('{"queues": [{"name": "q", "vhost": "nov"}]}')
    rc, _, err = ctl(fresh, "import_definitions", bad)
    assert rc == 65 and "vhost 'nov' does not exist" in err
    assert ctl(fresh, "import_definitions", str(tmp_path / "none.json"))[0] == 64
    rc, out, _ = ctl(fresh, "hash_password", "secret")
    assert rc == 0 and len(out.strip()) == 48


# Written by RabbitMQ 3.10.8's `rabbitmqctl export_definitions` (trimmed): user "u1" was
# made there with the password "x", so its hash is RabbitMQ's own.
RABBITMQ_EXPORT = {
    "bindings": [{"arguments": {}, "destination": "hq", "destination_type": "queue", "routing_key": "k~1",
                  "source": "hx", "vhost": "/"}],
    "exchanges": [{"arguments": {}, "auto_delete": False, "durable": True, "name": "hx", "type": "topic",
                   "vhost": "/"}],
    "global_parameters": [], "parameters": [],
    "permissions": [{"configure": ".*", "read": ".*", "user": "u1", "vhost": "imp", "write": ".*"}],
    "policies": [],
    "queues": [{"arguments": {"x-max-length": 5}, "auto_delete": False, "durable": True, "name": "hq",
                "type": "classic", "vhost": "/"},
               {"arguments": {}, "auto_delete": False, "durable": True, "name": "pq", "type": "classic",
                "vhost": "imp"}],
    "rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8", "topic_permissions": [],
    "users": [{"hashing_algorithm": "rabbit_password_hashing_sha256", "limits": {}, "name": "u1",
               "password_hash": "iJsU+9BqtQATWq7dkTqF+kcTTYePoU7HNE7NwTRwU7G4ZHhY", "tags": ["monitoring"]}],
    "vhosts": [{"limits": [], "metadata": {"description": "", "tags": []}, "name": "imp"},
               {"limits": [], "metadata": {"description": "", "tags": []}, "name": "/"}],
}


def test_a_rabbitmq_export_imports_and_its_users_log_in(broker_factory, tmp_path):
    b = broker_factory()
    path = str(tmp_path / "rabbit.json")
    with open(path, "w") as f:
        json.dump(RABBITMQ_EXPORT, f)
    assert ctl(b, "import_definitions", path)[0] == 0
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, "imp", pika.PlainCredentials("u1", "x")))
    assert c.channel().queue_declare("pq", passive=True).method.message_count == 0
    c.close()
    rc, out, _ = ctl(b, "export_definitions", "-")
    mine = json.loads(out)
    assert mine["queues"] == [{k: v for k, v in q.items() if k != "type"} for q in RABBITMQ_EXPORT["queues"]]
    assert mine["bindings"] == RABBITMQ_EXPORT["bindings"]
    assert [u for u in mine["users"] if u["name"] == "u1"] == RABBITMQ_EXPORT["users"]


def test_ctl_queue_channel_consumer_and_connection_verbs(broker_factory):
    b = broker_factory()
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port))
    ch = c.channel()
    ch.queue_declare("pq")
    for _ in range(3):
        ch.basic_publish("", "pq", b"x")
    ch.queue_declare("cq")
    ch.basic_consume("cq", lambda *a: None, consumer_tag="tag-1")
    rc, out, _ = ctl(b, "-q", "list_consumers", "queue_name", "consumer_tag", "ack_required")
    assert rc == 0 and out.splitlines() == ["queue_name\tconsumer_tag\tack_required", "cq\ttag-1\ttrue"]
    rc, out, _ = ctl(b, "-q", "list_channels", "number", "user", "consumer_count")
    assert rc == 0 and out.splitlines() == ["number\tuser\tconsumer_count", "1\tguest\t1"]
    assert ctl(b, "delete_queue", "--if-empty", "pq")[0] != 0
    assert ctl(b, "purge_queue", "pq") == (0, "Purging queue 'pq' in vhost '/' ...\n", "")
    assert ch.queue_declare("pq", passive=True).method.message_count == 0
    assert ctl(b, "purge_queue", "nope") == (69, "Purging queue 'nope' in vhost '/' ...\n", "Error:\nnot_found\n")
    assert ctl(b, "delete_queue", "pq") == \
        (0, "Deleting queue 'pq' on vhost '/' ...\nQueue was successfully deleted with 0 ready messages\n", "")
    assert ctl(b, "delete_queue", "pq")[0:3:2] == (64, "Error:\nQueue not found\n")
    rc, out, _ = ctl(b, "-q", "list_connections", "--no-table-headers", "name")
    assert rc == 0 and len(out.splitlines()) == 1
    name = out.strip()
    assert ctl(b, "close_connection", name, "go away")[0] == 0
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        for _ in range(50):
            c.process_data_events(0.1)
    assert e.value.reply_code == 320 and "go away" in e.value.reply_text
