"""frame-engine's player against the loop users write today, in one run.

1. Decoding only: `frame-engine play --analyze none --untimed --headless` against a
   plain loop that only decodes the same source into one buffer.
2. Dense optical flow (`flow`) on a generated 768x576 clip: the naive single-process
   loop (read, analyze, draw) against the pipeline with 1 and 2 analyzer workers.

Rates are frames per second in steady state: from the first frame to the last at the
display (the pipeline) or in the loop (the baselines), so process start-up, which is
paid once per run, does not count.  Each case runs --repeat times; the table shows
the median and the spread, the JSON rows (suite, method, case, value, unit) the medians.

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

import cv2
import numpy as np

import engine
from engine.analysis import Context, resolve
from engine.sources import open_source, probe, write_demo_clip

SUITE = "pipeline"


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
        out = frame.copy()
        analysis.fn(frame, out, Context(len(times), 0.0, prev, 0))
        prev = frame
        times.append(time.perf_counter())
    cap.release()
    return steady_fps(times)


def pipeline(spec: str, analyze: str, workers: int, limit: int | None) -> float:
    stats = engine.play(
        spec,
        analyze=analyze,
        workers=workers,
        untimed=True,
        headless=True,
        quiet=True,
        frames=limit,
    )
    return stats["fps"]["display_steady"]


def run_cases(quick: bool, clip: str) -> list[tuple[str, str, float, str]]:
    limit = 150 if quick else None
    rows = []
    case = "demo 1280x720, decode only"
    base = plain_decode("demo", limit)
    fe = pipeline("demo", "none", 1, limit)
    rows += [
        (case, "plain decode loop", base, "fps"),
        (case, "frame-engine, none, untimed", fe, "fps"),
        (case, "frame-engine / plain loop", fe / base, "x"),
    ]
    case = "768x576 clip, decode only"
    base = plain_decode(clip, limit)
    fe = pipeline(clip, "none", 1, limit)
    rows += [
        (case, "plain decode loop", base, "fps"),
        (case, "frame-engine, none, untimed", fe, "fps"),
        (case, "frame-engine / plain loop", fe / base, "x"),
    ]
    case = "768x576 clip, flow"
    base = naive_loop(clip, "flow", limit)
    rows.append((case, "naive loop (read, analyze, draw)", base, "fps"))
    for w in (1, 2):
        fe = pipeline(clip, "flow", w, limit)
        rows += [
            (case, f"frame-engine, {w} worker(s)", fe, "fps"),
            (case, f"frame-engine {w} worker(s) / naive", fe / base, "x"),
        ]
    return rows


TARGETS = {
    ("demo 1280x720, decode only", "frame-engine / plain loop"): 0.8,
    ("768x576 clip, flow", "frame-engine 2 worker(s) / naive"): 1.7,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="150 frames a case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        clip = os.path.join(tmp, "clip768.avi")
        write_demo_clip(clip, frames=300, size=(768, 576), fps=30.0, fourcc="MJPG")
        runs: dict[tuple[str, str], list[float]] = {}
        units = {}
        for i in range(args.repeat):
            for case, method, value, unit in run_cases(args.quick, clip):
                runs.setdefault((case, method), []).append(value)
                units[(case, method)] = unit
            print(f"run {i + 1}/{args.repeat} done", file=sys.stderr)
    print(f"{'case':<28} {'method':<36} {'median':>9} {'min..max':>17}  target")
    rows = []
    for (case, method), values in runs.items():
        med = statistics.median(values)
        target = TARGETS.get((case, method))
        verdict = "" if target is None else f">= {target} {'ok' if med >= target else 'MISSED'}"
        spread = f"{min(values):.2f}..{max(values):.2f}"
        print(f"{case:<28} {method:<36} {med:>9.2f} {spread:>17}  {verdict}")
        rows.append(
            {
                "suite": SUITE,
                "method": method,
                "case": case,
                "value": med,
                "unit": units[(case, method)],
            }
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
