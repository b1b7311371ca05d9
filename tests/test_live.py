"""Live: a file played --live comes in real time, like a camera; one analyzer slower
than the source skips the frames it cannot finish before they are due, and the
display's clock must leave it room to finish the others (issue 9).

The analysis is overload_funcs:compare, which costs nothing on the first frame (it
has no previous one) and COMPARE_S on every other, like flow.  The clock of a live
run starts when the first frame is shown, LIVE_LEAD_S ahead; whether it has room for
a COMPARE_S analysis depends on how long that frame waited for the analyzer to start,
so the failure came in some runs and not others: the test repeats the run."""

import json
import os
import subprocess

from helpers import tool
from overload_funcs import COMPARE_S, FPS

from engine.playloop import LIVE_LEAD_S
from engine.sources import write_demo_clip

HERE = os.path.dirname(os.path.abspath(__file__))
# The failure came in 2 runs of 5 (28 of 70 here, 25% to 60% by batch): six runs
# miss it about one time in 20.
RUNS = 6
FRAMES = 60  # 2 s of video
# One worker finishes a frame about every other frame interval (COMPARE_S is just
# over two): 26 to 29 of 60 here; a run whose analyzer gave up analyzed 9 to 12.
MIN_ANALYZED = 15


def test_live_runs_of_a_slow_analysis_keep_analyzing(tmp_path):
    assert 2 / FPS < COMPARE_S < 3 / FPS and COMPARE_S > LIVE_LEAD_S  # what the above assumes
    clip = str(tmp_path / "clip.avi")
    write_demo_clip(clip, frames=FRAMES, size=(320, 240), fps=FPS, fourcc="MJPG")
    env = dict(os.environ, PYTHONPATH=HERE, SDL_VIDEODRIVER="dummy")
    runs = []
    for i in range(RUNS):
        stats = tmp_path / f"stats{i}.json"
        p = subprocess.run(
            [tool("frame-engine"), "play", clip, "--live", "--analyze", "overload_funcs:compare"]
            + ["--workers", "1", "--headless", "--quiet", "--stats-json", str(stats)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        s = json.loads(stats.read_text())
        # every frame came to the analyzer and was analyzed or skipped as late
        assert s["frames_read"] + s["dropped_source"] == FRAMES
        assert s["frames_analyzed"] + s["not_analyzed_late"] == s["frames_read"]
        runs.append((s["frames_analyzed"], s["reanchors"], s["timing_error_ms"]["p50"]))
    print(f"\n(analyzed of {FRAMES}, reanchors, timing error p50 ms) per run: {runs}")
    assert all(analyzed >= MIN_ANALYZED for analyzed, _, _ in runs), runs
