"""Fixtures shared by the lb tests."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lbutil import EchoServer  # noqa: E402


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
