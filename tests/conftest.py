import os
import sys

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

# Test the installed package, not the source tree (which has no compiled _ring):
# `python -m pytest` from the checkout puts the checkout first on sys.path, and
# children started with `python -c` would do the same without PYTHONSAFEPATH.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != ROOT]
os.environ["PYTHONSAFEPATH"] = "1"

import pytest  # noqa: E402

SHM = "/dev/shm"


def fe_segments() -> set[str]:
    return {n for n in os.listdir(SHM) if n.startswith("fe-")}


def ours_or_orphaned(name: str) -> bool:
    """Made by this process, or by one that is gone (a child of a test). A live
    process's segment belongs to someone else running on this machine."""
    pid = int(name.split("-")[1])
    return pid == os.getpid() or not os.path.exists(f"/proc/{pid}")


@pytest.fixture(autouse=True)
def no_leaked_segments():
    """Every test leaves /dev/shm as it found it."""
    before = fe_segments()
    yield
    leaked = {n for n in fe_segments() - before if ours_or_orphaned(n)}
    for name in leaked:  # so that one leak does not fail every later test
        os.unlink(os.path.join(SHM, name))
    assert not leaked, f"segments left in /dev/shm: {sorted(leaked)}"


@pytest.fixture
def make_ring():
    """Ring.create(...) whose rings are closed and unlinked at the end of the test."""
    from engine import Ring

    rings = []

    def make(**kw):
        r = Ring.create(**kw)
        rings.append(r)
        return r

    yield make
    for r in rings:
        r.close()
        r.unlink()
