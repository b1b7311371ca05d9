"""The README's examples run as written."""

import json
import os
import re
import subprocess
import sys

from helpers import tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_ring_example_runs(tmp_path):
    block = next(b for b in python_blocks() if "Ring.create" in b)
    p = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "drained"


def test_analysis_example_runs_as_its_comment_says(tmp_path):
    block = next(b for b in python_blocks() if "# mymodule.py" in b)
    (tmp_path / "mymodule.py").write_text(block)
    results = tmp_path / "out.jsonl"
    p = subprocess.run(
        [
            tool("frame-engine"),
            "play",
            "demo",
            "--analyze",
            "mymodule:brightness",
            "--frames",
            "10",
            "--untimed",
            "--headless",
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(10))
    assert lines[0]["result"]["change"] == 0.0 and lines[1]["result"]["mean"] > 0
