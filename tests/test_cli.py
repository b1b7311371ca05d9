"""The command line as users run it."""

import subprocess

from helpers import tool


def cli(*args, timeout=120):
    return subprocess.run(
        [tool("frame-engine"), *args], capture_output=True, text=True, timeout=timeout
    )


def test_ring_demo_moves_every_frame_in_order():
    p = cli("ring-demo", "--frames", "60", "--workers", "2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("60 frames of 1280x720") and "every frame in order" in p.stdout


def test_bad_option_is_one_clear_line():
    p = cli("ring-demo", "--frames", "0")
    assert p.returncode == 2
    assert "--frames: 0 is not at least 1" in p.stderr and "Traceback" not in p.stderr


def test_version_and_clean():
    assert cli("--version").stdout.startswith("frame-engine ")
    p = cli("clean")
    assert p.returncode == 0 and "stale segment(s) removed" in p.stdout
