"""Analyses for bench/pipeline.py's steps cases and bench/live_latency.py, imported
by the run's processes (bench/ is on their path, as it is on the benchmark's)."""

from __future__ import annotations

import os
import time

import cv2
import numpy as np

from engine.analysis import analysis
from engine.sources import read_frame_number

_rng = np.random.default_rng(0)
# A small fixed "network": 48x48 grey pixels -> 512 -> 64 -> 10, ReLU between.
W1 = _rng.standard_normal((48 * 48, 512), dtype=np.float32) / 48
W2 = _rng.standard_normal((512, 64), dtype=np.float32) / 23
W3 = _rng.standard_normal((64, 10), dtype=np.float32) / 8


def _inputs(frames: np.ndarray) -> np.ndarray:
    small = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (48, 48)) for f in frames]
    return np.stack(small).reshape(len(small), -1).astype(np.float32) / 255


def _net(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(x @ W1, 0) @ W2, 0) @ W3


def tiny_net(frame, out, ctx):
    """The network on one frame: a (1, 2304) by (2304, 512) product."""
    scores = _net(_inputs(frame[None]))[0]
    return {"class": int(scores.argmax())}


@analysis(batch=8)
def tiny_net_batch(frames, outs, ctxs):
    """The same network on up to 8 frames at once: one (k, 2304) product."""
    scores = _net(_inputs(frames))
    return [{"class": int(s.argmax())} for s in scores]


@analysis(ordered=True)
def nothing(frame, out, ctx):
    """An ordered step that does nothing: what the steps' stage itself costs."""
    return None


# For bench/live_latency.py: about 1.3 frame intervals of a 30 fps stream, as a busy
# loop (wall time, so it takes as long on a loaded machine), and what the frame is.
BUSY_S = float(os.environ.get("FE_BENCH_BUSY_S", 1.3 / 30))


def busy_live(frame, out, ctx):
    """BUSY_S of work; then the frame's number (its barcode) and its age: now less
    when the stream server sent it, from FE_STREAM_T0 and FE_STREAM_FPS (frame k is
    sent at t0 + k / fps, CLOCK_MONOTONIC); no age without them."""
    end = time.perf_counter() + BUSY_S
    while time.perf_counter() < end:
        pass
    k = read_frame_number(frame)
    result = {"k": k}
    if "FE_STREAM_T0" in os.environ:
        sent = float(os.environ["FE_STREAM_T0"]) + k / float(os.environ["FE_STREAM_FPS"])
        result["age"] = time.monotonic() - sent
    return result
