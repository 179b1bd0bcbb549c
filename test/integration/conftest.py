"""Fixtures for the mqnode integration suite.

Target selection: AMQP_TARGET=mqnode (default; needs MQNODE_BIN) or
AMQP_TARGET=rabbitmq (a private RabbitMQ 3.10 node, the reference).
"""

import os
import shutil
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
sys.path.insert(0, HERE)

import brokers  # noqa: E402
from helpers import Clients  # noqa: E402

TARGET = brokers.target()
DEFAULT_TIME_LIMIT = 90

_session = {"broker": None}


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): per-test wall clock limit (SIGALRM)")
    # kombu 5.2 on Python 3.11 warns about importlib.metadata's dict interface
    config.addinivalue_line("filterwarnings", "ignore:SelectableGroups dict interface:DeprecationWarning")


def pytest_report_header(config):
    return "AMQP_TARGET=%s%s" % (TARGET, (" MQNODE_BIN=%s" % os.environ.get("MQNODE_BIN"))
                                  if TARGET == "mqnode" else "")


@pytest.fixture(autouse=True)
def _time_limit(request):
    """Every test (incl. its fixtures) is bounded in time."""
    m = request.node.get_closest_marker("time_limit")
    limit = int(m.args[0]) if m else DEFAULT_TIME_LIMIT

    def on_alarm(signum, frame):
        raise TimeoutError("test exceeded its time limit of %ds" % limit)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class SharedBroker:
    """Session broker handle.  If the broker dies, the test during which it died
    fails and a fresh broker replaces it for the following tests."""

    def __init__(self):
        self.current = brokers.start_broker(prefix="mqtest-session-")
        self.retired = []

    def __getattr__(self, name):
        return getattr(self.current, name)

    def replace(self):
        old = self.current
        old.stop()
        self.retired.append(old)
        self.current = brokers.start_broker(prefix="mqtest-session-")


@pytest.fixture(scope="session")
def broker():
    """One broker shared by most tests (session scope)."""
    b = SharedBroker()
    _session["broker"] = b
    yield b
    _session["broker"] = None
    b.current.stop()
    problems = b.current.problems(only_new=True)
    if problems:
        pytest.fail("session broker: %s (workdir kept: %s)\n%s"
                    % ("; ".join(problems), b.current.workdir, b.current.describe_failure()),
                    pytrace=False)
    for old in [b.current] + b.retired:
        if not old.problems():
            shutil.rmtree(old.workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _session_broker_health(request):
    """Fail the test during which the shared broker crashed / reported ASan/UBSan."""
    yield
    b = _session["broker"]
    if b is not None and "broker" in request.fixturenames:
        problems = b.current.problems(only_new=True)
        if problems:
            details = b.current.describe_failure()
            workdir = b.current.workdir
            if not b.current.alive():
                b.replace()
            pytest.fail("shared broker unhealthy after this test: %s (workdir kept: %s)\n%s"
                        % ("; ".join(problems), workdir, details), pytrace=False)


@pytest.fixture
def broker_factory():
    """Start a fresh broker with config overrides: broker_factory(heartbeat_s=1);
    broker_factory(management=True) serves mqnode's management API on b.http_port."""
    started = []

    def start(management=False, port=None, **overrides):
        b = brokers.start_broker(overrides, port=port, prefix="mqtest-fn-", management=management)
        started.append(b)
        return b

    yield start
    problems = []
    for b in started:
        b.stop()
        p = b.problems(only_new=False)
        if p:
            problems.append("%s: %s (workdir kept: %s)\n%s"
                            % (b.target, "; ".join(p), b.workdir, b.describe_failure()))
        else:
            shutil.rmtree(b.workdir, ignore_errors=True)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def amqp(broker):
    """Client helper bound to the shared broker; closes everything at teardown."""
    c = Clients(broker)
    yield c
    c.close_all()


@pytest.fixture
def clients_for():
    """clients_for(broker) -> Clients for a factory broker (closed at teardown)."""
    made = []

    def make(b):
        c = Clients(b)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close_all()


@pytest.fixture
def uname(request):
    """uname('q') -> a name unique to this test (optionally uname('q', prefix='alice.'))."""
    import uuid
    base = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:60]
    counter = [0]

    def make(kind="q", prefix="t."):
        counter[0] += 1
        return "%s%s.%s.%d.%s" % (prefix, base, kind, counter[0], uuid.uuid4().hex[:8])

    return make
