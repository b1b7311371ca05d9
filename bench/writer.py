"""--output: what writing the video costs a run, in one run.

On generated clips at 768x576 and 1280x720 (demo frames, MJPEG), untimed with
--analyze none and 1 worker:
- frame-engine without --output;
- frame-engine with --output out.mp4 (H.264, the writer process);
- PyAV encoding the same frames alone in a loop, with the writer's settings
  (encoder, options, threads), from frames already in memory;
and the ratio of the run with output to the slower of the other two (target 0.9:
the writer, beside the reader and the display, keeps the encoder's pace), the
size of the file and its bitrate.  On a machine that others load, wall-clock
rates swing with their load; the writer's frames per CPU second against PyAV
alone's say whether it does more work per frame, whatever the load.

Rates are steady state: from the first frame shown to the end of the run (with
--output: until the file is finished), so process start-up does not count.

    python bench/writer.py [--quick] [--repeat N] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator

import numpy as np
from _harness import print_rows, save_rows

import engine
from engine.sources import open_source, probe, write_demo_clip
from engine.videofile import VideoFile, encoder_threads, video_spec

SUITE = "writer"
SIZES = ((768, 576), (1280, 720))
CLIP_FRAMES = 300
IN_MEMORY = 60  # frames held for the encoder-alone loop, played over and over
WORKERS = 1


def run_fps(clip: str, limit: int | None, output: str | None) -> tuple[float, dict]:
    """frame-engine untimed, --analyze none: frames per second from the first
    frame shown to the end of the run (the file finished)."""
    s = engine.play(
        clip,
        analyze="none",
        workers=WORKERS,
        untimed=True,
        headless=True,
        quiet=True,
        frames=limit,
        output=output,
    )
    return (s["frames_shown"] - 1) / (s["wall_s"] - s["startup_s"]), s


def encode_alone(clip: str, frames: int, path: str) -> tuple[float, float]:
    """PyAV encoding `frames` frames of the clip (IN_MEMORY of them, repeated),
    with the writer's settings: frames per second, and per CPU second."""
    info = probe(clip)
    src = open_source(info)
    held = []
    for _ in range(IN_MEMORY):
        image = np.empty((info.height, info.width, 3), np.uint8)
        if not src.read_into(image):
            break
        held.append(image)
    src.close()
    out = VideoFile(
        video_spec(path), info.width, info.height, info.fps, threads=encoder_threads(WORKERS)
    )
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(frames):
        out.add(held[i % len(held)], i / info.fps)
    out.close()
    return (frames - 1) / (time.perf_counter() - t0), frames / (time.process_time() - cpu0)


Row = tuple[str, str, float, str]  # case, method, value, unit


def cases(tmp: str, limit: int | None, turn: int) -> Iterator[Row]:
    """Every case once; odd turns measure in the opposite order, so that a change
    in the machine's load during a run does not always favour the same case."""
    frames = limit or CLIP_FRAMES
    for w, h in SIZES:
        clip = os.path.join(tmp, f"clip{w}.avi")
        if not os.path.exists(clip):
            write_demo_clip(clip, frames=CLIP_FRAMES, size=(w, h), fps=30.0, fourcc="MJPG")
        case = f"{w}x{h} clip, none, untimed"
        out = os.path.join(tmp, f"out{w}.mp4")
        alone_path = os.path.join(tmp, f"alone{w}.mp4")
        measures = [
            (run_fps, (clip, limit, None)),
            (run_fps, (clip, limit, out)),
            (encode_alone, (clip, frames, alone_path)),
        ]
        order = range(3) if turn % 2 == 0 else range(2, -1, -1)
        got = {i: measures[i][0](*measures[i][1]) for i in order}
        (without, _), (with_output, s), (alone, alone_cpu) = got[0], got[1], got[2]
        yield case, "frame-engine, no output", without, "fps"
        yield case, "frame-engine, --output out.mp4", with_output, "fps"
        yield case, "PyAV encoding alone (same settings)", alone, "fps"
        yield case, "with output / slower of the two", with_output / min(without, alone), "x"
        # The same, by CPU time, which the machine's other load does not change:
        # does the writer do more work per frame than PyAV alone?
        writer_cpu = s["output"]["frames"] / s["output"]["cpu_s"]
        yield case, "writer process, frames per CPU second", writer_cpu, "fps"
        yield case, "PyAV alone, frames per CPU second", alone_cpu, "fps"
        yield case, "writer / alone, per CPU second", writer_cpu / alone_cpu, "x"
        size = s["output"]["bytes"]
        yield case, "out.mp4 size", size / 2**20, "MiB"
        yield case, "out.mp4 bitrate", size * 8 / s["output"]["seconds"] / 1e6, "Mbit/s"


TARGETS = {  # (case, method): (target, higher is better)
    (f"{w}x{h} clip, none, untimed", "with output / slower of the two"): (0.9, True)
    for w, h in SIZES
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
    runs: dict[tuple[str, str], list[float]] = {}
    units: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            for case, method, value, unit in cases(tmp, limit, i):
                runs.setdefault((case, method), []).append(value)
                units[(case, method)] = unit
            print(f"writer: run {i + 1}/{repeat} done", file=sys.stderr)
    return [
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
        for (case, method), values in runs.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="150 frames a case, 1 run")
    parser.add_argument("--repeat", type=int, help="runs of each case (default 5, quick 1)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.repeat or (1 if args.quick else 5))
    print_rows(rows)
    save_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
