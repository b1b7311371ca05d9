"""frame-engine's player against the loop users write today, in one run.

On a generated 768x576 clip, for the analyses none, edges and flow:
- the naive single-process loop (read, analyze, draw) against frame-engine with 1
  and 2 analyzer workers, untimed: frames per second;
- frame-engine with 2 workers on the display's clock (real time, headless): frames
  dropped, stalls, and the timing error of the display (when each frame was shown
  against when it was due: p50 and p99).
And the player's decode-only cost: `--analyze none --untimed` against a loop that
only decodes the same source, for the demo and for the clip.

Rates are steady state: from the first frame to the last at the display (the
pipeline) or in the loop (the baselines), so process start-up does not count.
Each case runs --repeat times; the table shows the median and the spread, the JSON
rows (suite, method, case, value, unit) the medians.

    python bench/pipeline.py [--quick] [--repeat N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator

import cv2
import numpy as np
from _harness import print_rows, save_rows

import engine
from engine.analysis import Context, resolve
from engine.sources import open_source, probe, write_demo_clip

SUITE = "pipeline"
ANALYSES = ("none", "edges", "flow")
CLIP_FRAMES = 300


def steady_fps(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0])


def plain_decode(spec: str, limit: int | None) -> float:
    """Decode into one reused buffer, nothing else."""
    info = probe(spec)
    src = open_source(info)
    buf = np.empty((info.height, info.width, 3), np.uint8)
    times = []
    while (limit is None or len(times) < limit) and src.read_into(buf):
        times.append(time.perf_counter())
    src.close()
    return steady_fps(times)


def naive_loop(path: str, analyze: str, limit: int | None) -> float:
    """What users write first: read a frame, analyze it, draw, next."""
    cv2.setNumThreads(1)  # as the workers run it; the comparison is about processes
    analysis = resolve(analyze)
    cap = cv2.VideoCapture(path)
    prev, times = None, []
    while limit is None or len(times) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        out = frame if analysis.in_place else frame.copy()
        analysis.fn(frame, out, Context(len(times), 0.0, prev, 0))
        prev = frame
        times.append(time.perf_counter())
    cap.release()
    return steady_fps(times)


def untimed(spec: str, analyze: str, workers: int, limit: int | None, **extra) -> float:
    """frame-engine's steady rate, untimed and headless (`extra`: more options)."""
    stats = engine.play(
        spec,
        analyze=analyze,
        workers=workers,
        untimed=True,
        headless=True,
        quiet=True,
        frames=limit,
        **extra,
    )
    return stats["fps"]["display_steady"]


def timed(spec: str, analyze: str, workers: int, limit: int | None) -> dict:
    return engine.play(
        spec, analyze=analyze, workers=workers, headless=True, quiet=True, frames=limit
    )


Row = tuple[str, str, float, str]  # case, method, value, unit


def decode_only(clip: str, limit: int | None) -> Iterator[Row]:
    for spec, case in (("demo", "demo 1280x720, decode only"), (clip, "768x576 clip, decode only")):
        base, fe = plain_decode(spec, limit), untimed(spec, "none", 1, limit)
        yield case, "plain decode loop", base, "fps"
        yield case, "frame-engine, none, untimed", fe, "fps"
        yield case, "frame-engine / plain loop", fe / base, "x"


def analyses(clip: str, limit: int | None, timed_frames: int) -> Iterator[Row]:
    for name in ANALYSES:
        case = f"768x576 clip, {name}"
        base = naive_loop(clip, name, limit)
        yield case, "naive loop (read, analyze, draw)", base, "fps"
        for w in (1, 2):
            fe = untimed(clip, name, w, limit)
            yield case, f"frame-engine, {w} worker(s)", fe, "fps"
            yield case, f"frame-engine {w} worker(s) / naive", fe / base, "x"
        s = timed(clip, name, 2, timed_frames)
        yield case, "real time, 2 workers: dropped late", s["dropped_late"], "frames"
        yield case, "real time, 2 workers: stalls", s["stalls"], "stalls"
        yield case, "real time, 2 workers: timing error p50", s["timing_error_ms"]["p50"], "ms"
        yield case, "real time, 2 workers: timing error p99", s["timing_error_ms"]["p99"], "ms"


def objects_clip(path: str, frames: int) -> None:
    """A 768x576 clip of textured objects moving across it, some over the middle."""
    from engine.objects import moving_objects_clip

    clip = moving_objects_clip(frames, (768, 576), 6, seed=3)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (768, 576))
    for frame in clip.frames:
        writer.write(frame)
    writer.release()


