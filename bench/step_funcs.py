"""Analyses for bench/pipeline.py's steps cases, imported by the run's processes
(bench/ is on their path, as it is on the benchmark's)."""

from __future__ import annotations

import cv2
import numpy as np

from engine.analysis import analysis

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
