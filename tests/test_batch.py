"""`frame-engine batch` without Ray (--ray off, or Ray not installed): jobs one
after another or N at a time on this machine.  The Ray runner is tested in
tests/test_batch_ray.py."""

import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import our_segments, tool, wait_until

import engine
from engine.batchjobs import BatchError, expand_inputs, output_names
from engine.sources import write_demo_clip

SIZE = (160, 96)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three short barcoded clips, a 90-frame mp4v clip (with P-frames: a range
    starts between keyframes), one that is not a video, and one cut short."""
    d = tmp_path_factory.mktemp("clips")
    paths = {}
    for i, n in enumerate((24, 31, 17)):
        paths[f"c{i}"] = str(d / f"c{i}.avi")
        write_demo_clip(paths[f"c{i}"], frames=n, size=SIZE)
    paths["long"] = str(d / "long.mp4")
    write_demo_clip(paths["long"], frames=90, size=SIZE, fourcc="mp4v")
    paths["bad"] = str(d / "bad.avi")
    (d / "bad.avi").write_bytes(b"not a video at all " * 64)
    write_demo_clip(d / "whole.avi", frames=90, size=SIZE)
    data = (d / "whole.avi").read_bytes()
    paths["cut"] = str(d / "cut.avi")  # says 90 frames, decodes 54
    (d / "cut.avi").write_bytes(data[: len(data) * 6 // 10])
    (d / "whole.avi").unlink()
    return paths


def play_results(path, analyze, tmp_path):
    """What `play --results` writes for a file alone: the reference."""
    ref = tmp_path / (os.path.basename(path) + ".ref.jsonl")
    engine.play(path, analyze=analyze, untimed=True, headless=True, quiet=True, results=str(ref))
    return ref.read_text()


def lines(text):
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def no_ray(monkeypatch):
    """Ray cannot be imported (as where it is not installed)."""
    monkeypatch.setitem(sys.modules, "ray", None)


def test_without_ray_every_frame_once_in_order_same_as_play(clips, tmp_path, no_ray):
    inputs = [clips["c0"], clips["c1"], clips["c2"]]
    out = tmp_path / "out"
    summary = engine.batch(inputs, analyze="player_funcs:number", out=str(out), ray="auto", jobs=2)
    assert summary["where"] == "here, 2 at a time"  # auto, and Ray cannot be imported
    assert [i["status"] for i in summary["inputs"]] == ["ok", "ok", "ok"]
    for path in inputs:
        name = os.path.splitext(os.path.basename(path))[0]
        got = (out / f"{name}.jsonl").read_text()
        rows = lines(got)
        assert [r["frame"] for r in rows] == [r["result"]["pixels"] for r in rows]
        assert [r["frame"] for r in rows] == list(range(len(rows))) and rows
        assert got == play_results(path, "player_funcs:number", tmp_path)
        stats = json.loads((out / f"{name}.stats.json").read_text())
        assert stats["status"] == "ok" and stats["frames"] == len(rows)
        assert stats["runs"][0]["stats"]["frames_analyzed"] == len(rows)  # the run's figures
    assert json.loads((out / "summary.json").read_text())["state"] == "done"


def test_split_same_as_unsplit_for_a_lookback_analysis(clips, tmp_path, no_ray):
    # flow looks at the previous frame: at each cut the range's pipeline reads it
    # first, and the mp4v clip's ranges start between keyframes
    whole, split = tmp_path / "whole", tmp_path / "split"
    engine.batch(clips["long"], analyze="flow", out=str(whole), ray="off")
    summary = engine.batch(
        clips["long"], analyze="flow", out=str(split), ray="off", split=1.0, jobs=2
    )
    stats = json.loads((split / "long.stats.json").read_text())
    assert [(r["first"], r["end"]) for r in stats["runs"]] == [(0, 30), (30, 60), (60, None)]
    assert summary["inputs"][0]["frames"] == 90
    got = (split / "long.jsonl").read_text()
    assert [r["frame"] for r in lines(got)] == list(range(90))  # none lost or doubled
    assert got == (whole / "long.jsonl").read_text()
    assert lines(got)[30]["result"]["flow_max"] > 0  # the cut's frame had its previous one


def test_iterator_gives_each_inputs_frames_in_order(clips, no_ray):
    items = list(engine.batch_results([clips["c2"], clips["c0"]], analyze="player_funcs:number"))
    by_input = {}
    for item in items:
        path, index, result = item  # unpacks as a triple
        assert result["pixels"] == index == item.index and item.pts >= 0
        by_input.setdefault(path, []).append(index)
    assert by_input == {clips["c2"]: list(range(17)), clips["c0"]: list(range(24))}


def test_damaged_inputs_are_reported_and_the_rest_complete(clips, tmp_path, capsys):
    from engine.cli import main

    out = tmp_path / "out"
    code = main(
        ["batch", clips["c0"], clips["bad"], clips["cut"], "--out", str(out), "--ray", "off"]
        + ["--split", "1", "--analyze", "edges"]
    )
    err = capsys.readouterr().err
    assert code == 1  # the exit status says some input is not complete
    summary = json.loads((out / "summary.json").read_text())
    status = {os.path.basename(i["input"]): i for i in summary["inputs"]}
    assert status["c0.avi"]["status"] == "ok" and status["c0.avi"]["frames"] == 24
    assert status["bad.avi"]["status"] == "failed"
    assert status["bad.avi"]["reason"] == f"{clips['bad']}: not a video OpenCV can decode"
    # a range past the decodable end is told, not 0 rows said nothing of
    assert status["cut.avi"]["status"] == "incomplete" and status["cut.avi"]["frames"] == 54
    assert "1 range(s) past the decodable end" in status["cut.avi"]["reason"]
    assert f"frame-engine: bad: failed: {clips['bad']}: not a video" in err
    assert "frame-engine: cut: 54 frames" in err and "incomplete" in err
    assert "1 ok, 1 incomplete, 1 failed" in err
    assert not (out / "bad.jsonl").exists()
    assert [r["frame"] for r in lines((out / "cut.jsonl").read_text())] == list(range(54))


def test_resume_skips_inputs_complete_with_the_same_analysis(clips, tmp_path, no_ray):
    out = str(tmp_path / "out")
    engine.batch([clips["c0"]], analyze="edges", out=out, ray="off")
    first = os.stat(os.path.join(out, "c0.jsonl")).st_mtime_ns
    summary = engine.batch([clips["c0"], clips["c2"]], analyze="edges", out=out, resume=True)
    assert [i["status"] for i in summary["inputs"]] == ["skipped", "ok"]
    assert os.stat(os.path.join(out, "c0.jsonl")).st_mtime_ns == first
    # another analysis: the results there are not these
    summary = engine.batch([clips["c0"]], analyze="gray", out=out, resume=True, ray="off")
    assert [i["status"] for i in summary["inputs"]] == ["ok"]


def test_output_video_has_every_frame(clips, tmp_path, no_ray):
    import cv2

    out = tmp_path / "out"
    code = subprocess.run(
        [tool("frame-engine"), "batch", clips["c2"], "--out", str(out), "--ray", "off"]
        + ["--analyze", "edges", "--output-video", "avi", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert code.returncode == 0, code.stderr
    cap = cv2.VideoCapture(str(out / "c2.avi"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 17
    cap.release()
    assert len(lines((out / "c2.jsonl").read_text())) == 17


def test_inputs_folders_globs_and_names(clips, tmp_path):
    folder = os.path.dirname(clips["c0"])
    found = expand_inputs([folder])
    assert [os.path.basename(p) for p in found] == [
        "bad.avi", "c0.avi", "c1.avi", "c2.avi", "cut.avi", "long.mp4"
    ]  # fmt: skip
    assert expand_inputs([os.path.join(folder, "c[0-9].avi"), clips["c0"]]) == found[1:4]
    for spec, why in (
        (str(tmp_path / "nothing.mp4"), "no such file or folder"),
        (str(tmp_path / "*.mkv"), "no file matches"),
        (str(tmp_path), "no videos in that folder"),
    ):
        with pytest.raises(BatchError, match=why) as e:
            expand_inputs([spec])
        assert str(e.value).startswith(spec) and e.value.exit_code == 2
    assert output_names(["/a/x.mp4", "/b/x.avi", "/c/y.mp4"]) == ["x.mp4", "x.avi", "y"]
    assert output_names(["/a/d/x.mp4", "/a/e/x.mp4"]) == ["d__x.mp4", "e__x.mp4"]


def test_ray_named_but_not_installed_is_one_line(clips, tmp_path, no_ray, capsys):
    from engine.cli import main

    code = main(["batch", clips["c0"], "--out", str(tmp_path), "--ray", "local"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        'frame-engine: --ray local: Ray is not installed (pip install "frame-engine[ray]")'
    )


def test_ctrl_c_stops_every_job_cleanly(clips, tmp_path):
    out = tmp_path / "out"
    inputs = [clips["c0"], clips["c1"], clips["c2"], clips["long"]]
    p = subprocess.Popen(
        [tool("frame-engine"), "batch", *inputs, "--out", str(out), "--ray", "off"]
        + ["--jobs", "2", "--analyze", "batch_funcs:slow_mark", "--quiet"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's Ctrl-C reaches it
        env=dict(os.environ, PYTHONPATH=os.path.dirname(__file__)),
    )
    try:
        wait_until(lambda: len(our_segments()) >= 2, "two jobs running", timeout=60)
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
    assert {i["status"] for i in summary["inputs"]} <= {"ok", "interrupted"}
    assert "interrupted" in {i["status"] for i in summary["inputs"]}
    wait_until(lambda: not our_segments(), "the jobs' segments removed", timeout=10)
