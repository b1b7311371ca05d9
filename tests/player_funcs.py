"""Analysis functions for the player tests, imported by the analyzer processes as
`player_funcs:NAME` (the tests put this folder on PYTHONPATH)."""

import os
import signal
import time

from engine.analysis import analysis
from engine.sources import read_frame_number


def slow(frame, out, ctx):
    """Slower than real time: 50 ms a frame (a workload, not a synchronisation)."""
    time.sleep(0.05)
    return {"n": ctx.frame_index}


def gap_seen(frame, out, ctx):
    """An ordered step: what it is told of a gap in a live stream."""
    return {"gap": ctx.gap, "reset": ctx.reset}


def two_intervals(frame, out, ctx):
    """Twice the interval of a 30 fps stream a frame (a workload)."""
    time.sleep(2 / 30)


def number(frame, out, ctx):
    """The frame number read back from the pixels, and the index the reader gave."""
    return {"pixels": read_frame_number(frame), "index": ctx.frame_index, "pts": ctx.pts}


def boom(frame, out, ctx):
    if ctx.frame_index == 7:
        raise ValueError("boom at seven")
    return None


def die_once(frame, out, ctx):
    """SIGKILL this analyzer at frame 10, once per run (a marker file remembers)."""
    marker = os.environ["FE_TEST_MARKER"]
    if ctx.frame_index == 10 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"worker": ctx.worker}


@analysis(lookback=1)
def prev_index(frame, out, ctx):
    """What the previous frame (by lookback) shows."""
    return {"prev": None if ctx.prev is None else read_frame_number(ctx.prev)}


def not_json(frame, out, ctx):
    return {"array": frame}


def crash(frame, out, ctx):
    """Takes the whole analyzer process down on every frame."""
    os._exit(3)


def keyerror(frame, out, ctx):
    """Raises on every frame, with a message that differs on odd frames."""
    raise KeyError("odd" if ctx.frame_index % 2 else "even")


def numpy_result(frame, out, ctx):
    """numpy scalars and a small array, as people write them."""

    mask = frame[:8, :8, 0] > 127
    return {"n": mask.sum(), "mean": frame[:8, :8].mean(), "flag": mask.any(), "row": mask[0]}


def returns_image(frame, out, ctx):
    return out


def returns_tuple(frame, out, ctx):
    return (ctx.frame_index, 1.5)


class UserError(Exception):
    """An exception class of the user's own."""


def user_error(frame, out, ctx):
    if ctx.frame_index == 5:
        raise UserError(f"bad frame {ctx.frame_index}")
    return {"i": ctx.frame_index}


@analysis(lookback=3)
def history_numbers(frame, out, ctx):
    """The frame numbers of ctx.history from the pixels, read again after this
    frame's own (a frame overwritten meanwhile would differ), and whether each is
    a read-only view (not a copy)."""
    before = [read_frame_number(f) for f in ctx.history]
    own = read_frame_number(frame)
    after = [read_frame_number(f) for f in ctx.history]
    return {
        "own": own,
        "history": before,
        "after": after,
        "prev_is_newest": ctx.prev is (ctx.history[0] if ctx.history else None),
        "views": all(not f.flags.writeable and not f.flags.owndata for f in ctx.history),
    }


def nan_result(frame, out, ctx):
    import numpy as np

    return {"mean": float("nan"), "top": np.float32("inf"), "ok": 1.5, "list": [np.nan, 2.0]}
