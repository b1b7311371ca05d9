"""An analyzer process: one member of the ring's pool, running the user's function
on each frame in place."""

from __future__ import annotations

import base64
import pickle
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from engine import control as ctl
from engine._ring import Ring, RingAborted
from engine.analysis import Analysis, Context, resolve
from engine.slots import ERROR, LATE, OK, PRELUDE, SKIPPED, ResultError, SlotLayout

STAGE = 1
BUSY = None  # this process's busy record (control.busy_record), set by run()


def busy(index: int | None) -> None:
    """Tell the supervisor that this process works on frame `index` from now on
    (None: it is done), for --step-timeout."""
    if BUSY is not None:
        if index is None:
            BUSY[0] = 0
        else:
            BUSY[1] = index
            BUSY[0] = time.monotonic_ns()


class Pacer:
    """Decides whether a frame is still worth analyzing: not if the analysis would
    end after the frame is due on the display's clock (it would be shown late, or
    not at all); the work goes to frames that can still be shown on time."""

    def __init__(self, shared) -> None:
        self.shared = shared
        self.expected_ns = 0.0  # this worker's recent analysis time (moving average)
        self.recent: deque[int] = deque(maxlen=8)  # its last few analysis times

    def too_late(self, index: int) -> bool:
        due = ctl.frame_due_ns(self.shared, index)
        if due is None:
            return False
        return time.monotonic_ns() + self.expected_ns > due

    def took(self, ns: int) -> None:
        self.recent.append(ns)
        self.expected_ns = ns if not self.expected_ns else 0.8 * self.expected_ns + 0.2 * ns

    def skipped(self) -> None:
        # One very slow frame must not make every later frame look hopeless: the
        # estimate decays while frames are skipped, but not below the quickest of the
        # last few analyses (below that it starts frames that then end late).
        self.expected_ns = max(0.8 * self.expected_ns, min(self.recent, default=0))


def history(
    ring: Ring, layout: SlotLayout, seq: int, meta: np.ndarray, lookback: int
) -> tuple[np.ndarray, ...]:
    """The up to `lookback` frames before item `seq`, newest first, as read-only
    views: the ring's lookback keeps them intact while `seq` is in flight. Only
    frames of the same epoch (none of before a seek) whose indices run on without a
    gap up to this one's."""
    frames = []
    epoch, index = meta["epoch"], meta["index"]
    for back in range(1, min(lookback, seq) + 1):
        before = layout.meta(ring, seq - back)
        if before["epoch"] != epoch or before["index"] != index - back:
            break
        frames.append(layout.frame(ring, seq - back, readonly=True))
    return tuple(frames)


def context(
    ring: Ring, layout: SlotLayout, seq: int, meta: np.ndarray, lookback: int, worker: int
) -> Context:
    """What the analysis is told of item `seq` besides its pixels."""
    past = history(ring, layout, seq, meta, lookback)
    return Context(
        frame_index=int(meta["index"]),
        pts=float(meta["pts"]),
        prev=past[0] if past else None,
        worker=worker,
        history=past,
        gap=int(meta["gap_ms"]) / 1000,
    )


def analyze_frame(
    ring: Ring,
    layout: SlotLayout,
    analysis: Analysis,
    seq: int,
    worker: int,
    skip: bool,
    pacer: Pacer | None = None,
    call: Callable[..., Any] | None = None,
) -> None:
    """Run the analysis on item `seq` (`call`: its function, or its class built in
    this process); record its result, or its error, in the slot."""
    meta = layout.meta(ring, seq)
    if meta["status"] == PRELUDE:
        return  # read only as the history of the frames after it
    frame = layout.frame(ring, seq, readonly=True)
    meta["worker"] = worker
    if pacer is not None and pacer.too_late(int(meta["index"])):
        meta["status"], meta["result_len"], meta["analysis_ns"] = LATE, 0, 0
        pacer.skipped()
        return
    if analysis.in_place:
        out = layout.frame(ring, seq)
    else:
        out = layout.out(ring, seq)
        np.copyto(out, frame)
    ctx = context(ring, layout, seq, meta, analysis.lookback, worker)
    t0 = time.perf_counter_ns()
    busy(ctx.frame_index)
    try:
        result = (call or analysis.fn)(frame, out, ctx)
    except Exception as e:  # the user's function: report, do not die
        meta["analysis_ns"] = time.perf_counter_ns() - t0
        report = failure_report(e)
    else:
        meta["analysis_ns"] = time.perf_counter_ns() - t0
        report = store(ring, layout, seq, meta, result)
    finally:
        busy(None)
    if report is not None:
        record_failure(ring, layout, seq, meta, report, skip, frame, out, analysis.in_place)
    if pacer is not None:
        pacer.took(int(meta["analysis_ns"]))


def store(ring: Ring, layout: SlotLayout, seq: int, meta: np.ndarray, result: Any) -> dict | None:
    """Record a result; None, or the report of a result that cannot be stored."""
    try:
        layout.write_result(ring, seq, meta, result)
    except ResultError as e:  # it returned what cannot be stored: say what
        return {"error": f"returned {e}"}
    meta["status"] = OK
    return None


