"""Shared test helpers."""

import os
import random
import re
import string
import time

SHM = "/dev/shm"
# Every ring this test session's processes make without a name of their own is
# named fe-<pid>-<TAG><n> (children inherit the variable): tests look at those
# only, never at segments of other programs or other test runs sharing /dev/shm.
TAG = "T" + "".join(random.choices(string.ascii_letters, k=10))
os.environ["FE_SHM_TAG"] = TAG
_OURS = re.compile(rf"^fe-\d+-{TAG}\d+$")


def our_segments() -> set[str]:
    """The segments in /dev/shm that processes of this test session made."""
    return {n for n in os.listdir(SHM) if _OURS.match(n)}


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
