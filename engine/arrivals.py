"""The display stage's side of the ring: frames as they arrive there, in order.

`Arrivals` is the one owner of what the display has taken from the ring and not
yet given back: the sequences taken but not looked at (pending), the frames looked
at and waiting to be shown or dropped (ready), the epoch of the last seek and the
end of the stream.  The player loop and the untimed API path both go through it:
take, accept (a `FrameRecord`, or None for a frame that is not to be shown),
release."""

from __future__ import annotations

import base64
import pickle
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import control as ctl
from engine.errors import AnalysisFailed, RemoteTraceback
from engine.slots import ERROR, LATE, NOT_SHOWN, PRELUDE, SKIPPED
from engine.steps import SKIPPED_KEY

if TYPE_CHECKING:
    from engine.supervisor import Run


@dataclass
class FrameRecord:
    """A frame that reached the display: where it is in the ring and what its
    analysis made of it."""

    seq: int  # its sequence in the ring (its slot is held until released)
    index: int  # its number in the source
    pts: float  # its time in seconds
    failed: bool  # its analyzer died: moved on unanalyzed
    late: bool  # an analyzer skipped it: it could not be finished before it was due
    skipped: bool  # the analysis raised and the run goes on (--on-error skip)
    result: Any  # what the analysis returned (the error, where skipped); None if none ran
    analysis_ns: int  # how long its analysis took; 0 unless an analyzer ran on it
    steps: dict | None = None  # the ordered steps' results, by step name (a run with --then)
    read_at: float = 0.0  # when the reader got it (time.monotonic()): its age is counted from it
    gap_ms: int = 0  # a live source came back just before it, after losing this much

    @property
    def analyzed(self) -> bool:
        return not (self.failed or self.late or self.skipped)

    @property
    def status(self) -> str:
        """As `engine.Frame` tells it: ok, skipped (late or the analysis raised), or
        failed."""
        return "failed" if self.failed else "ok" if self.analyzed else "skipped"


