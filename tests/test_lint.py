"""The Python code is ruff-clean, lint and format."""

import os
import subprocess

from helpers import tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_check_and_format():
    for args in (["check"], ["format", "--check"]):
        p = subprocess.run(
            [tool("ruff"), *args, "engine", "tests", "bench"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stdout + p.stderr
