"""What a run counts, shows in its HUD and progress bar, and reports at the end."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import deque

import numpy as np

from engine import control as ctl
from engine.sources import SourceInfo

RATE_WINDOW_S = 1.0
WARN_EVERY_S = 1.0  # a warning that keeps applying is repeated at most this often
SAMPLES_KEPT = 100_000  # values kept per figure: a run's memory must not grow with its length
RECENT = 300  # the HUD's figures are over the last this many frames
DISTINCT_ERRORS = 20  # analysis errors (type and message) told apart and kept, per run


def _percentiles(values, qs) -> list[float | None]:
    if not len(values):
        return [None] * len(qs)
    return [round(float(v), 3) for v in np.percentile(np.asarray(values, float), qs)]


class Samples:
    """One figure of every frame, in bounded memory: all values up to `kept` (55 min
    at 30 fps), then a uniform sample of them all (reservoir sampling), so the run's
    percentiles stay exact for shorter runs and unbiased for longer ones; and the
    last RECENT values."""

    def __init__(self, kept: int = SAMPLES_KEPT) -> None:
        self.count = 0
        self.recent: deque = deque(maxlen=RECENT)
        self._kept = np.empty(kept)  # pages are touched (and resident) as it fills
        self._random = random.Random(0)

    def add(self, value: float) -> None:
        self.recent.append(value)
        i = self.count
        if i >= len(self._kept):
            i = self._random.randrange(self.count + 1)
        if i < len(self._kept):
            self._kept[i] = value
        self.count += 1

    def values(self) -> np.ndarray:
        return self._kept[: min(self.count, len(self._kept))]


class RunStats:
    def __init__(self, info: SourceInfo, analysis: str, quiet: bool = False) -> None:
        self.info = info
        self.analysis = analysis
        self.quiet = quiet
        self.frames_shown = 0
        self.dropped_late = 0
        self.stalls = 0
        self.arrived_frames = 0
        self.failed = 0
        self.reanchors = 0
        self.not_analyzed_late = 0  # skipped by an analyzer: could not be shown in time
        self.display = "headless"
        self.discarded_seek = 0  # buffered frames of before a seek, released unseen
        self._hud: tuple[float, list[str]] = (-1.0, [])
        self._warned: dict[str, float] = {}  # warning -> when it was last given
        self.first_shown: float | None = None
        self.last_shown: float | None = None
        self.analysis_errors = 0
        self.step_errors = 0  # ordered steps that raised on a frame, under --on-error skip
        # --on-error skip: each distinct error (type and message) with its count and
        # first frame; past DISTINCT_ERRORS, errors are counted only
        self.errors: dict[str, dict] = {}
        # why the run ended: end, quit, interrupted, terminated, error, source lost
        self.ended = "end"
        self.seeks = 0
        self.output: dict | None = None  # --output: what the writer wrote (the supervisor's)
        self.analysis_ms = Samples()
        # A live run: each frame's age when shown (from the reader getting it), and
        # the frames not shown because they were older than --max-latency by then.
        self.latency_ms = Samples()
        self.dropped_latency = 0
        self.timing_error_ms = Samples()
        self.t_start = self.t_end = time.monotonic()
        self.final: dict | None = None
        self._rates: deque = deque()  # (time, read, analyzed, shown) for the HUD

    # ---- events ------------------------------------------------------------------

    def started(self) -> None:
        self.t_start = time.monotonic()

    def note(self, message: str) -> None:
        """One line on stderr (not with --quiet)."""
        if self.quiet:
            return
        line = f"frame-engine: {message}"
        if sys.stderr.isatty():  # a progress bar may be on the last line: above it
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """note() a warning that keeps applying at most once every WARN_EVERY_S."""
        now = time.monotonic()
        if now - self._warned.get(message, -math.inf) >= WARN_EVERY_S:
            self._warned[message] = now
            self.note(message)

    def warn_dry(self) -> None:
        self.warn("buffer ran dry: frames are not ready in time (analysis or decoding too slow)")

    def warn_late(self) -> None:
        self.warn("analysis too slow: frames it cannot finish before they are due are skipped")

    def analysis_error(self, index: int, error: str, step: str | None = None) -> None:
        """The analysis (or the ordered step `step`) failed on frame `index` and the
        run goes on (--on-error skip): say so once per distinct error, and keep
        count (a step's errors in step_errors: the frame itself was analyzed)."""
        what = f"analysis '{self.analysis}' {error}"
        if step is not None:
            self.step_errors += 1
            what = f"step '{step}' {error}"
            error = f"{error} (step '{step}')"  # kept apart from the analysis' own
        known = self.errors.get(error)
        if known is not None:
            known["count"] += 1
            return
        if len(self.errors) >= DISTINCT_ERRORS:
            return  # counted in analysis_errors, not told apart
        self.errors[error] = {"error": error, "count": 1, "first_frame": index}
        more = (
            ""
            if len(self.errors) < DISTINCT_ERRORS
            else "; further distinct errors are counted only"
        )
        done = "its result left out" if step else "frame shown unanalyzed"
        self.note(
            f"frame {index}: {what} "
            f"({done}; --on-error skip counts the same error again silently{more})"
        )

    def arrived(
        self, index: int, failed: bool, skipped: bool, late: bool, analysis_ns: int
    ) -> None:
        self.arrived_frames += 1
        if failed:
            self.failed += 1
        elif late:
            self.not_analyzed_late += 1
            self.warn_late()
        elif skipped:
            self.analysis_errors += 1
        else:
            self.analysis_ms.add(analysis_ns / 1e6)

    def warn_old(self, max_latency: float) -> None:
        self.warn(
            f"frames older than --max-latency {max_latency:g} s are dropped (the analysis "
            "or the display is behind the source)"
        )

    def shown(self, index: int, late_s: float, age_s: float | None = None) -> None:
        now = time.monotonic()
        if age_s is not None:
            self.latency_ms.add(age_s * 1000)
        if self.first_shown is None:
            self.first_shown = now
        self.last_shown = now
        self.frames_shown += 1
        self.timing_error_ms.add(late_s * 1000)

    # ---- live views ----------------------------------------------------------------

    def _counts(self, run) -> tuple[int, int, int]:
        st = run.ring.stats()
        context = self.context(run)
        return st[0]["items"] - context, self._analyzed(st, context), self.frames_shown

    def context(self, run) -> int:
        """Frames read only as context for an analysis that looks back (before a
        start or seek point): in the ring, but neither read to play, analyzed,
        shown nor dropped."""
        return int(run.shared[ctl.CONTEXT])

    def _analyzed(self, st, context: int) -> int:
        # Context frames go through the analyzers unanalyzed; they are the first of
        # their epoch, so by the end every one of them is through.
        # Frames whose analysis raised (--on-error skip) went through it unanalyzed too.
        lost = st[1]["failed"] + self.not_analyzed_late + self.analysis_errors
        return max(0, st[1]["items"] - lost - context)

    def rates(self, run) -> tuple[float, float, float]:
        """Frames per second of decode, analysis and display over the last second."""
        now = time.monotonic()
        self._rates.append((now, *self._counts(run)))
        while len(self._rates) > 2 and now - self._rates[1][0] >= RATE_WINDOW_S:
            self._rates.popleft()
        (t0, *a), (t1, *b) = self._rates[0], self._rates[-1]
        dt = max(t1 - t0, 1e-9)
        return tuple((y - x) / dt for x, y in zip(a, b, strict=True))

    def buffered(self, run) -> int:
        st = run.ring.stats()
        return st[0]["items"] - st[run.display_stage]["items"]

    def hud(self, run) -> list[str]:
        """The overlay's lines, recomputed at most 4 times a second."""
        now = time.monotonic()
        if now - self._hud[0] >= 0.25:
            self._hud = (now, self._hud_lines(run))
        return self._hud[1]

    def _hud_lines(self, run) -> list[str]:
        dec, ana, disp = self.rates(run)
        buf = self.buffered(run)
        p50, p95 = _percentiles(self.analysis_ms.recent, [50, 95])
        lines = [
            f"{self.info.spec}  {self.info.width}x{self.info.height} @ {self.info.fps:g} fps",
            f"fps: decode {dec:.0f}  analysis {ana:.0f}  display {disp:.0f}",
            f"buffer: {buf} frames ({buf / self.info.fps:.2f} s)",
            f"dropped: late {self.dropped_late}  source {run.shared[ctl.DROPPED_SOURCE]}  "
            f"failed {self.failed}  seek {self.discarded_seek}  stalls {self.stalls}",
            f"analysis '{self.analysis}': p50 {p50 or 0:.1f} ms  p95 {p95 or 0:.1f} ms",
        ]
        if run.max_latency is not None:
            l50, l99 = _percentiles(self.latency_ms.recent, [50, 99])
            lines.append(
                f"latency: p50 {l50 or 0:.0f} ms  p99 {l99 or 0:.0f} ms  "
                f"(too old: {self.dropped_latency}; reconnects {run.shared[ctl.RECONNECTS]})"
            )
        attempt = reconnecting(run)
        if attempt:
            lines.append(f"reconnecting (attempt {attempt})")
        return lines

    def postfix(self, run) -> str:
        text = f"buffer {self.buffered(run)}, dropped {self.dropped_late}, stalls {self.stalls}"
        attempt = reconnecting(run)
        return f"reconnecting (attempt {attempt}), {text}" if attempt else text

    # ---- the end --------------------------------------------------------------------

    def finished(self, run) -> None:
        """Freeze the figures while the ring still exists."""
        self.t_end = time.monotonic()
        st = run.ring.stats()
        wall = max(self.t_end - self.t_start, 1e-9)
        context = self.context(run)
        read, analyzed = st[0]["items"] - context, self._analyzed(st, context)
        a50, a95 = _percentiles(self.analysis_ms.values(), [50, 95])
        # The reader says what it decoded when it stops; a run stopped before that
        # (q, Ctrl-C, an error) counts what it published.
        decoded = int(run.shared[ctl.DECODED]) or st[0]["items"] + int(
            run.shared[ctl.DROPPED_SOURCE]
        )
        # Every frame read was shown, dropped late or too old, discarded by a seek, or
        # was still in the buffer (or on its way to the display) when the run stopped.
        gone = self.frames_shown + self.dropped_late + self.dropped_latency + self.discarded_seek
        left = max(0, read - gone)
        e50, e99 = _percentiles(self.timing_error_ms.values(), [50, 99])
        l50, l99 = _percentiles(self.latency_ms.values(), [50, 99])
        self.final = {
            "source": self.info.spec,
            "analysis": self.analysis,
            "workers": run.workers,
            "display": self.display,
            "frames_read": read,
            "frames_analyzed": analyzed,
            "frames_shown": self.frames_shown,
            "dropped_late": self.dropped_late,
            "dropped_latency": self.dropped_latency,
            "dropped_source": int(run.shared[ctl.DROPPED_SOURCE]),
            "stalls": self.stalls,
            "failed": self.failed,
            "analysis_errors": self.analysis_errors,
            "step_errors": self.step_errors,
            "summaries": run.summaries(),
            "errors": list(self.errors.values()),
            "not_analyzed_late": self.not_analyzed_late,
            "discarded_seek": self.discarded_seek,
            "context_frames": context,
            "declared_frames": self.info.declared_frames,
            "decoded_frames": decoded,
            "left_unplayed": left,
            "seeks": self.seeks,
            "ended": self.ended,
            "source_fps": self.info.fps,
            "wall_s": round(wall, 3),
            "fps": {
                "decode": round(read / wall, 2),
                "analysis": round(analyzed / wall, 2),
                "display": round(self.frames_shown / wall, 2),
                # from the first frame shown to the last: without start-up
                "display_steady": round(
                    (self.frames_shown - 1) / (self.last_shown - self.first_shown), 2
                )
                if self.frames_shown > 1 and self.last_shown > self.first_shown
                else None,
            },
            "startup_s": None
            if self.first_shown is None
            else round(self.first_shown - self.t_start, 3),
            "analysis_ms": {"p50": a50, "p95": a95},
            "timing_error_ms": {"p50": e50, "p99": e99},
            "reanchors": self.reanchors,
            # a live run: the age of the frames shown, from the reader getting them
            "latency_ms": {
                "p50": l50,
                "p99": l99,
                # --max-latency (None: not live, or inf: no limit, which JSON cannot say)
                "max": run.max_latency * 1000
                if run.max_latency is not None and math.isfinite(run.max_latency)
                else None,
            },
            "reconnects": int(run.shared[ctl.RECONNECTS]),
            "lost_s": round(int(run.shared[ctl.LOST_MS]) / 1000, 3),
            "output": self.output,
        }

    def as_dict(self) -> dict:
        return dict(self.final or {})

    def write_json(self, path: str) -> None:
        if self.final is None:
            return
        with open(path, "w") as f:
            json.dump(self.final, f, indent=1)
            f.write("\n")


def summary_line(s: dict) -> str:
    """The run in one line, for the end of a headless run: where every frame read
    went, and the steady display rate."""
    fps = s["fps"]["display_steady"] or s["fps"]["display"]
    late = f"{s['dropped_late']} dropped late"
    if s["not_analyzed_late"]:
        late += f" ({s['not_analyzed_late']} not analyzed in time)"
    parts = [f"{s['frames_shown']} shown", late]
    if s["dropped_latency"]:
        parts.append(f"{s['dropped_latency']} dropped too old")
    if s["discarded_seek"]:
        parts.append(f"{s['discarded_seek']} discarded by seeks")
    if s["left_unplayed"]:
        parts.append(f"{s['left_unplayed']} left unplayed")
    line = (
        f"{s['frames_read']} frame{'' if s['frames_read'] == 1 else 's'} read: "
        + ", ".join(parts)
        + f"; {fps:.1f} fps"
        f" in {s['wall_s']:.2f} s"
    )
    if s["dropped_source"]:
        line += f"; {s['dropped_source']} dropped at the source"
    line += f"; {s['stalls']} stalls; {s['failed']} failed"
    if s["analysis_errors"]:
        line += f"; {s['analysis_errors']} analysis errors skipped"
    if s["step_errors"]:
        line += f"; {s['step_errors']} step errors skipped"
    if s["latency_ms"]["p99"] is not None:
        line += f"; latency p50 {s['latency_ms']['p50']:.0f} ms p99 {s['latency_ms']['p99']:.0f} ms"
    if s["reconnects"]:
        line += f"; {s['reconnects']} reconnects ({s['lost_s']:.1f} s lost)"
    if s["ended"] in ENDED:  # interrupted, terminated: the line after says so
        line += f" ({ENDED[s['ended']]})"
    return line


ENDED = {
    "quit": "stopped by the user",
    "error": "stopped by an error",
    "source lost": "the source was lost",
}


def reconnecting(run) -> int:
    """The attempt under way to reopen a live source that stopped; 0 if none."""
    return int(run.shared[ctl.RECONNECTING])
