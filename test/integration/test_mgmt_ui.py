"""The management web UI in a real browser: Debian's chromium, headless at 1280x800, driven
over the DevTools protocol (python3-websocket). Logs in, declares a queue, publishes a
message and gets it back through the pages' forms, checks what the API then holds, and
keeps a screenshot of every page in the test's tmp dir."""

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from brokers import target
from helpers import wait_until
from test_mgmt_access import call

pytestmark = [
    pytest.mark.skipif(target() != "mqnode", reason="mqnode's management module"),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed"),
]
websocket = pytest.importorskip("websocket", reason="python3-websocket is not installed")

PAGES = ["overview", "connections", "channels", "exchanges", "queues", "admin", "appliance"]


class Browser:
    """One headless chromium tab, spoken to over the DevTools protocol."""

    def __init__(self, profile):
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", "--remote-allow-origins=*", "--user-data-dir=" + profile,
             "--window-size=1280,800", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = os.path.join(profile, "DevToolsActivePort")
        wait_until(lambda: os.path.exists(port_file) and open(port_file).read().strip(), 30, 0.1,
                   "chromium's DevTools port")
        port = int(open(port_file).read().split()[0])
        tabs = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10))
        page = [t for t in tabs if t["type"] == "page"][0]
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=20)
        self.next_id = 0
        self.send("Emulation.setDeviceMetricsOverride", width=1280, height=800, deviceScaleFactor=1, mobile=False)

    def send(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        for _ in range(10000):  # events in between are skipped
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError("%s: %s" % (method, msg["error"]))
                return msg["result"]
        raise AssertionError("no answer to " + method)

    def js(self, expr):
        r = self.send("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError("%s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def wait_js(self, expr, what, timeout=15):
        return wait_until(lambda: self.js(expr), timeout, 0.1, what)

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


@pytest.fixture
def browser(tmp_path):
    b = Browser(str(tmp_path / "profile"))
    yield b
    b.close()


def test_log_in_declare_publish_get_and_every_page(broker_factory, browser, tmp_path):
    node = broker_factory(management=True)
    base = "http://127.0.0.1:%d/" % node.http_port
    shots = tmp_path / "screenshots"
    shots.mkdir()
    browser.send("Page.navigate", url=base)
    browser.wait_js("!!document.querySelector('#login') && !document.querySelector('#login').hidden", "the login form")

    # A wrong password is refused on the form; the right one opens the overview.
    submit_login = ("(() => { const f = document.querySelector('#login'); f.username.value = 'guest';"
                    " f.password.value = %s; f.requestSubmit(); return true; })()")
    browser.js(submit_login % json.dumps("wrong"))
    browser.wait_js("document.querySelector('#login-error').textContent", "the login error")
    assert browser.js("document.querySelector('#login-error').textContent") == "Login failed"
    browser.screenshot(str(shots / "login.png"))
    browser.js(submit_login % json.dumps("guest"))
    browser.wait_js("document.querySelector('#page h1') && document.querySelector('#page h1').textContent === 'Overview'",
                    "the overview page")
    assert browser.js("document.querySelector('#user').textContent").startswith("User guest")

    # Declare a queue with the Queues page's form.
    browser.js("location.hash = '#/queues'")
    browser.wait_js("!!document.querySelector('#add-queue')", "the queues page")
    browser.js("(() => { const f = document.querySelector('#add-queue'); f.name.value = 'ui-q';"
               " f.durable.value = 'false'; f.requestSubmit(); return true; })()")
    browser.wait_js("[...document.querySelectorAll('#page td a')].some((a) => a.textContent === 'ui-q')",
                    "ui-q in the queue list")
    status, q = call(node, "GET", "/api/queues/%2F/ui-q")
    assert status == 200 and q["durable"] is False

    # Publish on the queue's page, see it counted, then get it back.
    browser.js("location.hash = '#/queues/%2F/ui-q'")
    browser.wait_js("!!document.querySelector('#publish')", "the queue's page")
    browser.js("(() => { const f = document.querySelector('#publish'); f.payload.value = 'hello from the ui';"
               " f.requestSubmit(); return true; })()")
    wait_until(lambda: call(node, "GET", "/api/queues/%2F/ui-q")[1]["messages"] == 1, 10, 0.1,
               "the published message in ui-q")
    browser.wait_js("document.querySelector('#status').textContent === 'Publish: done'", "the publish to be done")
    browser.js("(() => { const f = document.querySelector('#get'); f.ackmode.value = 'ack_requeue_true';"
               " f.requestSubmit(); return true; })()")
    payload = browser.wait_js("document.querySelector('#get-result .payload') &&"
                              " document.querySelector('#get-result .payload').textContent", "the message got back")
    assert payload == "hello from the ui"
    browser.screenshot(str(shots / "queue.png"))
    # Requeued: still there, as the list shows.
    assert call(node, "GET", "/api/queues/%2F/ui-q")[1]["messages"] == 1
    browser.js("location.hash = '#/queues'")
    browser.wait_js("[...document.querySelectorAll('#page tr')].some((tr) => tr.children.length > 7 &&"
                    " tr.children[1].textContent === 'ui-q' && tr.children[7].textContent === '1')",
                    "ui-q with 1 message in the list")

    # Every page renders without an error at 1280x800, with a screenshot kept.
    for page in PAGES:
        browser.js("location.hash = '#/%s'" % page)
        browser.wait_js("document.querySelector('#page h1') && document.querySelector('#page h1').textContent"
                        " .toLowerCase() === %s" % json.dumps(page), "the %s page" % page)
        time.sleep(0.3)  # the charts and tables finish drawing
        assert not browser.js("document.querySelector('#page .error') && document.querySelector('#page .error').textContent")
        assert browser.js("document.documentElement.scrollWidth") <= 1280, page
        browser.screenshot(str(shots / ("%s.png" % page)))
    assert sorted(os.listdir(shots)) == sorted(["login.png", "queue.png"] + ["%s.png" % p for p in PAGES])
    print("screenshots in", shots)


def test_the_ui_is_served_from_the_binary_without_login(broker_factory):
    node = broker_factory(management=True)
    base = "http://127.0.0.1:%d" % node.http_port
    for path, ctype, marker in [("/", "text/html", b'<script src="/ui/app.js">'),
                                ("/ui/app.js", "text/javascript", b"async function api("),
                                ("/ui/style.css", "text/css", b"body")]:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith(ctype)
            assert marker in r.read()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/ui/nope.js", timeout=10)
    assert e.value.code == 404
