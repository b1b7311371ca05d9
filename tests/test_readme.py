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


def test_benchmark_table_is_the_last_full_run(tmp_path):
    """The README's figures are bench/results.json's, from a full run: rendering
    them again changes nothing, and every target row is in the table."""
    import importlib.util

    path = os.path.join(ROOT, "bench", "run.py")
    spec = importlib.util.spec_from_file_location("bench_run", path)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    with open(os.path.join(ROOT, "bench", "results.json")) as f:
        result = json.load(f)
    assert result["quick"] is False
    assert {r["suite"] for r in result["rows"]} == {"c", "ipc", "pipeline", "writer", "live"}
    readme = tmp_path / "README.md"
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    readme.write_text(text)
    run.update_readme(result, str(readme))
    assert readme.read_text() == text, "README's table differs: python bench/run.py --readme"
    table = text.split(run.BEGIN, 1)[1].split(run.END, 1)[0]
    for r in result["rows"]:
        if r.get("target"):
            assert f"| {r['method']} |" in table and r["target"] in table


def test_python_api_example_runs(tmp_path):
    (tmp_path / "mymodule.py").write_text(next(b for b in python_blocks() if "# mymodule.py" in b))
    block = next(b for b in python_blocks() if "# run.py" in b)
    (tmp_path / "run.py").write_text(block)
    user_env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}  # as users run
    p = subprocess.run(
        [sys.executable, "run.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=user_env,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "30 frames analyzed"
    assert [line.split()[:3] for line in lines[1:]] == [
        ["0", "0.0", "ok"],
        ["1", "0.033", "ok"],
        ["2", "0.067", "ok"],
    ]
