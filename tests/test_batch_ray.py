"""`frame-engine batch` on a Ray cluster: a local cluster of three nodes of one
CPU each, made by this module (on the loopback only) and stopped by it, shared
by its tests.  Skipped where Ray is not installed (pip install ".[ray]")."""

import json
import os
import shutil
import tempfile
import threading

import pytest

# Ray reads this as it is imported: every node then listens on the loopback only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")

from helpers import wait_until  # noqa: E402

import engine  # noqa: E402
from engine.sources import write_demo_clip  # noqa: E402

pytestmark = pytest.mark.timeout(180)
SIZE = (160, 96)
NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # several nodes on one machine: their sockets under a short folder (a Unix
    # socket's path has at most 107 bytes), made before the cluster is
    tmp = tempfile.mkdtemp(prefix="fe-ray-", dir="/tmp")
    marks = os.path.join(tmp, "marks")
    os.mkdir(marks)
    names = ("RAY_TMPDIR", "TMPDIR", "FE_TEST_MARKS")
    saved = {k: os.environ.get(k) for k in names}
    # the nodes' processes inherit these: what they leave in a temporary folder
    # (the shipped user module) is left in this one
    os.environ.update(RAY_TMPDIR=tmp, TMPDIR=tmp, FE_TEST_MARKS=marks)
    c = Cluster()
    try:
        c.add_node(**NODE, include_dashboard=False)  # the head
        for _ in range(2):
            c.add_node(**NODE)
        # Ray puts the driver's current folder on its workers' path: from the root
        # of a checkout (where CI runs the tests) its engine/ folder, which has no
        # compiled ring, would shadow the installed package in every task
        here = os.getcwd()
        os.chdir(tmp)
        try:
            ray.init(address=c.address)
        finally:
            os.chdir(here)
        c.marks = marks
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("rayclips")
    paths = []
    for i, n in enumerate((30, 22, 27, 35)):
        paths.append(str(d / f"c{i}.avi"))
        write_demo_clip(paths[-1], frames=n, size=SIZE)
    return paths


def lines(path):
    return [json.loads(line) for line in open(path)]


def play_results(path, analyze, folder):
    ref = os.path.join(folder, os.path.basename(path) + ".ref.jsonl")
    engine.play(path, analyze=analyze, untimed=True, headless=True, quiet=True, results=ref)
    return open(ref).read()


def test_every_frame_once_in_order_same_as_play(cluster, clips, tmp_path):
    out = tmp_path / "out"
    # player_funcs is the user's module here: the batch ships it to the nodes
    summary = engine.batch(clips, analyze="player_funcs:number", ray=cluster.address, out=str(out))
    assert summary["where"] == "on Ray (3 node(s), 1 CPU(s) a task)" and summary["workers"] == 1
    assert [i["status"] for i in summary["inputs"]] == ["ok"] * 4
    nodes = {n for i in summary["inputs"] for n in i["nodes"]}
    assert len(nodes) >= 2  # four tasks of one CPU at once on nodes of one CPU
    for path in clips:
        name = os.path.splitext(os.path.basename(path))[0]
        rows = lines(out / f"{name}.jsonl")
        assert [r["frame"] for r in rows] == list(range(len(rows))) and rows
        assert [r["result"]["pixels"] for r in rows] == [r["frame"] for r in rows]
        assert (out / f"{name}.jsonl").read_text() == play_results(
            path, "player_funcs:number", str(tmp_path)
        )


def test_split_on_the_cluster_same_as_one_run(cluster, tmp_path):
    clip = str(tmp_path / "long.mp4")
    write_demo_clip(clip, frames=75, size=SIZE, fourcc="mp4v")
    out = tmp_path / "out"
    summary = engine.batch(clip, analyze="flow", ray=cluster.address, out=str(out), split=1.0)
    assert summary["inputs"][0]["status"] == "ok" and summary["inputs"][0]["frames"] == 75
    stats = json.loads((out / "long.stats.json").read_text())
    assert [(r["first"], r["end"]) for r in stats["runs"]] == [(0, 30), (30, 60), (60, None)]
    assert [r["frame"] for r in lines(out / "long.jsonl")] == list(range(75))
    assert (out / "long.jsonl").read_text() == play_results(clip, "flow", str(tmp_path))