def naive_steps(path: str, limit: int | None) -> tuple[float, list]:
    """detect, track and count in one loop; the rate and every frame's results."""
    cv2.setNumThreads(1)
    from engine.objects import Count, Track, detect

    track, count = Track(), Count()
    cap = cv2.VideoCapture(path)
    prev, times, lines = None, [], []
    while limit is None or len(times) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        out = frame.copy()
        i = len(times)
        history = (prev,) if prev is not None else ()
        d = detect(frame, out, Context(i, 0.0, prev, 0, history=history))
        results = {"detect": d}
        t = track(frame, out, Context(i, 0.0, None, 0, results=dict(results), reset=i == 0))
        results["track"] = t
        c = count(frame, out, Context(i, 0.0, None, 0, results=dict(results), reset=i == 0))
        lines.append((d, {"track": t, "count": c}))
        prev = frame
        times.append(time.perf_counter())
    cap.release()
    return steady_fps(times), lines


def engine_steps(path: str, workers: int, limit: int | None, tmp: str) -> tuple[float, list]:
    results = os.path.join(tmp, f"steps-{workers}.jsonl")
    fps = untimed(path, "detect", workers, limit, then=["track", "count"], results=results)
    with open(results) as f:
        lines = [json.loads(line) for line in f]
    return fps, [(x["result"], x["steps"]) for x in lines]


def steps(tmp: str, limit: int | None) -> Iterator[Row]:
    """Detect in the pool, then track and count in order; a batch analysis against
    the same per frame; the cost of an ordered step that does nothing."""
    clip = os.path.join(tmp, "objects768.avi")
    if not os.path.exists(clip):
        objects_clip(clip, CLIP_FRAMES)
    case = "768x576 objects, detect+track+count"
    base, expected = naive_steps(clip, limit)
    yield case, "naive loop (read, detect, track, count, draw)", base, "fps"
    for w in (1, 2):
        fe, got = engine_steps(clip, w, limit, tmp)
        yield case, f"frame-engine, {w} worker(s)", fe, "fps"
        yield case, f"frame-engine {w} worker(s) / naive", fe / base, "x"
        yield (
            case,
            f"frame-engine {w} worker(s): results as naive's",
            float(got == expected),
            "1=yes",
        )
    case = "768x576 clip, tiny network"
    per_frame = untimed(clip, "step_funcs:tiny_net", 1, limit)
    batched = untimed(clip, "step_funcs:tiny_net_batch", 1, limit)
    yield case, "per frame, 1 worker", per_frame, "fps"
    yield case, "batch=8, 1 worker", batched, "fps"
    yield case, "batch / per frame", batched / per_frame, "x"
    case = "768x576 clip, none"
    alone = untimed(clip, "none", 1, limit)
    with_step = untimed(clip, "none", 1, limit, then=["step_funcs:nothing"])
    yield case, "--then a step that does nothing / none alone", with_step / alone, "x"


TARGETS = {  # (case, method): (target, higher is better)
    ("768x576 objects, detect+track+count", "frame-engine 2 worker(s) / naive"): (1.6, True),
    ("768x576 objects, detect+track+count", "frame-engine 2 worker(s): results as naive's"): (
        1.0,
        True,
    ),
    ("768x576 clip, none", "--then a step that does nothing / none alone"): (0.9, True),
    ("demo 1280x720, decode only", "frame-engine / plain loop"): (0.8, True),
    ("768x576 clip, flow", "frame-engine 2 worker(s) / naive"): (1.7, True),
    ("768x576 clip, none", "real time, 2 workers: timing error p99"): (2.0, False),
    ("768x576 clip, edges", "real time, 2 workers: timing error p99"): (2.0, False),
}


def verdict(key: tuple[str, str], value: float) -> str:
    if key not in TARGETS:
        return ""
    target, higher = TARGETS[key]
    ok = value >= target if higher else value <= target
    return f"{'>=' if higher else '<='} {target} {'ok' if ok else 'MISSED'}"


def run(quick: bool, repeat: int) -> list[dict]:
    """All cases, `repeat` times; the median rows."""
    limit = 150 if quick else None
    timed_frames = 60 if quick else 150
    runs: dict[tuple[str, str], list[float]] = {}
    units: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = os.path.join(tmp, "clip768.avi")
        write_demo_clip(clip, frames=CLIP_FRAMES, size=(768, 576), fps=30.0, fourcc="MJPG")
        for i in range(repeat):
            for case, method, value, unit in (
                *decode_only(clip, limit),
                *analyses(clip, limit, timed_frames),
                *steps(tmp, limit),
            ):
                runs.setdefault((case, method), []).append(value)
                units[(case, method)] = unit
            print(f"pipeline: run {i + 1}/{repeat} done", file=sys.stderr)
    rows = []
    for (case, method), values in runs.items():
        rows.append(
            {
                "suite": SUITE,
                "method": method,
                "case": case,
                "value": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "runs": len(values),
                "unit": units[(case, method)],
                "target": verdict((case, method), statistics.median(values)),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="150 frames a case, 1 run")
    parser.add_argument("--repeat", type=int, help="runs of each case (default 3, quick 1)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.repeat or (1 if args.quick else 3))
    print_rows(rows)
    save_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
