"""Latency on a live stream: how old each frame is when it is handled, for the loop
users write first and for frame-engine, on a real stream served on this machine.

A local server (tests/streams.py: the feeder paces the demo's barcoded frames at 30
fps into ffmpeg, which sends them as H.264 in MPEG-TS over UDP, 320x240) sends frame
k at t0 + k / fps, and says t0. Whoever reads a frame knows from its barcode k when
it was sent, so its age at any moment is now - (t0 + k / fps), on CLOCK_MONOTONIC,
which every process of the machine shares. The analysis is a busy loop of about 1.3
frame intervals (bench/step_funcs.py: busy_live, 43 ms): one process cannot keep up
with the stream, two can.

- naive loop: cv2.VideoCapture(url, CAP_FFMPEG); read, analyze, next. It falls
  behind: frames queue in FFmpeg's UDP buffer, and their age grows with the run.
- frame-engine: `frame-engine play URL --live --headless --workers 2 --analyze
  step_funcs:busy_live --results R --stats-json S` (run through a small wrapper
  that notes when each frame is shown): each analyzed frame's age when shown; the
  frames shown per second and the share of the stream's frames shown (its stats);
  and, where the engine gives it, its own latency (stats["latency_ms"]["p50"/"p99"],
  milliseconds from the reader getting a frame to its display: the transport before the
  reader is not in it).

Ages are those of the frames handled after the first WARMUP_S of each run (the
first frames a capture returns are those FFmpeg read while it probed the stream).
Targets (issue 11): frame-engine's p99 age < 200 ms with >= 85% of the stream's
frames shown, where the naive loop's age grows without bound (its age in the last
second against the first says how fast).

    python bench/live_latency.py [--quick] [--seconds S] [--json PATH]
    python bench/live_latency.py --only frame-engine    # once the engine side lands
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # the stream servers
sys.path.insert(0, HERE)  # step_funcs

import step_funcs  # noqa: E402
from _harness import print_rows, save_rows  # noqa: E402
from streams import StreamServer  # noqa: E402

SUITE = "live"
KIND = "udp"
FPS = 30.0
BUSY_S = 1.3 / FPS
WORKERS = 2
WARMUP_S = 1.0
# The stream runs this much longer than --seconds: about what frame-engine takes to
# start, probe and open it, so that both runs see some --seconds of it.
JOIN_S = 4.0
OPEN_MS = 5000
READ_MS = 2000
SLACK_S = 60.0  # beyond the stream's length, the most a run may take
CASE = f"{KIND} 320x240 at {FPS:g} fps, analysis {BUSY_S * 1000:.0f} ms"

# Runs `frame-engine play` (engine.cli.main) with RunStats.shown noting, for each
# frame shown, its index and when; written to argv[1] at exit.
SHOWN_PROBE = """\
import atexit, sys, time
import engine.stats as stats
log, real = [], stats.RunStats.shown
def shown(self, index, *args, **kwargs):
    log.append((index, time.monotonic()))
    return real(self, index, *args, **kwargs)
stats.RunStats.shown = shown
def write():
    with open(sys.argv[1], "w") as f:
        f.writelines(f"{i} {t!r}\\n" for i, t in log)
atexit.register(write)
from engine.cli import main
sys.exit(main(sys.argv[2:]))
"""


def frame_engine_cmd() -> list[str]:
    return [sys.executable, "-c", SHOWN_PROBE]


def stream_env(server: StreamServer) -> dict[str, str]:
    """What busy_live needs to tell a frame's age, and the path to step_funcs."""
    path = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    return dict(
        os.environ,
        PYTHONPATH=path,
        FE_STREAM_T0=repr(server.t0),
        FE_STREAM_FPS=repr(server.fps),
        FE_BENCH_BUSY_S=repr(BUSY_S),
        SDL_VIDEODRIVER="dummy",
    )


def play_options() -> list[str]:
    """Options of issue 11 the engine has by now: a run that ends with its stream
    (no reconnecting after the stream ends)."""
    help_text = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main(['play', '--help'])"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    extra = []
    if "--reconnect-for" in help_text:
        extra += ["--reconnect-for", "0"]
    if "--source-timeout" in help_text:
        extra += ["--source-timeout", "2"]
    return extra


