"""Shared test helpers."""

import time


def wait_until(cond, what: str, timeout: float = 20.0, interval: float = 0.001):
    """Poll cond() until it is true; fail naming `what` after `timeout` seconds.

    This waits for a condition, it does not stand in for one: the test goes on as
    soon as the condition holds, and the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def tool(name: str) -> str:
    """A command installed with the test environment: beside this interpreter
    first (a venv's bin/ need not be on PATH), then on PATH."""
    import os
    import shutil
    import sys

    here = os.path.join(os.path.dirname(sys.executable), name)
    found = here if os.access(here, os.X_OK) else shutil.which(name)
    assert found, f"{name} is not installed (pip install '.[test]')"
    return found
