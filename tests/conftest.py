import os
import signal
import sys

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

# Run in the background of a non-interactive shell (`pytest &`, nohup, some CI
# runners), this process starts with SIGINT ignored, and so would every process a
# test starts: the Ctrl-C tests would see nothing happen. A test's processes get
# the terminal's default instead (a handler is reset to the default across exec).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Test the installed package, not the source tree (which has no compiled _ring):
# `python -m pytest` from the checkout puts the checkout first on sys.path, and
# children started with `python -c` would do the same without PYTHONSAFEPATH.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != ROOT]
os.environ["PYTHONSAFEPATH"] = "1"

import pytest  # noqa: E402
from helpers import SHM, our_segments  # noqa: E402  (sets FE_SHM_TAG)


def running(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


@pytest.fixture(autouse=True)
def no_leaked_segments():
    """Every test removes the segments its processes made: those of this process
    (a ring still open here is a leak too) and of its children, once they are gone
    (one still running is some other test's process, or a leaked one, reported
    where it exits)."""
    before = our_segments()
    yield
    leaked = set()
    for name in our_segments() - before:
        pid = int(name.split("-")[1])
        if pid == os.getpid() or not running(pid):
            leaked.add(name)
    for name in leaked:  # ours: so that one leak does not fail every later test
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


@pytest.fixture
def scripted(monkeypatch):
    """Make WindowView.events answer `script(shown, turn)` with key names (or run
    code of its own); record the frames shown, in order. (tests/test_keys.py,
    tests/test_window.py)"""
    from engine import display
    from engine.stats import RunStats

    shown = []
    real_shown = RunStats.shown

    def record(self, index, late_s, age_s=None):
        shown.append(index)
        real_shown(self, index, late_s, age_s)

    monkeypatch.setattr(RunStats, "shown", record)

    def install(script):
        import pygame

        real_events = display.WindowView.events
        calls = {"n": 0}

        def events(self):
            calls["n"] += 1
            for name in script(shown, calls["n"]):
                key = pygame.key.key_code(name)
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
            return real_events(self)  # the keys go through SDL's queue and the key map

        monkeypatch.setattr(display.WindowView, "events", events)

    return shown, install


@pytest.fixture
def stream_server():
    """Start stream servers on the loopback (tests/streams.py):
    `stream_server("udp", frames=90)` gives a started StreamServer; every server
    started is stopped at the end of the test, and none of its processes is left."""
    from streams import StreamServer

    servers = []

    def start(kind, **kw):
        server = StreamServer(kind, **kw).start()
        servers.append(server)
        return server

    yield start
    pids = [pid for s in servers for pid in s.pids]
    for s in servers:
        s.stop()
    assert not [pid for pid in pids if running(pid)], "stream server processes left"
