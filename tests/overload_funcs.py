"""The slow analysis of tests/test_overload.py, imported by the analyzer processes as
`overload_funcs:slow` (the tests put this folder on PYTHONPATH)."""

import time

import cv2

from engine.analysis import analysis

FPS = 30.0  # the frame rate of the overload clips
ANALYSIS_S = 3 / FPS  # three frame intervals: two workers keep up with two thirds of it


def slow(frame, out, ctx):
    """Three frame intervals of analysis, then a label drawn and a small result.

    The time is slept, not computed: it models an analysis slower than the source
    (a model, a remote call) without taking the cores the reader and the display
    need on a small machine, which would test the machine instead of the engine."""
    time.sleep(ANALYSIS_S)
    cv2.putText(out, str(ctx.frame_index), (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 0), 2)
    return {"index": ctx.frame_index, "mean": float(frame[::16, ::16].mean())}


COMPARE_S = 0.07  # over two frame intervals: one worker finishes about every other frame


@analysis(lookback=1)
def compare(frame, out, ctx):
    """An analysis of two frames (motion, optical flow): nothing to do on the first
    frame, which has no previous one, then COMPARE_S on every other (slept, as
    slow() is) and a small result."""
    if ctx.prev is None:
        return {"index": ctx.frame_index}
    time.sleep(COMPARE_S)
    return {"index": ctx.frame_index}
