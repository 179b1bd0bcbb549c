"""Fixtures shared by the lb tests."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lbutil import EchoServer, LbProcess  # noqa: E402


@pytest.fixture
def echoes():
    """echoes("s1", "s2") -> started TCP echo backends, stopped at teardown."""
    made = []

    def make(*names):
        out = [EchoServer(n).start() for n in names]
        made.extend(out)
        return out

    yield make
    for e in made:
        e.stop()


@pytest.fixture
def lb_proc():
    """lb_proc(section, **kw) -> a started `mqnode --role lb` on that /lb section; stopped at
    teardown, failing the test if it logged problems."""
    made = []

    def make(section, **kw):
        p = LbProcess(section, **kw)
        made.append(p)
        return p.start()

    yield make
    problems = []
    for p in made:
        problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