def _after_warmup(handled: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    """(k, age, when) of the frames handled WARMUP_S or more after the first."""
    if not handled:
        return []
    start = handled[0][2] + WARMUP_S
    return [h for h in handled if h[2] >= start]


def summary(handled: list[tuple[int, float, float]], server: StreamServer) -> dict:
    """Ages (ms) and rates of a run's handled frames, (k, age_s, when) each."""
    frames = server.frames
    steady = _after_warmup(handled)
    if len(steady) < 2:
        return {"handled": len(handled)}
    ages = np.array([a for _, a, _ in steady]) * 1000
    # the median age of the frames sent in the first and in the last second of the
    # stream the run saw after its warm-up
    k0, k1 = min(k for k, _, _ in steady), max(k for k, _, _ in steady)
    first = [a * 1000 for k, a, _ in steady if k < k0 + server.fps]
    last = [a * 1000 for k, a, _ in steady if k > k1 - server.fps]
    # frames handled per second while the stream ran (a run that falls behind
    # handles the rest after it ended)
    t0, t1 = steady[0][2], server.sent_at(frames)
    while_live = sum(1 for *_, t in steady if t <= t1)
    return {
        "handled": len(handled),
        "age_p50_ms": float(np.percentile(ages, 50)),
        "age_p99_ms": float(np.percentile(ages, 99)),
        "age_first_s_ms": statistics.median(first),
        "age_last_s_ms": statistics.median(last),
        "shown_per_s": while_live / (t1 - t0) if t1 > t0 else 0.0,
        # the share of the stream's frames from the first one handled to its end
        "shown_share": len({k for k, _, _ in handled}) / max(1, frames - handled[0][0]),
        "first_k": handled[0][0],
        "stream_frames": frames,
    }


def naive(seconds: float) -> dict:
    """The loop users write: read, analyze (busy_live, in this process), next."""
    frames = round((seconds + JOIN_S) * FPS)
    with StreamServer(KIND, fps=FPS, frames=frames) as server:
        os.environ.update({k: v for k, v in stream_env(server).items() if k.startswith("FE_")})
        step_funcs.BUSY_S = BUSY_S
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_MS]
        cap = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            raise RuntimeError(f"{server.url}: the naive loop cannot open it")
        handled = []
        deadline = server.sent_at(frames) + SLACK_S
        try:
            while time.monotonic() < deadline:
                ok, frame = cap.read()
                if not ok:
                    break
                result = step_funcs.busy_live(frame, frame, None)
                handled.append((result["k"], result["age"], time.monotonic()))
        finally:
            cap.release()
    return summary(handled, server)  # it shows what it handles, when it does