class Arrivals:
    """The frames of one run's display stage, from the ring to release."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.ring = run.ring
        self.stage = run.display_stage
        self.epoch = 0  # frames of an earlier epoch came before a seek: stale
        self.eof = False  # the ring said the stream ended and every frame was taken
        self._pending: deque[int] = deque()  # sequences taken from the ring, not yet looked at
        self._ready: deque[FrameRecord] = deque()  # accepted, in order, not yet shown or dropped

    # ---- from the ring ---------------------------------------------------------

    def take(self, timeout: float = 0) -> None:
        """Take the frames the display may have (never waits unless told)."""
        try:
            seq, n = self.ring.take(self.stage, max_n=self.run.slots, timeout=timeout)
        except TimeoutError:
            return
        except EOFError:
            self.eof = True
            return
        self._pending.extend(range(seq, seq + n))

    def accept_taken(self) -> Iterator[FrameRecord]:
        """Look at every frame taken, in order: each one accepted is queued as ready
        and given to the caller as it is (an analysis error raises at its frame,
        after the frames before it were given)."""
        while self._pending:
            record = self._accept(self._pending.popleft())
            if record is not None:
                self._ready.append(record)
                yield record

    def next(self, timeout: float) -> FrameRecord | None:
        """The next frame in order, accepted and not queued (the caller releases it);
        None when none came within `timeout`.  The untimed path: as fast as they come."""
        while True:
            if not self._pending:
                self.take(timeout)
                if not self._pending:
                    return None
            record = self._accept(self._pending.popleft())
            if record is not None:
                return record

    def _accept(self, seq: int) -> FrameRecord | None:
        """Look at a frame as it reaches the display: a frame read only as context
        (for an analysis that looks back) or of a stale epoch (before a seek) is
        released at once (returns None); an analysis error stops the run; the
        frame's figures are counted, in frame order."""
        run = self.run
        meta = run.layout.meta(self.ring, seq)
        if meta["status"] == PRELUDE:  # counted by the reader (context_frames)
            self.release(seq)
            return None
        if meta["epoch"] != self.epoch:
            self.release(seq)
            run.stats.discarded_seek += 1
            return None
        failed = self.ring.failed(seq)
        status = int(meta["status"])
        late = status == LATE and not failed
        skipped = status == SKIPPED and not failed
        result = None if failed or late else run.layout.read_result(self.ring, seq, meta)
        index = int(meta["index"])
        if status == ERROR and not failed:
            self._analysis_failed(index, result)
        if skipped:
            run.stats.analysis_error(index, result["error"])
        steps = None
        if run.layout.steps:
            steps = run.layout.read_steps(self.ring, seq, meta)
            if int(meta["steps_status"]) == ERROR:
                self._analysis_failed(index, steps, what=f"step '{steps.pop('step')}'")
            skipped_steps = steps.pop(SKIPPED_KEY, {}) if steps else {}
            for name, error in skipped_steps.items():  # --on-error skip: said once, counted
                run.stats.analysis_error(index, error, step=name)
        run.stats.arrived(index, failed, skipped, late, int(meta["analysis_ns"]))
        return FrameRecord(
            seq=seq,
            index=index,
            pts=float(meta["pts"]),
            failed=failed,
            late=late,
            skipped=skipped,
            result=result,
            analysis_ns=int(meta["analysis_ns"]),
            steps=steps,
            read_at=float(meta["read_at"]),
            gap_ms=int(meta["gap_ms"]),
        )

    def _analysis_failed(self, index: int, report: dict, what: str | None = None) -> None:
        """Stop the run: the analysis raised (or returned what cannot be stored) on
        frame `index`. The user's exception, where it came back from the analyzer,
        is the cause, with the traceback there as its own cause."""
        run = self.run
        what = what or f"analysis '{run.analysis.name}'"
        error = AnalysisFailed(
            f"{run.info.spec}: frame {index}: {what} {report['error']}",
            frame=index,
            detail=report.get("traceback"),
        )
        cause = None
        if "exception" in report:
            try:
                cause = pickle.loads(base64.b64decode(report["exception"]))
            except Exception:  # a class the parent cannot import: the text will do
                cause = None
        if report.get("traceback"):
            remote = RemoteTraceback(report["traceback"])
            if isinstance(cause, BaseException):
                cause.__cause__ = remote
            else:
                cause = remote
        raise error from cause

    # ---- the frames ready ---------------------------------------------------------

    def __len__(self) -> int:
        """How many frames are ready."""
        return len(self._ready)

    def peek(self, i: int = 0) -> FrameRecord | None:
        """The i-th frame ready (0: the next to show), or None."""
        return self._ready[i] if i < len(self._ready) else None

    def pop(self) -> FrameRecord:
        """The next frame ready, now the caller's to show or drop (and release)."""
        return self._ready.popleft()

    def idle(self) -> bool:
        """Nothing ready, nothing taken and not yet looked at."""
        return not self._ready and not self._pending

    def ended(self) -> bool:
        """Every frame of the stream, or of this epoch's, came and went: nothing
        ready or pending, and the ring ended or the source is done."""
        return self.idle() and (self.eof or self.source_done())

    def source_done(self) -> bool:
        """The reader reached the end in this epoch and the display has taken all it
        published (the stream itself stays open while a seek is possible)."""
        if self.run.shared[ctl.SOURCE_END] != self.epoch + 1:
            return False
        st = self.ring.stats()
        return st[0]["items"] == st[self.stage]["taken"]

    # ---- back to the ring ----------------------------------------------------------

    def release(self, seq: int, shown: int = NOT_SHOWN) -> None:
        """The display is done with frame `seq` (in sequence order); `shown` tells
        the writer, after it, what became of it (slots.NOT_SHOWN, SHOWN, DROPPED)."""
        if self.run.writer_stage:
            self.run.layout.meta(self.ring, seq)["shown"] = shown
        self.ring.done(self.stage, seq)

    def image(self, record: FrameRecord) -> np.ndarray:
        """What is shown for a frame: the analysis output, or the frame itself when
        the analysis worked in place or its analyzer died."""
        layout = self.run.layout
        if record.failed or not layout.separate_out:
            return layout.frame(self.ring, record.seq, readonly=True)
        return layout.out(self.ring, record.seq, readonly=True)

    # ---- seeking ---------------------------------------------------------------------

    def new_epoch(self, target: int) -> None:
        """Ask the reader for frame `target`: what is buffered is now stale (release
        the frame on screen, then call discard())."""
        self.epoch += 1
        shared = self.run.shared
        shared[ctl.SEEK_TO] = target
        shared[ctl.EPOCH] = self.epoch
        self.eof = False

    def discard(self) -> None:
        """Release the frames buffered, counted as discarded by a seek: the accepted
        ones, then those not looked at yet (done() goes in sequence order)."""
        for record in self._ready:
            self.release(record.seq)
        for seq in self._pending:
            self.release(seq)
        self.run.stats.discarded_seek += len(self._ready) + len(self._pending)
        self._ready.clear()
        self._pending.clear()
