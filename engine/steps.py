"""The ordered steps' process: after the analyzer pool, every frame once, in frame
order, through each step of `--then` in turn (a tracker, a counter: state kept
from frame to frame), with the results of the steps before it.

All ordered steps of a run share this one process: they run one after another on
each frame anyway, so a process each would add a hand-over per step and per frame
for no parallelism, and the ring's stage count (FE_MAX_STAGES) would cap how many
steps a run may have."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2

from engine import analyzer
from engine import control as ctl
from engine._ring import Ring, RingAborted
from engine.analysis import Context, resolve
from engine.analyzer import failure_report
from engine.slots import ERROR, LATE, OK, PRELUDE, SKIPPED, ResultError, SlotLayout, encode_result

SKIPPED_KEY = "_errors"  # in a frame's steps results: {step: error} of the steps that raised
TAKE_MAX = 16  # frames taken at once: one wake-up for a run of them
POOL_STATUS = {OK: "ok", LATE: "late", SKIPPED: "skipped", ERROR: "error"}


class Steps:
    """The steps of one run, built once, and where they are in the stream."""

    def __init__(self, cfg: ctl.RunConfig) -> None:
        self.layout: SlotLayout = cfg.layout
        self.pool_step = resolve(cfg.analyze).step
        self.steps: list[tuple[str, Callable[..., Any]]] = []
        for spec in cfg.then:
            a = resolve(spec)
            self.steps.append((a.step, a.make()))
        self.skip = cfg.on_error == "skip"
        self.epoch: int | None = None  # of the last frame seen: a new one is a seek

    def frame(self, ring: Ring, seq: int) -> None:
        """Run every step on item `seq` and store their results (or the error of
        the step that raised) in its slot."""
        layout = self.layout
        meta = layout.meta(ring, seq)
        meta["steps_len"], meta["steps_status"] = 0, OK
        if meta["status"] == PRELUDE:
            return  # context for the pool's lookback, not a frame of the stream
        failed = ring.failed(seq)
        status = "failed" if failed else POOL_STATUS.get(int(meta["status"]), "ok")
        if status == "error":
            return  # the display stops the run on it (or, skipped, it is "skipped")
        epoch = int(meta["epoch"])
        # a seek, or a live source that came back after a gap: not a continuation
        reset, self.epoch = epoch != self.epoch or meta["gap_ms"] > 0, epoch
        results: dict[str, Any] = {
            self.pool_step: layout.read_result(ring, seq, meta) if status == "ok" else None
        }
        frame = layout.frame(ring, seq, readonly=True)
        # the image shown: the analysis' output, or the frame when it worked in
        # place or its analyzer died
        out = (
            layout.out(ring, seq) if layout.separate_out and not failed else layout.frame(ring, seq)
        )
        ours: dict[str, Any] = {}
        analyzer.busy(int(meta["index"]))
        try:
            self._run_steps(ring, seq, meta, frame, out, status, reset, results, ours)
        finally:
            analyzer.busy(None)

    def _run_steps(self, ring, seq, meta, frame, out, status, reset, results, ours) -> None:
        layout = self.layout
        for name, step in self.steps:
            ctx = Context(
                frame_index=int(meta["index"]),
                pts=float(meta["pts"]),
                prev=None,
                worker=0,
                results=dict(results),
                status=status,
                reset=reset,
                gap=int(meta["gap_ms"]) / 1000,
            )
            try:
                result = step(frame, out, ctx)
                encode_result(result)  # what cannot be stored is said now, by step
            except Exception as e:
                report = (
                    {"error": f"returned {e}"} if isinstance(e, ResultError) else failure_report(e)
                )
                if not self.skip:
                    meta["steps_status"] = ERROR
                    layout.write_steps(ring, seq, meta, {"step": name, **report})
                    return
                # --on-error skip: no result for this frame; the display counts the error
                ours.setdefault(SKIPPED_KEY, {})[name] = report["error"]
                results[name] = ours[name] = None
                continue
            results[name] = ours[name] = result
        layout.write_steps(ring, seq, meta, ours)

    def close(self) -> dict[str, Any]:
        """The steps' summaries, by name, from those that have close()."""
        summaries = {}
        for name, step in self.steps:
            close = getattr(step, "close", None)
            if callable(close):
                summaries[name] = close()
        return summaries


def run(cfg: ctl.RunConfig) -> None:
    """Process body: every frame through the steps, in order, until the end of the
    stream; then the steps' summaries for the stats."""
    cv2.setNumThreads(1)  # the pool has the cores; the steps are meant to be cheap
    ring = Ring.open(cfg.ring_name)
    analyzer.BUSY = ctl.busy_record(ring, cfg.workers, 0)
    try:
        steps = Steps(cfg)
    except Exception as e:  # imported and checked in the parent: say why not here
        ctl.report_error(ring, str(e))
        ring.close()
        raise
    try:
        while True:
            try:
                seq, n = ring.take(cfg.steps_stage, max_n=TAKE_MAX)
            except (EOFError, RingAborted):
                break
            for s in range(seq, seq + n):
                steps.frame(ring, s)
            ring.done(cfg.steps_stage, seq, n)
        ctl.write_summary(ring, 0, steps.close())
    finally:
        ring.close()


__all__ = ["Steps", "run"]
