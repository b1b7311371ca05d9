"""The command line outside `play` (which tests/test_player.py covers)."""

import subprocess

from helpers import tool


def cli(*args, timeout=120):
    return subprocess.run(
        [tool("frame-engine"), *args], capture_output=True, text=True, timeout=timeout
    )


def test_version_and_clean():
    assert cli("--version").stdout.startswith("frame-engine ")
    p = cli("clean")
    assert p.returncode == 0 and "stale segment(s) removed" in p.stdout
    p = cli("clean", "--quiet")
    assert p.returncode == 0 and p.stdout == ""


def test_help_shows_examples_and_keys():
    p = cli("play", "--help")
    assert p.returncode == 0
    assert "examples:" in p.stdout and "space pause" in p.stdout and "--untimed" in p.stdout


def test_unknown_command_is_one_line():
    p = cli("dance")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'dance'" in p.stderr
