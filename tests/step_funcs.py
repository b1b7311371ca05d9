"""Steps for tests/test_steps.py, imported by the run's processes as
`step_funcs:NAME` (the tests put this folder on PYTHONPATH)."""

import os
import time

from engine.analysis import analysis
from engine.sources import read_frame_number

BUILT = 0  # instances of Recorder made in this process


@analysis(ordered=True)
class Recorder:
    """An ordered step that remembers every frame it saw, in the order it saw them,
    with the pool's status for it and where it was told to reset; close() gives it
    all back (the stats JSON's summaries)."""

    def __init__(self, tag: str = "") -> None:
        global BUILT
        BUILT += 1
        self.tag = tag
        self.seen: list[int] = []
        self.statuses: dict[str, int] = {}
        self.resets: list[int] = []
        self.pixels_ok = True

    def __call__(self, frame, out, ctx):
        self.seen.append(ctx.frame_index)
        self.statuses[ctx.status] = self.statuses.get(ctx.status, 0) + 1
        if ctx.reset:
            self.resets.append(ctx.frame_index)
        if read_frame_number(frame) != ctx.frame_index:
            self.pixels_ok = False
        return {"i": ctx.frame_index, "pool": ctx.results.get("step_funcs:pool_index")}

    def close(self):
        return {
            "seen": self.seen,
            "statuses": self.statuses,
            "resets": self.resets,
            "built_in_process": BUILT,
            "pid": os.getpid(),
            "pixels_ok": self.pixels_ok,
            "tag": self.tag,
        }


def pool_index(frame, out, ctx):
    return {"index": ctx.frame_index}


@analysis(ordered=True)
def nothing(frame, out, ctx):
    """An ordered step that does nothing (its cost is the steps' overhead)."""
    return None


@analysis(ordered=True)
def raises_at_five(frame, out, ctx):
    if ctx.frame_index == 5:
        raise RuntimeError("step broke at five")
    return None


POOL_BUILT = 0


class PoolCounter:
    """A pool analysis as a class: built once per analyzer process."""

    def __init__(self) -> None:
        global POOL_BUILT
        POOL_BUILT += 1
        self.frames = 0

    def __call__(self, frame, out, ctx):
        self.frames += 1
        return {"worker": ctx.worker}

    def close(self):
        return {"frames": self.frames, "built_in_process": POOL_BUILT, "pid": os.getpid()}


@analysis(batch=4)
def batch_probe(frames, outs, ctxs):
    """Batches: their sizes, whether they are views into the ring (no copy), and
    the frame numbers in the pixels."""
    views = frames.base is not None and not frames.flags.owndata and not frames.flags.writeable
    return [
        {
            "size": len(frames),
            "view": bool(views),
            "pixels": read_frame_number(f),
            "index": c.frame_index,
            "address": int(frames.__array_interface__["data"][0]),
        }
        for f, c in zip(frames, ctxs, strict=True)
    ]


def hang_at_ten(frame, out, ctx):
    """Hangs on frame 10 (a model that never answers)."""
    if ctx.frame_index == 10:
        time.sleep(3600)
    return {"i": ctx.frame_index}


@analysis(ordered=True)
def seen(frame, out, ctx):
    """What an ordered step is told of each frame."""
    return {"i": ctx.frame_index, "reset": ctx.reset, "status": ctx.status}


HUNG = os.environ.get("FE_TEST_MARKER", "")


@analysis(ordered=True)
def hang_once_at_ten(frame, out, ctx):
    """An ordered step that hangs on frame 10, once per run (a marker file)."""
    if ctx.frame_index == 10 and HUNG and not os.path.exists(HUNG):
        open(HUNG, "w").close()
        time.sleep(3600)
    return {"i": ctx.frame_index, "reset": ctx.reset}