def test_a_node_removed_mid_batch(cluster, clips, tmp_path):
    extra = cluster.add_node(**NODE)
    raylet = str(extra.all_processes["raylet"][0].process.pid)
    for name in os.listdir(cluster.marks):
        os.unlink(os.path.join(cluster.marks, name))
    out, done = tmp_path / "out", {}

    def run():
        try:
            done["summary"] = engine.batch(
                clips, analyze="batch_funcs:slow_mark", ray=cluster.address, out=str(out)
            )
        except BaseException as e:  # told by the assertions below
            done["error"] = e

    t = threading.Thread(target=run)
    t.start()
    try:
        wait_until(
            lambda: os.path.exists(os.path.join(cluster.marks, raylet)) or not t.is_alive(),
            "a task running on the node to remove",
            timeout=60,
        )
        assert t.is_alive(), done
        cluster.remove_node(extra)  # its task dies with it, and Ray runs it again elsewhere
    finally:
        t.join(120)
    assert not t.is_alive() and "error" not in done, done
    summary = done["summary"]
    assert [i["status"] for i in summary["inputs"]] == ["ok"] * 4
    assert extra.node_id[:12] not in {n for i in summary["inputs"] for n in i["nodes"]}
    for path in clips:
        name = os.path.splitext(os.path.basename(path))[0]
        rows = lines(out / f"{name}.jsonl")
        assert [r["result"]["pixels"] for r in rows] == list(range(len(rows))) and rows
    assert sum(i["frames"] for i in summary["inputs"]) == 30 + 22 + 27 + 35  # none twice
    # the task on the removed node was killed with it: at most its segment is left
    assert len(settle_killed_tasks()) <= 1


def settle_killed_tasks(timeout: float = 30) -> list[str]:
    """A task Ray killed (its node removed, or a cancel forced after 5 s) cannot
    remove its ring's segment: the next task on that node does (clean_stale at its
    start), as for any killed run. Once no live process holds one of this
    session's segments, do what that next task would; returns what it removed."""
    from helpers import SHM, our_segments

    def running(name: str) -> bool:  # its creator's pid is in its name
        return os.path.exists(f"/proc/{name.split('-')[1]}")

    wait_until(
        lambda: not any(running(n) for n in our_segments()),
        "the killed tasks' processes gone",
        timeout=timeout,
    )
    left = sorted(our_segments())
    for name in left:
        os.unlink(os.path.join(SHM, name))
    return left


def test_a_damaged_file_among_good_ones(cluster, clips, tmp_path, capsys):
    from engine.cli import main

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0\0\0\x18ftypmp42" + b"garbage " * 500)
    out = tmp_path / "out"
    code = main(
        ["batch", clips[0], str(bad), clips[1], "--analyze", "edges", "--out", str(out)]
        + ["--ray", cluster.address]
    )
    err = capsys.readouterr().err
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert [i["status"] for i in summary["inputs"]] == ["ok", "failed", "ok"]
    assert summary["inputs"][1]["reason"].startswith(f"{bad}: ")
    assert f"frame-engine: bad: failed: {bad}: " in err
    assert "2 ok, 1 failed" in err


def test_ctrl_c_cancels_the_tasks_cleanly(cluster, clips, tmp_path):
    import signal
    import subprocess

    from helpers import our_segments, tool

    out = tmp_path / "out"
    p = subprocess.Popen(
        [tool("frame-engine"), "batch", *clips, "--analyze", "batch_funcs:slow_mark"]
        + ["--out", str(out), "--ray", cluster.address],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's Ctrl-C reaches it
        env=dict(os.environ, PYTHONPATH=os.path.dirname(__file__)),
        cwd=tmp_path,  # not the checkout's root (see cluster())
    )
    try:
        # the tasks' pipelines made their rings (on the nodes, which inherited the tag)
        wait_until(lambda: len(our_segments()) >= 2, "tasks running", timeout=60)
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "frame-engine: interrupted"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "interrupted"
    assert "interrupted" in {i["status"] for i in summary["inputs"]}
    # each task stopped its run and removed its segment; one still at work after
    # 5 s (a loaded machine) was killed, its segment left for the next run there
    assert len(settle_killed_tasks()) <= len(clips)


def test_leaving_the_iterator_cancels_the_tasks(cluster, clips, tmp_path):
    from helpers import our_segments

    long = str(tmp_path / "long.avi")  # 600 frames at 30 ms: about 20 s of work
    write_demo_clip(long, frames=600, size=SIZE)
    items = engine.batch_results(
        [clips[1], long], analyze="batch_funcs:slow_mark", ray=cluster.address
    )
    for path, index, result in items:
        assert path == clips[1] and result["pixels"] == index  # the short clip comes first
        break
    items.close()  # the driver stays: the batch itself must cancel the long clip's task
    wait_until(lambda: not our_segments(), "the long clip's task stopped", timeout=12)
