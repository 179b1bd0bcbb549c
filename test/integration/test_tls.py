"""AMQPS (/broker/listeners[].tls): certificates made here with the openssl CLI (a CA, a
server certificate, client certificates, a rogue CA and an expired certificate); pika over
TLS, openssl s_client, rabbitmq-c's amqp-tools with --ssl, the EXTERNAL mechanism (user =
client certificate's CN), the minimum protocol version, and certificates read again on
SIGHUP while connections already up keep working. mqnode only: the fixtures write
mqnode's config."""

import os
import signal
import socket
import ssl
import subprocess
import warnings

import pika
import pika.exceptions as pex
import pytest

from brokers import free_port, port_open, target
from helpers import wait_until

pytestmark = pytest.mark.skipif(target() != "mqnode", reason="configures mqnode's TLS listeners")

CA_CNF = """[ca]
default_ca = mq
[mq]
dir = .
database = db/index.txt
new_certs_dir = db
serial = db/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = copy
[any]
commonName = supplied
"""


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (args, p.stderr)
    return p.stdout


class Pki:
    """A throw-away PKI in <dir>: CAs and certificates signed by them (EC P-256, fast)."""

    def __init__(self, d):
        self.dir = str(d)
        os.makedirs(os.path.join(self.dir, "db"), exist_ok=True)
        with open(os.path.join(self.dir, "ca.cnf"), "w") as f:
            f.write(CA_CNF)
        open(os.path.join(self.dir, "db", "index.txt"), "w").close()
        with open(os.path.join(self.dir, "db", "serial"), "w") as f:
            f.write("01\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def ca(self, name, days=2):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", name + ".key", "-out", name + ".pem", "-days", str(days), "-subj", "/CN=" + name,
                cwd=self.dir)
        return self.path(name + ".pem")

    def cert(self, name, cn, ca="ca", start=None, end=None, server=False):
        """<name>.pem / <name>.key signed by <ca>; <start>/<end> as YYYYMMDDHHMMSSZ."""
        args = ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn]
        if server:
            args += ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        openssl(*args, cwd=self.dir)
        sign = ["ca", "-batch", "-config", "ca.cnf", "-cert", ca + ".pem", "-keyfile", ca + ".key",
                "-in", name + ".csr", "-out", name + ".pem", "-notext"]
        sign += ["-startdate", start] if start else []
        sign += ["-enddate", end] if end else ["-days", "2"]
        openssl(*sign, cwd=self.dir)
        return self.path(name + ".pem"), self.path(name + ".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.ca("ca")
    p.ca("rogue")
    p.cert("server", "localhost", server=True)
    p.cert("server2", "mq-reloaded", server=True)
    p.cert("guest", "guest")              # EXTERNAL: an existing user
    p.cert("nobody", "nosuchuser")        # EXTERNAL: no such user
    p.cert("rogue-guest", "guest", ca="rogue")
    p.cert("expired", "guest", start="20200101000000Z", end="20200102000000Z")
    return p


def tls_opts(pki, **kw):
    o = {"certfile": pki.path("server.pem"), "keyfile": pki.path("server.key"),
         "cacertfile": pki.path("ca.pem")}
    o.update(kw)
    return o


def start_tls(broker_factory, tls, **overrides):
    port, tls_port = free_port(), free_port()
    b = broker_factory(port=port, listeners=[{"bind": "127.0.0.1:%d" % port},
                                             {"bind": "127.0.0.1:%d" % tls_port, "tls": tls}],
                       **overrides)
    b.tls_port = tls_port
    # The fixture waits for the plain port; the TLS one is bound right after it.
    wait_until(lambda: port_open("127.0.0.1", tls_port), what="the TLS listener")
    return b


def client_context(pki, cert=None, ca="ca.pem"):
    ctx = ssl.create_default_context(cafile=pki.path(ca))
    if cert:
        ctx.load_cert_chain(pki.path(cert + ".pem"), pki.path(cert + ".key"))
    return ctx


def tls_params(b, pki, cert=None, external=False, **kw):
    creds = pika.credentials.ExternalCredentials() if external else pika.PlainCredentials("guest", "guest")
    return pika.ConnectionParameters(
        host="127.0.0.1", port=b.tls_port, credentials=creds, connection_attempts=1, socket_timeout=10,
        stack_timeout=15, ssl_options=pika.SSLOptions(client_context(pki, cert), "localhost"), **kw)


def round_trip(conn, queue, body):
    ch = conn.channel()
    ch.queue_declare(queue, auto_delete=True)
    ch.basic_publish("", queue, body)
    for _ in range(100):
        method, _props, got = ch.basic_get(queue, auto_ack=True)
        if method:
            return got
        conn.sleep(0.05)
    return None


def server_cn(port, pki):
    """The CN of the certificate the listener presents now (a fresh handshake)."""
    ctx = client_context(pki)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            subject = dict(x[0] for x in t.getpeercert()["subject"])
            return subject["commonName"]


def test_pika_publish_consume_over_tls_beside_plain(broker_factory, pki):
    b = start_tls(broker_factory, tls_opts(pki))
    conn = pika.BlockingConnection(tls_params(b, pki))
    try:
        ch = conn.channel()
        ch.queue_declare("tls.q")
        for i in range(50):
            ch.basic_publish("", "tls.q", b"m%d" % i)
        got = []

        def on_message(c, m, props, body):
            got.append(body)
            c.basic_ack(m.delivery_tag)
            if len(got) == 50:
                c.stop_consuming()
        ch.basic_consume("tls.q", on_message)
        conn.call_later(20, ch.stop_consuming)
        ch.start_consuming()
        assert got == [b"m%d" % i for i in range(50)]
        # A large message crosses many TLS records.
        big = os.urandom(1 << 20)
        assert round_trip(conn, "tls.big", big) == big
    finally:
        conn.close()
    # The plain listener of the same node is unaffected, and does not speak TLS.
    plain = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port, connection_attempts=1))
    assert round_trip(plain, "plain.q", b"plain") == b"plain"
    plain.close()


