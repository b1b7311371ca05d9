"""Ordered steps after the analyzer pool (--then): every frame once, in order, with
the pool's status for it; classes built once per process with their close()
summaries in the stats; batches of frames as views into the ring; a hung step."""

import json
import os
import subprocess

import pytest
from helpers import tool

from engine.objects import moving_objects_clip

HERE = os.path.dirname(os.path.abspath(__file__))
REC = "step_funcs:Recorder"


def play(*args, timeout=120, **env_extra):
    env = dict(os.environ, PYTHONPATH=HERE, SDL_VIDEODRIVER="dummy", **env_extra)
    return subprocess.run(
        [tool("frame-engine"), "play", "--headless", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def play_ok(tmp_path, *args, **env_extra):
    stats = tmp_path / "stats.json"
    p = play(*args, "--stats-json", str(stats), **env_extra)
    assert p.returncode == 0, p.stderr
    return p, json.loads(stats.read_text())


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("timing", ["--untimed", "--speed=4"])
def test_an_ordered_step_sees_every_frame_once_in_order(tmp_path, workers, timing):
    p, s = play_ok(
        tmp_path,
        timing,
        "--frames",
        "60",
        "--workers",
        str(workers),
        "--analyze",
        "step_funcs:pool_index",
        "--then",
        REC,
    )
    seen = s["summaries"][REC]
    assert seen["seen"] == list(range(60))  # each frame once, in order
    assert sum(seen["statuses"].values()) == 60 and seen["pixels_ok"]
    assert seen["resets"] == [0] and seen["built_in_process"] == 1
    # frames the pool skipped as late reach the step too, flagged
    assert seen["statuses"].get("late", 0) == s["not_analyzed_late"]


def test_the_steps_results_are_in_the_results_file(tmp_path):
    results = tmp_path / "r.jsonl"
    play_ok(
        tmp_path,
        "--untimed",
        "--frames",
        "12",
        "--analyze",
        "step_funcs:pool_index",
        "--then",
        REC,
        "--then",
        "step_funcs:nothing",
        "--results",
        str(results),
    )
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(12))
    for i, x in enumerate(lines):
        assert x["result"] == {"index": i}
        # each step sees the results of those before it
        assert x["steps"] == {REC: {"i": i, "pool": {"index": i}}, "step_funcs:nothing": None}


def test_frames_of_a_killed_analyzer_reach_the_steps_flagged_failed(tmp_path):
    p, s = play_ok(
        tmp_path,
        "--untimed",
        "--frames",
        "40",
        "--workers",
        "2",
        "--analyze",
        "player_funcs:die_once",
        "--then",
        REC,
        FE_TEST_MARKER=str(tmp_path / "died"),
    )
    seen = s["summaries"][REC]
    assert seen["seen"] == list(range(40))
    assert seen["statuses"]["failed"] == s["failed"] >= 1


def test_a_class_is_built_once_per_process_and_its_summary_reaches_the_stats(tmp_path):
    p, s = play_ok(
        tmp_path,
        "--untimed",
        "--frames",
        "30",
        "--workers",
        "2",
        "--analyze",
        "step_funcs:PoolCounter",
        "--then",
        f"{REC}:tag=x",
    )
    pool = s["summaries"]["step_funcs:PoolCounter"]
    assert len(pool) == 2 and len({w["pid"] for w in pool}) == 2
    assert all(w["built_in_process"] == 1 for w in pool)
    assert sum(w["frames"] for w in pool) == 30
    assert s["summaries"][REC]["tag"] == "x"  # its parameters, from the spec


def test_batches_are_views_of_consecutive_frames(tmp_path):
    results = tmp_path / "r.jsonl"
    play_ok(
        tmp_path,
        "--untimed",
        "--frames",
        "40",
        "--workers",
        "2",
        "--analyze",
        "step_funcs:batch_probe",
        "--results",
        str(results),
    )
    lines = [json.loads(x)["result"] for x in results.read_text().splitlines()]
    assert [x["index"] for x in lines] == [x["pixels"] for x in lines] == list(range(40))
    assert all(1 <= x["size"] <= 4 and x["view"] for x in lines)
    assert max(x["size"] for x in lines) > 1  # batches did form


def test_a_step_that_raises_stops_the_run_naming_it():
    p = play("--untimed", "--frames", "20", "--then", "step_funcs:raises_at_five")
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == (
        "frame-engine: demo: frame 5: step 'step_funcs:raises_at_five' raised "
        "RuntimeError: step broke at five"
    )


def test_detect_track_count_gives_the_same_results_with_1_and_3_workers(tmp_path):
    import cv2

    clip = moving_objects_clip(40, (384, 288), 4, seed=1)
    path = str(tmp_path / "objects.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (384, 288))
    for frame in clip.frames:
        writer.write(frame)
    writer.release()
    outputs = []
    for workers in (1, 3):
        results = tmp_path / f"r{workers}.jsonl"
        p, s = play_ok(
            tmp_path,
            path,
            "--untimed",
            "--workers",
            str(workers),
            "--analyze",
            "detect",
            "--then",
            "track",
            "--then",
            "count",
            "--results",
            str(results),
        )
        outputs.append(results.read_bytes())
        assert s["summaries"]["count"]["crossed"] >= 1
    assert outputs[0] == outputs[1]


def test_a_hung_analysis_is_killed_after_the_step_timeout(tmp_path):
    p, s = play_ok(
        tmp_path,
        "--untimed",
        "--frames",
        "20",
        "--workers",
        "1",
        "--analyze",
        "step_funcs:hang_at_ten",
        "--step-timeout",
        "2",
    )
    assert s["failed"] == 1 and s["frames_shown"] == 20
    assert "frame 10" in p.stderr and "--step-timeout" in p.stderr


def test_a_hung_ordered_step_stops_the_run_or_with_skip_starts_again(tmp_path):
    args = ["--untimed", "--frames", "30", "--then", "step_funcs:hang_once_at_ten"]
    p = play(*args, "--step-timeout", "1", FE_TEST_MARKER=str(tmp_path / "a"))
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == (
        "frame-engine: steps step_funcs:hang_once_at_ten: frame 10 took longer than "
        "--step-timeout 1 s"
    )
    results = tmp_path / "r.jsonl"
    p, s = play_ok(
        tmp_path,
        *args,
        "--step-timeout",
        "1",
        "--on-error",
        "skip",
        "--results",
        str(results),
        FE_TEST_MARKER=str(tmp_path / "b"),
    )
    assert "restarted fresh" in p.stderr and s["frames_shown"] == 30
    steps = [json.loads(x)["steps"] for x in results.read_text().splitlines()]
    seen = [x["step_funcs:hang_once_at_ten"] for x in steps if x]
    assert [x["i"] for x in seen if x["reset"]][0] == 0
    assert any(x["reset"] for x in seen if x["i"] > 10)  # the new process starts over


def test_a_step_that_raises_under_skip_is_counted_and_the_run_goes_on(tmp_path):
    results = tmp_path / "r.jsonl"
    p, s = play_ok(
        tmp_path,
        "--untimed",
        "--frames",
        "10",
        "--then",
        "step_funcs:raises_at_five",
        "--on-error",
        "skip",
        "--results",
        str(results),
    )
    error = "raised RuntimeError: step broke at five (step 'step_funcs:raises_at_five')"
    assert s["errors"] == [{"error": error, "count": 1, "first_frame": 5}]
    assert s["step_errors"] == 1 and s["analysis_errors"] == 0 and s["frames_shown"] == 10
    assert "frame 5: step 'step_funcs:raises_at_five' raised RuntimeError" in p.stderr
    assert "; 1 step errors skipped" in p.stderr
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert [x["steps"] for x in lines] == [{"step_funcs:raises_at_five": None}] * 10
