"""Management API, users, vhosts and permissions (RabbitMQ 3.10's /api/users, /api/vhosts,
/api/permissions, /api/whoami): the shapes and status codes RabbitMQ answers, a user made
over HTTP logging in over AMQP with pika, permissions set over HTTP enforced on AMQP, and the
management tags' rights (a failed login and a missing right are both 401, as RabbitMQ 3.10)."""

import base64
import hashlib
import json
import os

import pika
import pytest

import brokers
from brokers import target
from test_mgmt import request

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="mqnode's management module")

ADMIN = ("guest", "guest")


@pytest.fixture
def node(broker_factory):
    users = brokers.DEFAULT_USERS + [{"name": "monitor", "password": "monpw", "tags": ["monitoring"]},
                                     {"name": "mgr", "password": "mgrpw", "tags": ["management"]},
                                     {"name": "pm", "password": "pmpw", "tags": ["policymaker"]}]
    perms = brokers.DEFAULT_PERMISSIONS + [
        {"user": "mgr", "vhost": "/", "configure": "^mgr\\.", "write": "^mgr\\.", "read": "^mgr\\."},
        {"user": "pm", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
    return broker_factory(management=True, users=users, permissions=perms)


def call(b, method, path, body=None, auth=ADMIN, headers=None):
    """(status, parsed JSON body or None)."""
    status, _, _, data = request(b, method, path, body, auth, headers)
    return status, (json.loads(data) if data else None)


def amqp_login(b, user, password, vhost="/"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", b.port, vhost, pika.PlainCredentials(user, password), connection_attempts=1))


def test_a_user_created_over_http_logs_in_over_amqp_with_its_permissions(node):
    assert call(node, "PUT", "/api/users/web", {"password": "s3cret", "tags": "management"})[0] == 201
    status, user = call(node, "GET", "/api/users/web")
    assert status == 200
    assert user["name"] == "web" and user["tags"] == ["management"] and user["limits"] == {}
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256" and len(user["password_hash"]) == 48
    # No permissions yet: the login is refused for the vhost (530 NOT_ALLOWED).
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        amqp_login(node, "web", "s3cret")
    assert [u["name"] for u in call(node, "GET", "/api/users/without-permissions")[1]] == ["monitor", "web"]
    assert call(node, "PUT", "/api/permissions/%2F/web",
                {"configure": "^web\\.", "write": "^(web\\.|amq\\.default)$", "read": "^web\\."})[0] == 201
    assert call(node, "PUT", "/api/permissions/%2F/web",
                {"configure": "^web\\.", "write": "^(web\\.|amq\\.default)", "read": "^web\\."})[0] == 204
    assert call(node, "GET", "/api/permissions/%2F/web")[1] == {
        "user": "web", "vhost": "/", "configure": "^web\\.", "write": "^(web\\.|amq\\.default)", "read": "^web\\."}
    assert call(node, "GET", "/api/users/web/permissions")[1] == [call(node, "GET", "/api/permissions/%2F/web")[1]]
    c = amqp_login(node, "web", "s3cret")
    ch = c.channel()
    ch.queue_declare("web.q")                       # configure ^web\. allows it
    ch.basic_publish("", "web.q", b"hi")
    assert ch.basic_get("web.q", auto_ack=True)[2] == b"hi"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("other.q")                 # and refuses this one
    assert e.value.reply_code == 403
    c.close()
    # A wrong password is refused over AMQP too; a changed password takes effect.
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        amqp_login(node, "web", "wrong")
    assert call(node, "PUT", "/api/users/web", {"password": "n3w", "tags": "management"})[0] == 204
    amqp_login(node, "web", "n3w").close()
    # Clearing the permission, then deleting the user.
    assert call(node, "DELETE", "/api/permissions/%2F/web")[0] == 204
    assert call(node, "DELETE", "/api/permissions/%2F/web")[0] == 404
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        amqp_login(node, "web", "n3w")
    assert call(node, "DELETE", "/api/users/web")[0] == 204
    assert call(node, "GET", "/api/users/web")[0] == 404
    assert call(node, "DELETE", "/api/users/web")[0] == 404


def test_a_password_hash_from_rabbitmq_logs_in(node):
    # RabbitMQ's rabbit_password_hashing_sha256: base64(salt ‖ sha256(salt ‖ password)).
    salt = os.urandom(4)
    h = base64.b64encode(salt + hashlib.sha256(salt + b"pw-from-rabbit").digest()).decode()
    assert call(node, "PUT", "/api/users/imported", {"password_hash": h, "tags": ["management"]})[0] == 201
    assert call(node, "GET", "/api/users/imported")[1]["password_hash"] == h
    assert call(node, "PUT", "/api/permissions/%2F/imported", {"configure": "", "write": "", "read": ""})[0] == 201
    amqp_login(node, "imported", "pw-from-rabbit").close()
    status, body = call(node, "PUT", "/api/users/bad", {"password_hash": "zzz"})
    assert status == 400 and body["error"] == "bad_request" and "password_hash" in body["reason"]
    status, body = call(node, "PUT", "/api/users/bad", {"password": "x", "hashing_algorithm": "rabbit_password_hashing_md5"})
    assert status == 400 and "hashing_algorithm" in body["reason"]
    assert call(node, "PUT", "/api/users/bad", "{not json")[1] == {"error": "bad_request",
                                                                  "reason": "the body is not valid JSON"}
    assert call(node, "GET", "/api/users/bad")[0] == 404


def test_vhosts_and_their_permissions(node):
    status, vhosts = call(node, "GET", "/api/vhosts")
    assert status == 200 and [v["name"] for v in vhosts] == ["/", "other"]
    assert {"name", "description", "tags", "tracing", "messages", "cluster_state"} <= set(vhosts[0])
    assert call(node, "PUT", "/api/vhosts/v1", {"description": "first"})[0] == 201
    assert call(node, "PUT", "/api/vhosts/v1")[0] == 204
    # As RabbitMQ's API: its creator gets full permissions on it.
    assert call(node, "GET", "/api/vhosts/v1/permissions")[1] == [
        {"user": "guest", "vhost": "v1", "configure": ".*", "write": ".*", "read": ".*"}]
    c = amqp_login(node, "guest", "guest", vhost="v1")
    c.channel().queue_declare("in.v1")
    assert call(node, "GET", "/api/queues/v1")[1][0]["name"] == "in.v1"
    # Deleting the vhost closes its connections (320) and takes its queues.
    assert call(node, "DELETE", "/api/vhosts/v1")[0] == 204
    with pytest.raises(pika.exceptions.ConnectionClosed):
        for _ in range(50):
            c.process_data_events(0.1)
    assert call(node, "GET", "/api/vhosts/v1")[0] == 404
    assert call(node, "DELETE", "/api/vhosts/v1")[0] == 404
    assert call(node, "PUT", "/api/permissions/nope/guest", {"configure": "", "write": "", "read": ""}) == \
        (400, {"error": "bad_request", "reason": "vhost_or_user_not_found"})
    assert call(node, "PUT", "/api/permissions/%2F/guest", {"configure": ".*"}) == \
        (400, {"error": "bad_request", "reason": "[{key_missing,write},{key_missing,read}]"})
    status, body = call(node, "PUT", "/api/permissions/%2F/alice", {"configure": "(", "write": "", "read": ""})
    assert status == 400 and "alice" in body["reason"]
    assert call(node, "GET", "/api/permissions/%2F/alice")[1]["configure"] == "^alice\\."   # unchanged


def test_bulk_delete_and_whoami(node):
    for u in ("b1", "b2"):
        assert call(node, "PUT", "/api/users/" + u, {"password": "x", "tags": ""})[0] == 201
    assert call(node, "POST", "/api/users/bulk-delete", {"users": ["b1", "b2"]})[0] == 204
    assert call(node, "GET", "/api/users/b1")[0] == 404 and call(node, "GET", "/api/users/b2")[0] == 404
    assert call(node, "PUT", "/api/users/b3", {"password": "x", "tags": ""})[0] == 201
    status, body = call(node, "POST", "/api/users/bulk-delete", {"users": ["b3", "ghost"]})
    assert status == 400 and "ghost" in body["reason"]
    assert call(node, "GET", "/api/users/b3")[0] == 404
    assert call(node, "GET", "/api/whoami") == (200, {"name": "guest", "tags": ["administrator"]})
    assert call(node, "GET", "/api/whoami", auth=("monitor", "monpw")) == (200, {"name": "monitor", "tags": ["monitoring"]})


def test_tags_give_rabbitmqs_rights(node):
    not_admin = {"error": "not_authorised", "reason": "Not administrator user"}
    # A failed login and a missing right are both 401, as RabbitMQ 3.10 answers them.
    assert call(node, "GET", "/api/whoami", auth=("guest", "wrong")) == (401, {"error": "not_authorized",
                                                                              "reason": "Login failed"})
    assert call(node, "GET", "/api/whoami", auth=("alice", "alicepw")) == (401, {"error": "not_authorised",
                                                                                "reason": "Not management user"})
    for who in (("monitor", "monpw"), ("mgr", "mgrpw"), ("pm", "pmpw")):
        assert call(node, "GET", "/api/users", auth=who) == (401, not_admin)
        assert call(node, "PUT", "/api/users/x", {"password": "x"}, auth=who) == (401, not_admin)
        assert call(node, "PUT", "/api/vhosts/x", auth=who) == (401, not_admin)
        assert call(node, "GET", "/api/definitions", auth=who) == (401, not_admin)
    assert call(node, "GET", "/api/users/x")[0] == 404   # nothing was made
    # management: sees only the vhosts it has permissions on, acts under its AMQP permissions.
    assert [v["name"] for v in call(node, "GET", "/api/vhosts", auth=("mgr", "mgrpw"))[1]] == ["/"]
    assert call(node, "GET", "/api/queues/other", auth=("mgr", "mgrpw")) == \
        (401, {"error": "not_authorised", "reason": "User not authorised to access virtual host"})
    assert call(node, "PUT", "/api/queues/%2F/mgr.q", {}, auth=("mgr", "mgrpw"))[0] == 201
    assert call(node, "PUT", "/api/queues/%2F/q", {}, auth=("mgr", "mgrpw")) == \
        (401, {"error": "not_authorised", "reason": "Access refused."})
    assert call(node, "GET", "/api/policies", auth=("mgr", "mgrpw")) == \
        (401, {"error": "not_authorised", "reason": "Not policymaker user"})
    # policymaker: policies in its vhosts.
    assert call(node, "PUT", "/api/policies/%2F/p", {"pattern": "^x", "definition": {"max-length": 1}},
                auth=("pm", "pmpw"))[0] == 201
    # monitoring: every vhost readable, but no writes where it has no permissions.
    assert [v["name"] for v in call(node, "GET", "/api/vhosts", auth=("monitor", "monpw"))[1]] == ["/", "other"]
    assert call(node, "GET", "/api/queues/other", auth=("monitor", "monpw"))[0] == 200
    assert call(node, "PUT", "/api/queues/other/m", {}, auth=("monitor", "monpw"))[0] == 401


def test_definitions_made_over_http_survive_kill_9(node):
    import signal
    assert call(node, "PUT", "/api/vhosts/kept")[0] == 201
    assert call(node, "PUT", "/api/users/kept", {"password": "keptpw", "tags": "management"})[0] == 201
    assert call(node, "PUT", "/api/permissions/kept/kept", {"configure": ".*", "write": ".*", "read": ".*"})[0] == 201
    assert call(node, "PUT", "/api/queues/kept/kq", {"durable": True})[0] == 201
    assert call(node, "PUT", "/api/users/gone", {"password": "x", "tags": ""})[0] == 201
    assert call(node, "DELETE", "/api/users/gone")[0] == 204
    node.stopped_by_us = True
    os.killpg(node.proc.pid, signal.SIGKILL)
    node.proc.wait(10)
    node.start()
    c = amqp_login(node, "kept", "keptpw", vhost="kept")
    c.channel().queue_declare("kq", passive=True)
    c.close()
    assert call(node, "GET", "/api/users/kept")[1]["tags"] == ["management"]
    assert call(node, "GET", "/api/users/gone")[0] == 404