def test_openssl_s_client_sees_the_certificate_and_connection_start(broker_factory, pki):
    b = start_tls(broker_factory, tls_opts(pki), handshake_timeout_ms=2000)
    # s_client sends the AMQP header through TLS; the node answers connection.start, then
    # closes the unfinished handshake after handshake_timeout_ms (which ends s_client).
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % b.tls_port, "-CAfile", pki.path("ca.pem"),
                        "-verify_return_error", "-servername", "localhost", "-ign_eof"],
                       input=b"AMQP\x00\x00\x09\x01", capture_output=True, timeout=30)
    out = p.stdout.decode("latin-1")
    assert "Verify return code: 0 (ok)" in out, out
    assert "subject=CN = localhost" in out, out
    assert "PLAIN AMQPLAIN" in out and "RabbitMQ" in out, out
    assert "Protocol  : TLSv1.3" in out or "TLSv1.3" in out, out


def test_amqp_tools_with_ssl(broker_factory, pki):
    b = start_tls(broker_factory, tls_opts(pki))
    conn_args = ["--url", "amqps://guest:guest@localhost:%d" % b.tls_port, "--ssl", "--cacert", pki.path("ca.pem")]
    ch = pika.BlockingConnection(tls_params(b, pki)).channel()
    ch.queue_declare("tools.q")
    p = subprocess.run(["amqp-publish", *conn_args, "-r", "tools.q", "-b", "from rabbitmq-c"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["amqp-consume", *conn_args, "-q", "tools.q", "-c", "1", "cat"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "from rabbitmq-c"
    # With a CA that did not sign the server's certificate, rabbitmq-c refuses the server.
    bad = list(conn_args)
    bad[bad.index("--cacert") + 1] = pki.path("rogue.pem")
    p = subprocess.run(["amqp-publish", *bad, "-r", "tools.q", "-b", "x"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0
    ch.connection.close()


def test_external_login_from_the_client_certificate(broker_factory, pki):
    b = start_tls(broker_factory, tls_opts(pki, verify="verify_peer", fail_if_no_peer_cert=True))
    conn = pika.BlockingConnection(tls_params(b, pki, cert="guest", external=True))
    assert round_trip(conn, "ext.q", b"by certificate") == b"by certificate"
    conn.close()
    # A verified certificate whose CN is no user: refused with 403.
    with pytest.raises(pex.ProbableAuthenticationError) as e:
        pika.BlockingConnection(tls_params(b, pki, cert="nobody", external=True))
    assert "ACCESS_REFUSED" in str(e.value)
    # PLAIN still works beside EXTERNAL with a client certificate.
    conn = pika.BlockingConnection(tls_params(b, pki, cert="nobody"))
    assert round_trip(conn, "plain.over.tls", b"p") == b"p"
    conn.close()


@pytest.mark.parametrize("cert", ["rogue-guest", "expired", None])
def test_bad_or_missing_client_certificate_is_refused_in_the_handshake(broker_factory, pki, cert):
    b = start_tls(broker_factory, tls_opts(pki, verify="verify_peer", fail_if_no_peer_cert=True))
    ctx = client_context(pki, cert)
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=10) as s:
        # TLS 1.3 reports a refused client certificate on the first read after the handshake.
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                t.sendall(b"AMQP\x00\x00\x09\x01")
                data = t.recv(100)
                assert data, "the server closed without an alert"
    # The good certificate on the same listener gets through.
    conn = pika.BlockingConnection(tls_params(b, pki, cert="guest", external=True))
    conn.close()


def test_external_is_offered_only_with_a_verified_certificate(broker_factory, pki):
    # verify_peer without fail_if_no_peer_cert: a client with no certificate may log in
    # with PLAIN, and is not offered EXTERNAL.
    b = start_tls(broker_factory, tls_opts(pki, verify="verify_peer"))
    conn = pika.BlockingConnection(tls_params(b, pki))
    conn.close()
    with pytest.raises(pex.AMQPConnectionError):
        pika.BlockingConnection(tls_params(b, pki, external=True))
    # verify_none: no certificate is asked for, so EXTERNAL is never offered.
    b2 = start_tls(broker_factory, tls_opts(pki))
    with pytest.raises(pex.AMQPConnectionError):
        pika.BlockingConnection(tls_params(b2, pki, cert="guest", external=True))


def tls11_handshake(port, pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.path("ca.pem"))
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.version()


def test_minimum_version_tls12_by_default(broker_factory, pki):
    # Control: the same client gets TLS 1.1 from a listener that allows it, so the refusal
    # below is the server's doing.
    old = start_tls(broker_factory, tls_opts(pki, versions=["tlsv1.2", "tlsv1.1"]))
    assert tls11_handshake(old.tls_port, pki) == "TLSv1.1"
    b = start_tls(broker_factory, tls_opts(pki))
    with pytest.raises(ssl.SSLError):
        tls11_handshake(b.tls_port, pki)
    # TLS 1.2 only: a 1.3 client is refused too, a 1.2 one gets through.
    only12 = start_tls(broker_factory, tls_opts(pki, versions=["tlsv1.2"]))
    ctx = client_context(pki)
    with socket.create_connection(("127.0.0.1", only12.tls_port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.version() == "TLSv1.2"


def test_sighup_reloads_certificates_without_dropping_connections(broker_factory, pki, tmp_path):
    cert, key = str(tmp_path / "live.pem"), str(tmp_path / "live.key")
    for src, dst in ((pki.path("server.pem"), cert), (pki.path("server.key"), key)):
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
    b = start_tls(broker_factory, tls_opts(pki, certfile=cert, keyfile=key))
    assert server_cn(b.tls_port, pki) == "localhost"
    old = pika.BlockingConnection(tls_params(b, pki))
    assert round_trip(old, "before.reload", b"1") == b"1"
    # New files at the same paths (an operator renewing the certificate), then SIGHUP.
    for src, dst in ((pki.path("server2.pem"), cert), (pki.path("server2.key"), key)):
        with open(src, "rb") as f, open(dst + ".new", "wb") as g:
            g.write(f.read())
        os.replace(dst + ".new", dst)
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: server_cn(b.tls_port, pki) == "mq-reloaded", what="the new certificate served")
    # The connection made with the old certificate keeps working.
    assert round_trip(old, "after.reload", b"2") == b"2"
    old.close()
    # A bad file on reload changes nothing: the current certificate stays.
    with open(key, "w") as f:
        f.write("not a key\n")
    b.proc.send_signal(signal.SIGHUP)
    new = pika.BlockingConnection(tls_params(b, pki))
    assert round_trip(new, "after.bad.reload", b"3") == b"3"
    assert server_cn(b.tls_port, pki) == "mq-reloaded"
    new.close()
    assert b.alive()


@pytest.mark.parametrize("tls,path", [
    ({"certfile": "/nonexistent/cert.pem", "keyfile": "k"}, "/broker/listeners/0/tls/certfile: cannot load"),
    ({"certfile": "@server.pem", "keyfile": "@guest.key"}, "/broker/listeners/0/tls/keyfile: the key"),
    ({"certfile": "@server.pem", "keyfile": "@server.key", "verify": "yes"},
     '/broker/listeners/0/tls/verify: expected "verify_peer" or "verify_none"'),
    ({"certfile": "@server.pem", "keyfile": "@server.key", "verify": "verify_peer"},
     "/broker/listeners/0/tls/cacertfile: expected a CA bundle"),
    ({"certfile": "@server.pem", "keyfile": "@server.key", "versions": ["tlsv1.4"]},
     '/broker/listeners/0/tls/versions/0: expected one of'),
    ({"certfile": "@server.pem", "keyfile": "@server.key", "ciphers": "NO-SUCH-CIPHER"},
     "/broker/listeners/0/tls/ciphers: no usable cipher"),
])
def test_config_errors_name_the_json_path(pki, tmp_path, tls, path):
    import json
    tls = {k: (pki.path(v[1:]) if isinstance(v, str) and v.startswith("@") else v) for k, v in tls.items()}
    cfg = tmp_path / "mqnode.json"
    cfg.write_text(json.dumps({"broker": {"listeners": [{"bind": "127.0.0.1:0", "tls": tls}]}}))
    p = subprocess.run([os.environ["MQNODE_BIN"], "--config", str(cfg), "--data-dir", str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert path in p.stderr, p.stderr


def test_https_management_api_and_reload(pki, tmp_path):
    import shutil
    import tempfile
    import urllib.error
    import urllib.request
    from brokers import make_broker

    cert, key = str(tmp_path / "mgmt.pem"), str(tmp_path / "mgmt.key")
    shutil.copy(pki.path("server.pem"), cert)
    shutil.copy(pki.path("server.key"), key)
    workdir = tempfile.mkdtemp(prefix="mqtest-https-")
    b = make_broker(workdir)
    https_port = free_port()
    b.sections["management"] = {"bind": "127.0.0.1:%d" % https_port,
                                "tls": {"certfile": cert, "keyfile": key}}
    b.start()
    try:
        url = "https://localhost:%d/api/overview" % https_port
        req = urllib.request.Request(url, headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})
        with urllib.request.urlopen(req, context=client_context(pki), timeout=10) as r:
            assert r.status == 200
        # Plain HTTP on the HTTPS port gets no HTTP answer.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen("http://127.0.0.1:%d/api/overview" % https_port, timeout=10).read()
        # SIGHUP: new connections get the renewed certificate.
        shutil.copy(pki.path("server2.pem"), cert + ".new")
        shutil.copy(pki.path("server2.key"), key + ".new")
        os.replace(key + ".new", key)
        os.replace(cert + ".new", cert)
        b.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: server_cn(https_port, pki) == "mq-reloaded", what="the renewed management certificate")
        assert b.alive()
    finally:
        b.stop()
        problems = b.problems()
        if not problems:
            shutil.rmtree(workdir, ignore_errors=True)
    assert not problems, problems


def test_kombu_over_tls(broker_factory, pki):
    import kombu
    b = start_tls(broker_factory, tls_opts(pki))
    opts = {"ca_certs": pki.path("ca.pem"), "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "localhost"}
    with kombu.Connection("amqp://guest:guest@127.0.0.1:%d//" % b.tls_port, ssl=opts, connect_timeout=10) as conn:
        q = conn.SimpleQueue("kombu.tls")
        q.put({"over": "tls"})
        msg = q.get(timeout=10)
        assert msg.payload == {"over": "tls"}
        msg.ack()
        q.close()
    # Without the CA the client refuses the node's certificate.
    bad = dict(opts, ca_certs=pki.path("rogue.pem"))
    with pytest.raises(Exception) as e:
        with kombu.Connection("amqp://guest:guest@127.0.0.1:%d//" % b.tls_port, ssl=bad, connect_timeout=10) as conn:
            conn.connect()
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value) or isinstance(e.value, ssl.SSLError)


def test_https_lb_stats_page_and_reload(pki, tmp_path):
    import base64
    import shutil
    import sys
    import urllib.request
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lb"))
    from lbutil import LbProcess

    cert, key = str(tmp_path / "stats.pem"), str(tmp_path / "stats.key")
    shutil.copy(pki.path("server.pem"), cert)
    shutil.copy(pki.path("server.key"), key)
    lb = LbProcess({"frontends": [{"name": "fe", "bind": "127.0.0.1:%d" % free_port(), "backend": "be"}],
                    "backends": [{"name": "be", "servers": [{"name": "s1", "address": "127.0.0.1:%d" % free_port()}]}],
                    "stats": {"tls": {"certfile": cert, "keyfile": key}}})
    lb.start()
    try:
        req = urllib.request.Request("https://localhost:%d/haproxy;csv" % lb.stats_port)
        req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:s3cret").decode())
        with urllib.request.urlopen(req, context=client_context(pki), timeout=10) as r:
            assert r.status == 200
            assert "fe,FRONTEND" in r.read().decode()
        assert server_cn(lb.stats_port, pki) == "localhost"
        shutil.copy(pki.path("server2.pem"), cert + ".new")
        shutil.copy(pki.path("server2.key"), key + ".new")
        os.replace(key + ".new", key)
        os.replace(cert + ".new", cert)
        lb.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: server_cn(lb.stats_port, pki) == "mq-reloaded", what="the renewed stats certificate")
    finally:
        problems = lb.stop()
    assert not problems, problems


def test_certificate_expiration_health_check_and_start_warning(broker_factory, pki):
    import datetime
    import json
    import urllib.error
    import urllib.request
    # A CA good for ten years and a server certificate it signed that ends in three and a
    # half days: the node's whole days left are 3 however long it takes to start (with
    # exactly three days they were 3 or 2, by whether it started within the same second).
    pki.ca("longca", days=3650)
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3, hours=12)
    pki.cert("soon", "localhost", ca="longca", server=True, end=end.strftime("%Y%m%d%H%M%SZ"))
    port, soon_port, expired_port = free_port(), free_port(), free_port()
    soon = {"certfile": pki.path("soon.pem"), "keyfile": pki.path("soon.key"), "cacertfile": pki.path("longca.pem")}
    expired = {"certfile": pki.path("expired.pem"), "keyfile": pki.path("expired.key")}
    b = broker_factory(management=True, port=port,
                       listeners=[{"bind": "127.0.0.1:%d" % port}, {"bind": "127.0.0.1:%d" % soon_port, "tls": soon},
                                  {"bind": "127.0.0.1:%d" % expired_port, "tls": expired}])

    def check(within, unit):
        req = urllib.request.Request("http://127.0.0.1:%d/api/health/checks/certificate-expiration/%s/%s"
                                     % (b.http_port, within, unit),
                                     headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    # Within a day: only the listener whose certificate expired in 2020.
    status, body = check(1, "days")
    assert status == 503 and body["status"] == "failed" and body["reason"] == "Certificates expiring", body
    assert [(l["protocol"], l["port"]) for l in body["expired"]] == [("amqp/ssl", expired_port)], body
    gone = body["expired"][0]
    assert gone["interface"] == "127.0.0.1" and gone["certfile"] == expired["certfile"] and gone["cacertfile"] == ""
    assert gone["certfile_expires_on"] == ["2020-01-02 0:00:00"] and gone["cacertfile_expires_on"] == [], gone
    # Within a week (unit case-insensitive, as RabbitMQ's): the three-day certificate too, not its CA.
    status, body = check(1, "Weeks")
    assert status == 503, body
    listed = {l["port"]: l for l in body["expired"]}
    assert set(listed) == {soon_port, expired_port}, body
    assert listed[soon_port]["certfile_expires_on"] == [end.strftime("%Y-%m-%d ") + "%d:%s" % (end.hour, end.strftime("%M:%S"))]
    assert listed[soon_port]["cacertfile_expires_on"] == []
    # Twenty years: the CA as well.
    status, body = check(20, "years")
    assert len({l["port"]: l for l in body["expired"]}[soon_port]["cacertfile_expires_on"]) == 1, body
    # Bad parameters: RabbitMQ's 400s.
    assert check("soon", "days") == (400, {"error": "bad_request", "reason": "Invalid expiration value."})
    assert check(1, "fortnights") == (400, {"error": "bad_request", "reason":
                                            "Time unit not recognised. Supported units: days, weeks, months, years."})
    # The node warned at start about both certificates.
    log = b.stderr_text() + open(b.stdout_path).read()
    assert "/broker/listeners/1/tls/certfile: a certificate of %s expires in 3 day(s)" % soon["certfile"] in log, log
    assert "/broker/listeners/2/tls/certfile: a certificate of %s expired" % expired["certfile"] in log, log


def test_certificate_expiration_is_ok_without_expiring_certificates(broker_factory, pki):
    import json
    import urllib.request
    b = broker_factory(management=True)  # no TLS listener at all
    req = urllib.request.Request("http://127.0.0.1:%d/api/health/checks/certificate-expiration/10/years" % b.http_port,
                                 headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert (r.status, json.load(r)) == (200, {"status": "ok"})
