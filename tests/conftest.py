"""pytest fixtures shared by the cross-process suites (see harness.py)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


@pytest.fixture
def procs():
    """Processes started through this group are stopped (by PID) at the end."""
    group = harness.ProcGroup()
    yield group
    group.stop_all()


@pytest.fixture
def pb():
    """The generated Python protos."""
    return harness.protos()