def frame_engine(seconds: float, workers: int = WORKERS, extra: list[str] | None = None) -> dict:
    """`frame-engine play URL --live --headless --workers N --analyze
    step_funcs:busy_live` on the stream; the ages of its analyzed frames when shown,
    its stats, and the engine's own latency figures where it gives them."""
    frames = round((seconds + JOIN_S) * FPS)
    with (
        tempfile.TemporaryDirectory(prefix="fe-live-") as tmp,
        StreamServer(KIND, fps=FPS, frames=frames) as server,
    ):
        paths = {n: os.path.join(tmp, n) for n in ("results.jsonl", "stats.json", "shown.txt")}
        cmd = [
            *frame_engine_cmd(),
            paths["shown.txt"],
            "play",
            server.url,
            "--live",
            "--headless",
            "--quiet",
            "--workers",
            str(workers),
            "--analyze",
            "step_funcs:busy_live",
            "--results",
            paths["results.jsonl"],
            "--stats-json",
            paths["stats.json"],
            *(play_options() if extra is None else extra),
        ]
        proc = subprocess.Popen(
            cmd, env=stream_env(server), stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            _, err = proc.communicate(timeout=seconds + SLACK_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # it ends with its stats written
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
        stats = {}
        if os.path.exists(paths["stats.json"]):
            with open(paths["stats.json"]) as f:
                stats = json.load(f)
        k_of, results = {}, []
        if os.path.exists(paths["results.jsonl"]):
            with open(paths["results.jsonl"]) as f:
                results = [json.loads(line) for line in f]
        for r in results:
            if isinstance(r.get("result"), dict) and "k" in r["result"]:
                k_of[r.get("frame", r.get("index"))] = r["result"]["k"]
        handled = []
        if os.path.exists(paths["shown.txt"]):
            with open(paths["shown.txt"]) as f:
                for line in f:
                    index, when = line.split()
                    if int(index) in k_of:
                        k = k_of[int(index)]
                        handled.append((k, float(when) - server.sent_at(k), float(when)))
        if not handled:  # the probe saw nothing: the age when analyzed, from the results
            handled = [
                (k, age, server.sent_at(k) + age)
                for r in results
                if isinstance(r.get("result"), dict) and "age" in r["result"]
                for k, age in [(r["result"]["k"], r["result"]["age"])]
            ]
        s = summary(handled, server)
    s.update(exit=proc.returncode, stderr=err.strip().splitlines()[-3:])
    if stats:
        # frames shown without analysis (late) have no barcode: count them from the stats
        s["shown_share"] = stats["frames_shown"] / max(1, frames - s.get("first_k", 0))
        s["stats"] = {
            k: stats.get(k)
            for k in ("frames_read", "frames_shown", "frames_analyzed", "dropped_source")
        } | {k: v for k, v in stats.items() if k.startswith("dropped") or k == "reconnects"}
        latency = stats.get("latency_ms")
        if isinstance(latency, dict) and latency.get("p50") is not None:
            s["engine_latency_p50_ms"] = latency["p50"]
            s["engine_latency_p99_ms"] = latency["p99"]
    return s


TARGETS = {  # method: (bound, higher is better)
    f"frame-engine, {WORKERS} workers: age p99": (200.0, False),
    f"frame-engine, {WORKERS} workers: stream frames shown": (85.0, True),
}


def rows_of(name: str, s: dict) -> list[tuple[str, float, str]]:
    out = []
    for key, label, unit, scale in (
        ("age_p50_ms", "age p50", "ms", 1),
        ("age_p99_ms", "age p99", "ms", 1),
        ("age_first_s_ms", "age in the first second", "ms", 1),
        ("age_last_s_ms", "age in the last second", "ms", 1),
        ("shown_per_s", "frames shown per second", "fps", 1),
        ("shown_share", "stream frames shown", "%", 100),
        ("engine_latency_p50_ms", "engine latency p50 (reader to shown)", "ms", 1),
        ("engine_latency_p99_ms", "engine latency p99 (reader to shown)", "ms", 1),
    ):
        if key in s:
            out.append((f"{name}: {label}", s[key] * scale, unit))
    return out


def verdict(method: str, value: float) -> str:
    if method not in TARGETS:
        return ""
    bound, higher = TARGETS[method]
    ok = value >= bound if higher else value < bound
    return f"{'>=' if higher else '<'} {bound:g} {'ok' if ok else 'MISSED'}"


def run(seconds: float, repeat: int, only: str | None) -> tuple[list[dict], list[dict]]:
    runs: dict[str, list[float]] = {}
    units: dict[str, str] = {}
    details = []
    for i in range(repeat):
        cases = []
        if only in (None, "naive"):
            cases.append(("naive loop", naive))
        if only in (None, "frame-engine"):
            cases.append((f"frame-engine, {WORKERS} workers", frame_engine))
        for name, fn in cases:
            s = fn(seconds)
            details.append({"method": name, "run": i + 1} | s)
            for method, value, unit in rows_of(name, s):
                runs.setdefault(method, []).append(value)
                units[method] = unit
        print(f"live_latency: run {i + 1}/{repeat} done", file=sys.stderr)
    rows = [
        {
            "suite": SUITE,
            "method": method,
            "case": CASE,
            "value": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "runs": len(values),
            "unit": units[method],
            "target": verdict(method, statistics.median(values)),
        }
        for method, values in runs.items()
    ]
    return rows, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 6 s stream, 1 run")
    parser.add_argument("--seconds", type=float, help="the stream's length (default 15, quick 6)")
    parser.add_argument("--repeat", type=int, help="runs of each case (default 1)")
    parser.add_argument("--only", choices=("naive", "frame-engine"))
    parser.add_argument("--json", metavar="PATH", help="the rows, as bench/run.py reads them")
    parser.add_argument("--details", action="store_true", help="print each run's figures")
    args = parser.parse_args(argv)
    seconds = args.seconds or (6.0 if args.quick else 15.0)
    rows, details = run(seconds, args.repeat or 1, args.only)
    print_rows(rows, 58, 1)
    if args.details:
        for d in details:
            print(json.dumps(d))
    save_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