def record_failure(
    ring: Ring,
    layout: SlotLayout,
    seq: int,
    meta: np.ndarray,
    report: dict,
    skip: bool,
    frame: np.ndarray,
    out: np.ndarray,
    in_place: bool,
) -> None:
    """The analysis failed on `seq`: an error that stops the run, or, skipped, the
    frame shown unanalyzed with the error kept for the count."""
    if skip:
        if not in_place:
            np.copyto(out, frame)  # show the frame unanalyzed
        report = {"error": report["error"]}
        meta["status"] = SKIPPED
    else:
        meta["status"] = ERROR
    layout.write_result(ring, seq, meta, report)


def analyze_batch(
    ring: Ring,
    layout: SlotLayout,
    analysis: Analysis,
    call: Callable[..., Any],
    seq: int,
    n: int,
    worker: int,
    skip: bool,
    pacer: Pacer | None,
) -> None:
    """Run a batch analysis on items [seq, seq + n): the frames it can still show
    in time, as runs of consecutive items, each one call with (k, h, w, 3) views
    into the ring (no copy)."""
    todo: list[int] = []
    for s in range(seq, seq + n):
        meta = layout.meta(ring, s)
        if meta["status"] == PRELUDE:
            continue
        meta["worker"] = worker
        if pacer is not None and pacer.too_late(int(meta["index"])):
            meta["status"], meta["result_len"], meta["analysis_ns"] = LATE, 0, 0
            pacer.skipped()
            continue
        todo.append(s)
    while todo:
        k = 1
        while k < len(todo) and todo[k] == todo[0] + k:
            k += 1
        run, todo = todo[:k], todo[k:]
        _batch_call(ring, layout, analysis, call, run[0], k, worker, skip, pacer)


def _batch_call(ring, layout, analysis, call, seq, k, worker, skip, pacer) -> None:
    frames = ring.views(seq, k, shape=layout.shape, readonly=True)
    if analysis.in_place:
        outs = ring.views(seq, k, shape=layout.shape)
    else:
        outs = ring.views(seq, k, shape=layout.shape, offset=layout.out_offset)
        np.copyto(outs, frames)
    metas = [layout.meta(ring, s) for s in range(seq, seq + k)]
    ctxs = [
        context(ring, layout, s, meta, analysis.lookback, worker)
        for s, meta in zip(range(seq, seq + k), metas, strict=True)
    ]
    t0 = time.perf_counter_ns()
    busy(ctxs[0].frame_index)
    try:
        results = call(frames, outs, ctxs)
        if results is None:
            results = [None] * k
        elif not isinstance(results, (list, tuple)) or len(results) != k:
            got = (
                f"{len(results)} results"
                if isinstance(results, (list, tuple))
                else "a " + (type(results).__name__)
            )
            raise ResultError(f"{got} for a batch of {k} frames; expected a list of {k}")
        report = None
    except ResultError as e:
        report = {"error": f"returned {e}"}
    except Exception as e:  # the user's function: report, do not die
        report = failure_report(e)
    finally:
        busy(None)
    each = (time.perf_counter_ns() - t0) // k
    for i, (s, meta) in enumerate(zip(range(seq, seq + k), metas, strict=True)):
        meta["analysis_ns"] = each
        failure = report if report is not None else store(ring, layout, s, meta, results[i])
        if failure is not None:
            record_failure(
                ring, layout, s, meta, dict(failure), skip, frames[i], outs[i], analysis.in_place
            )
    if pacer is not None:
        pacer.took(each)


def failure_report(e: Exception) -> dict:
    """An exception of the user's function as the display reads it: one line, the
    traceback, and the exception itself pickled (so the API can raise it again),
    all within a frame's result area."""
    report = {"error": f"raised {type(e).__name__}: {' '.join(str(e).split())}"[:2000]}
    report["traceback"] = traceback.format_exc()[-6000:]
    try:
        pickled = base64.b64encode(pickle.dumps(e)).decode()
        pickle.loads(base64.b64decode(pickled))  # what cannot come back is not sent
        if len(pickled) <= 4000:
            report["exception"] = pickled
    except Exception:
        pass
    return report


def run(cfg: ctl.RunConfig, worker: int) -> None:
    """Process body: take frames from the pool stage until the end of the stream;
    then the summary of the analysis' close(), if it is a class that has one."""
    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV threads would fight it
    global BUSY
    ring = Ring.open(cfg.ring_name)
    shared = ctl.shared_fields(ring)
    BUSY = ctl.busy_record(ring, cfg.workers, worker)
    try:
        analysis = resolve(cfg.analyze)
        call = analysis.make()  # a class: built once in this process
    except Exception as e:  # imported in the parent, but not here: say why
        ctl.report_error(ring, str(e))
        raise
    skip = cfg.on_error == "skip"
    pacer = Pacer(shared)
    try:
        while True:
            try:
                # a batch takes what is ready, up to its size: it never waits for more
                seq, n = ring.take(STAGE, max_n=analysis.batch)
            except (EOFError, RingAborted) as e:
                if isinstance(e, EOFError) and callable(getattr(call, "close", None)):
                    ctl.write_summary(ring, worker, {analysis.step: call.close()})
                break
            if analysis.batch > 1:
                analyze_batch(ring, cfg.layout, analysis, call, seq, n, worker, skip, pacer)
            else:
                for s in range(seq, seq + n):
                    analyze_frame(ring, cfg.layout, analysis, s, worker, skip, pacer, call)
            ring.done(STAGE, seq, n)
    finally:
        ring.close()
