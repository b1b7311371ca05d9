"""The supervisor: sets up a run (ring, reader, analyzer pool), shows or collects the
frames in order on the display's clock, watches the children, and on every way out
stops them and removes the segment."""

from __future__ import annotations

import base64
import json
import math
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from engine import control as ctl
from engine._ring import Ring
from engine.analysis import importing, resolve
from engine.clock import REANCHOR_S, Clock
from engine.display import (
    PAUSE,
    QUIT,
    SEEK_BACK,
    SEEK_FORWARD,
    STATS,
    STEP,
    HeadlessView,
    WindowView,
    display_available,
    position_text,
)
from engine.errors import AnalysisFailed, RemoteTraceback, RunError, refuse_nested_run
from engine.procs import Child
from engine.segments import clean_stale
from engine.slots import ERROR, LATE, PRELUDE, SKIPPED, SlotLayout
from engine.sources import PLAUSIBLE_FPS, SourceInfo, probe
from engine.stats import RunStats

DISPLAY_STAGE = 2
PREROLL = 4  # frames buffered before the clock starts
SUPERVISE_S = 0.05  # how often the children are checked
SEEK_S = 5.0
SPIN_S = 0.0004  # the last stretch before a frame is due is waited awake (timing error)
IDLE_WAIT_S = 0.004  # the longest the display waits for a frame between looks at keys
STARVED_LEAD_S = 0.05  # after a stall, the clock restarts this far ahead of now
LIVE_LEAD_S = 0.05  # a live source's clock starts (and catches up) this far ahead of now
JOIN_S = 1.5  # children get this long to stop before they are killed
MAX_DEATHS = 3  # analyzer deaths in a row, with no frame finished between, end the run


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C, through every cleanup."""


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) - 1)


@dataclass
class PlayOptions:
    source: str | int | None = "demo"
    analyze: str | Callable[..., Any] = "none"  # a name, or a function in a module
    workers: int | None = None
    buffer: int | None = None  # frames; default 2 s of video
    max_memory: int = 512 * 2**20
    batch: int = 3
    speed: float = 1.0
    fps: float | None = None  # None: the source's rate
    untimed: bool = False
    start: float = 0.0
    frames: int | None = None
    headless: bool | None = None  # None: headless where there is no display
    live: bool | None = None  # None: as the source says (a camera, a stream)
    output: str | None = None
    results: str | None = None
    stats_json: str | None = None
    quiet: bool = False
    debug: bool = False
    on_error: str = "stop"

    def check(self) -> None:
        """Refuse options out of range, naming the option."""
        if self.workers is not None and not 1 <= self.workers <= 64:
            raise RunError(f"--workers {self.workers}: must be from 1 to 64", exit_code=2)
        if self.buffer is not None and not 2 <= self.buffer <= 4096:
            raise RunError(f"--buffer {self.buffer}: must be from 2 to 4096 frames", exit_code=2)
        if not 1 <= self.batch <= 64:
            raise RunError(f"--batch {self.batch}: must be from 1 to 64", exit_code=2)
        if not (math.isfinite(self.speed) and 0.01 <= self.speed <= 100):
            raise RunError(f"--speed {self.speed}: must be from 0.01 to 100", exit_code=2)
        if self.fps is not None and not (
            math.isfinite(self.fps) and PLAUSIBLE_FPS[0] <= self.fps <= PLAUSIBLE_FPS[1]
        ):
            low, high = PLAUSIBLE_FPS
            raise RunError(f"--fps {self.fps}: must be from {low:g} to {high:g}", exit_code=2)
        if not (math.isfinite(self.start) and self.start >= 0):
            raise RunError(f"--start {self.start}: must be 0 or more seconds", exit_code=2)
        if self.frames is not None and self.frames < 1:
            raise RunError(f"--frames {self.frames}: must be at least 1", exit_code=2)
        if self.max_memory < 2**20:
            raise RunError(f"--max-memory {self.max_memory}: must be at least 1 MiB", exit_code=2)
        if self.on_error not in ("stop", "skip"):
            raise RunError(f"--on-error {self.on_error}: must be stop or skip", exit_code=2)
        for option, path in (
            ("--output", self.output),
            ("--results", self.results),
            ("--stats-json", self.stats_json),
        ):
            if path is not None:
                folder = os.path.dirname(os.path.abspath(path))
                if not os.path.isdir(folder):
                    raise RunError(f"{option} {path}: no such folder {folder}", exit_code=2)
                if not os.access(folder, os.W_OK) or os.path.isdir(path):
                    raise RunError(f"{option} {path}: cannot write there", exit_code=2)


def ring_slots(frames: int, lookback: int, slot_bytes: int, max_memory: int) -> int:
    """A power of two that holds `frames` (plus lookback), within max_memory."""
    slots = 2
    while slots < frames + lookback:
        slots *= 2
    while slots > 2 and slots * slot_bytes > max_memory:
        slots //= 2
    if slots * slot_bytes > max_memory or slots < lookback + 2:
        raise RunError(
            f"--max-memory {max_memory // 2**20} MiB: too small for two frames of "
            f"{slot_bytes / 2**20:.1f} MiB",
            exit_code=2,
        )
    return slots


@dataclass
class Shown:
    """The frame on screen: its slot is held until the next one replaces it."""

    seq: int
    index: int


@dataclass
class Run:
    """One run of the pipeline, from set-up to clean-up."""

    opts: PlayOptions
    info: SourceInfo = field(init=False)
    stats: RunStats = field(init=False)

    def __post_init__(self) -> None:
        refuse_nested_run(importing())  # before anything is made: nothing to undo
        opts = self.opts
        opts.check()
        spec = "demo" if opts.source is None else opts.source
        self.info = probe(spec, opts.fps)
        self.analysis = resolve(opts.analyze)  # import errors surface here, once
        self.live = self.info.live if opts.live is None else opts.live
        self.workers = opts.workers or default_workers()
        self.layout = SlotLayout(self.info.height, self.info.width, not self.analysis.in_place)
        buffer = opts.buffer or max(PREROLL * 2, math.ceil(2 * self.info.fps))
        self.slots = ring_slots(
            buffer + 1, self.analysis.lookback, self.layout.slot_bytes, opts.max_memory
        )
        if opts.start and self.info.live:
            raise RunError(
                f"--start {opts.start}: {self.info.spec} is live, it cannot start later",
                exit_code=2,
            )
        self.start_frame = round(opts.start * self.info.fps)
        declared = self.info.declared_frames
        if declared and self.start_frame >= declared:
            length = declared / self.info.fps
            raise RunError(f"--start {opts.start}: the source has {length:.1f} s", exit_code=2)
        self.stats = RunStats(self.info, self.analysis.name, opts.quiet)
        for note in self.info.notes:
            self.stats.note(f"{self.info.spec}: {note}")
        self.ring: Ring | None = None
        self.procs: dict[str, Child] = {}
        self.epoch = 0
        self.eof = False
        # Where a window will open, the user can seek back after the source ended.
        self.seekable = (
            self.info.seekable
            and not (self.live or opts.untimed or opts.headless)
            and display_available()
        )
        self.deaths, self.progress_at_death = 0, -1  # analyzer deaths with no frame between
        self.reader_deaths, self.reader_progress = 0, -1  # the same for the reader

    # ---- set-up and clean-up ------------------------------------------------

    def start(self) -> None:
        clean_stale()  # segments of runs whose parent was killed
        try:
            self.ring = Ring.create(
                slots=self.slots,
                slot_bytes=self.layout.slot_bytes,
                stages=("pool", "ordered"),
                lookback=self.analysis.lookback,
                user_bytes=ctl.USER_BYTES,
            )
        except OSError as e:  # /dev/shm full or too small (containers often give 64 MiB)
            size = self.slots * self.layout.slot_bytes / 2**20
            raise RunError(
                f"cannot make a {size:.0f} MiB frame buffer in /dev/shm ({os.strerror(e.errno)}): "
                "lower --buffer or --max-memory, or give /dev/shm more room"
            ) from None
        self.shared = ctl.shared_fields(self.ring)
        self.cfg = ctl.RunConfig(
            ring_name=self.ring.name,
            layout=self.layout,
            source=self.info,
            analyze=self.analysis.name,
            # a batch must fit beside the frame on screen and the lookback behind it
            batch=max(1, min(self.opts.batch, self.slots - 1 - self.analysis.lookback)),
            live=self.live,
            pace_fps=self.info.fps * self.opts.speed if self.live and not self.info.live else None,
            start_frame=self.start_frame,
            max_frames=self.opts.frames,
            lookback=self.analysis.lookback,
            on_error=self.opts.on_error,
            seekable=self.seekable,
        )
        self._spawn("reader", "fe-reader", "engine.reader:run", (self.cfg,))
        for w in range(1, self.workers + 1):
            self._spawn_analyzer(w)
        self.stats.started()

    def _spawn(self, role: str, name: str, target: str, args: tuple) -> None:
        self.procs[role] = Child(name, target, args, debug=self.opts.debug)

    def _spawn_analyzer(self, worker: int) -> None:
        self._spawn(
            f"analyzer-{worker}", f"fe-analyze-{worker}", "engine.analyzer:run", (self.cfg, worker)
        )

    def stop(self) -> None:
        """Stop every child within JOIN_S and remove the segment; safe to call twice."""
        if self.ring is None:
            return
        self.ring.abort()
        deadline = time.monotonic() + JOIN_S
        for p in self.procs.values():
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs.values():
            if p.is_alive():
                p.kill()
                p.join(1.0)
        self.ring.close()
        self.ring.unlink()
        self.ring = None

    # ---- supervision ----------------------------------------------------------

    def supervise(self) -> None:
        """Replace dead analyzers (their frames move on, flagged failed) and a dead
        reader of a seekable source (it goes on after the last frame published); a
        reader of a live source that died, or one that dies again and again, ends
        the run."""
        for role, p in list(self.procs.items()):
            if p.is_alive():
                continue
            why = ctl.reported_error(self.ring)
            if role == "reader":
                if not self.shared[ctl.READER_DONE]:
                    self._restart_reader(p, why)
                continue
            if p.exitcode == 0 and self.ring.end_seq is not None:
                continue  # finished with the stream
            moved = self.ring.reclaim(p.pid)
            st = self.ring.stats(1)
            progress = st["items"] - st["failed"]  # frames analyzed, not moved on by reclaim
            self.deaths = self.deaths + 1 if progress == self.progress_at_death else 1
            self.progress_at_death = progress
            if self.deaths >= MAX_DEATHS:  # dies at start, or on every frame: do not loop
                raise RunError(
                    f"analysis '{self.analysis.name}': the analyzer died {self.deaths} times "
                    f"in a row without finishing a frame ({exit_text(p.exitcode)})"
                    + (f": {why}" if why else "")
                )
            self.stats.note(
                f"analyzer {role[9:]} (pid {p.pid}) died ({exit_text(p.exitcode)}); "
                f"{moved} frame(s) move on unanalyzed; restarted"
            )
            self._spawn_analyzer(int(role[9:]))

    def _restart_reader(self, p: Child, why: str | None) -> None:
        died = f"the reader process died ({exit_text(p.exitcode)})" + (f": {why}" if why else "")
        published = self.ring.stats(0)["items"]
        self.reader_deaths = self.reader_deaths + 1 if published == self.reader_progress else 1
        self.reader_progress = published
        # A file or the demo can be read again from any frame; a camera or a stream
        # cannot, and a live run has moved on meanwhile.
        restartable = self.info.kind in ("file", "demo") and not self.live
        if not restartable or why or self.reader_deaths >= MAX_DEATHS:
            raise RunError(f"{self.info.spec}: {died}")
        self.ring.reclaim(p.pid)  # frees the producer role; what it claimed is abandoned
        index, epoch, resume_at = self.start_frame, 0, None
        if published:  # go on after the last frame it published, in that frame's epoch
            meta = self.layout.meta(self.ring, published - 1)
            index, epoch = int(meta["index"]) + 1, int(meta["epoch"])
            resume_at = index
        remaining = self.cfg.max_frames
        if remaining is not None and epoch == 0:  # what it published, less the context
            remaining = max(0, remaining - (published - int(self.shared[ctl.CONTEXT])))
        self.cfg = replace(
            self.cfg,
            # frames before the epoch's start or seek point are still context
            start_frame=self.start_frame if epoch == 0 else int(self.shared[ctl.SEEK_TO]),
            resume_at=resume_at,
            start_epoch=epoch,
            max_frames=remaining,
            decoded_before=published if epoch == 0 else 0,
        )
        self.stats.note(f"{died}; restarted at frame {index}")
        self._spawn("reader", "fe-reader", "engine.reader:run", (self.cfg,))

    # ---- frames in order ------------------------------------------------------

    def _take(self, pending: deque, timeout: float = 0) -> None:
        """Move frames ready for the display into `pending` (never waits unless told)."""
        try:
            seq, n = self.ring.take(DISPLAY_STAGE, max_n=self.slots, timeout=timeout)
        except TimeoutError:
            return
        except EOFError:
            self.eof = True
            return
        pending.extend(range(seq, seq + n))

    def source_done(self) -> bool:
        """The reader reached the end in this epoch and the display has taken all it
        published (the stream itself stays open while a seek is possible)."""
        if self.shared[ctl.SOURCE_END] != self.epoch + 1:
            return False
        st = self.ring.stats()
        return st[0]["items"] == st[DISPLAY_STAGE]["taken"]

    def _release(self, seq: int) -> None:
        self.ring.done(DISPLAY_STAGE, seq)

    def _meta(self, seq: int):
        return self.layout.meta(self.ring, seq)

    def _accept(self, seq: int) -> dict | None:
        """Look at a frame as it reaches the display: a frame read only as context
        (for an analysis that looks back) or of a stale epoch (before a seek) is
        released at once (returns None); an analysis error stops the run; results
        are recorded, in frame order."""
        meta = self._meta(seq)
        if meta["status"] == PRELUDE:  # counted by the reader (context_frames)
            self._release(seq)
            return None
        if meta["epoch"] != self.epoch:
            self._release(seq)
            self.stats.discarded_seek += 1
            return None
        failed = self.ring.failed(seq)
        status = int(meta["status"])
        late = status == LATE and not failed
        result = None if failed or late else self.layout.read_result(self.ring, seq, meta)
        index = int(meta["index"])
        if status == ERROR and not failed:
            self._analysis_failed(index, result)
        if status == SKIPPED and not failed:
            self.stats.analysis_error(index, result["error"])
        self.stats.arrived(index, failed, status == SKIPPED, late, int(meta["analysis_ns"]))
        analyzed = not (failed or late or status == SKIPPED)
        return {
            "seq": seq,
            "index": index,
            "pts": float(meta["pts"]),
            "failed": failed,
            "late": late,
            "result": result,
            "analyzed": analyzed,
            "analysis_ns": int(meta["analysis_ns"]),  # 0 unless an analyzer ran on it
        }

    def _analysis_failed(self, index: int, report: dict) -> None:
        """Stop the run: the analysis raised (or returned what cannot be stored) on
        frame `index`. The user's exception, where it came back from the analyzer,
        is the cause, with the traceback there as its own cause."""
        error = AnalysisFailed(
            f"{self.info.spec}: frame {index}: analysis '{self.analysis.name}' {report['error']}",
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

    def image(self, frame: dict) -> np.ndarray:
        """What is shown for a frame: the analysis output, or the frame itself when
        the analysis worked in place or its analyzer died."""
        if frame["failed"] or not self.layout.separate_out:
            return self.layout.frame(self.ring, frame["seq"], readonly=True)
        return self.layout.out(self.ring, frame["seq"], readonly=True)

    def frames(self) -> Iterator[dict]:
        """Every frame in order, as fast as they come (the untimed path)."""
        pending: deque = deque()
        while True:
            if not pending:
                if self.eof:
                    return
                self._take(pending, timeout=SUPERVISE_S)
                self.supervise()
                continue
            frame = self._accept(pending.popleft())
            if frame is not None:
                yield frame
                self._release(frame["seq"])


def exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Player:
    """Runs a Run on the display's clock, in a window or headless."""

    def __init__(self, run: Run) -> None:
        self.run = run
        opts = run.opts
        self.untimed = opts.untimed
        self.clock = Clock(run.info.fps, opts.speed)
        self.hud = False
        self.shown: Shown | None = None
        self.last_stall_due: int | None = None
        self.last_index: int | None = None  # the newest frame shown or dropped
        self.writer = None
        self.results = None
        headless = opts.headless
        if headless is None:
            headless = not display_available()
            if headless:
                run.stats.note("no display: running headless")
        self.step_pending = False
        self.show_next = False  # paused and sought: show the first frame that comes
        self.pending: deque = deque()  # seqs taken from the ring, not yet looked at
        self.ready: deque = deque()  # accepted frames (dicts), in order, not yet shown
        declared = run.info.declared_frames
        self.duration = declared / run.info.fps if declared else None
        self.where: str | None = None  # position_text() of the frame on screen
        self.analysis_s: deque[float] = deque(maxlen=8)  # the last few analysis times
        self.skipping_since: float | None = None  # live: every frame since was skipped
        self.view = None
        if not headless:
            try:
                self.view = WindowView(run.info.width, run.info.height, self.title("playing"))
            except Exception as e:  # no usable video driver after all
                run.stats.note(f"cannot open a window ({e}): running headless")
        if self.view is None:
            declared = run.info.declared_frames
            total = run.opts.frames or (declared - run.start_frame if declared else None)
            self.view = HeadlessView(total, run.info.spec, opts.quiet)
        self.windowed = isinstance(self.view, WindowView)
        run.stats.display = "window" if self.windowed else "headless"

    def title(self, state: str) -> str:
        where = f" {self.where}" if self.where else ""
        return f"frame-engine: {self.run.info.spec} [{state}{where}]"

    # ---- outputs ----------------------------------------------------------------

    def open_outputs(self) -> None:
        opts, info = self.run.opts, self.run.info
        if opts.output:
            import cv2

            ext = os.path.splitext(opts.output)[1].lower()
            fourcc = cv2.VideoWriter_fourcc(
                *("mp4v" if ext in (".mp4", ".m4v", ".mov") else "MJPG")
            )
            self.writer = cv2.VideoWriter(opts.output, fourcc, info.fps, (info.width, info.height))
            if not self.writer.isOpened():
                raise RunError(f"{opts.output}: cannot write a video there", exit_code=1)
        if opts.results:
            try:
                self.results = open(opts.results, "w")
            except OSError as e:
                raise RunError(f"{opts.results}: cannot write results: {e.strerror}") from None

    def close_outputs(self) -> None:
        if self.writer is not None:
            self.writer.release()
        if self.results is not None:
            self.results.close()

    def record(self, frame: dict) -> None:
        """Every frame that reached the display, shown or dropped, in order."""
        if self.results is not None and frame["analyzed"]:
            line = {"frame": frame["index"], "result": frame["result"]}
            self.results.write(json.dumps(line, separators=(",", ":")) + "\n")

    # ---- showing ------------------------------------------------------------------

    def show(self, frame: dict, now: float) -> None:
        run = self.run
        image = run.image(frame)
        self.where = position_text(frame["pts"], frame["index"], self.duration)
        if self.windowed:
            self.view.show(image, self.title("paused" if self.clock.paused_at else "playing"))
        if self.writer is not None:
            self.writer.write(image)
        if self.shown is not None:
            run._release(self.shown.seq)
        self.shown = Shown(frame["seq"], frame["index"])
        self.last_index = frame["index"]
        late = 0.0 if self.untimed else self.clock.showing(frame["index"], now)
        self.publish_clock()
        run.stats.shown(frame["index"], late)
        self.redraw()

    def reanchor(self, index: int, at: float) -> None:
        """Restart the clock with frame `index` due at `at`, counted, and tell the
        analyzers."""
        self.clock.anchor(index, at)
        self.clock.reanchors += 1
        self.publish_clock()

    def publish_clock(self) -> None:
        """Tell the analyzers the clock, so they skip frames that are already late."""
        shared, clock = self.run.shared, self.clock
        if self.untimed or not clock.running:
            shared[ctl.CLOCK_T0_NS] = 0
            return
        shared[ctl.CLOCK_BASE] = clock.base
        shared[ctl.CLOCK_RATE_MILLI] = round(clock.rate * 1000)
        shared[ctl.CLOCK_T0_NS] = round(clock.t0 * 1e9)

    def release_shown(self) -> None:
        """Let the frame on screen go before a later one (done() is in order); the
        window keeps a copy of it for redraws."""
        if self.shown is not None:
            if self.windowed:
                self.view.keep_copy()
            self.run._release(self.shown.seq)
            self.shown = None

    def drop(self, frame: dict) -> None:
        """A late frame, released unseen."""
        self.release_shown()
        self.run._release(frame["seq"])
        self.run.stats.dropped_late += 1
        self.last_index = frame["index"]

    def redraw(self) -> None:
        state = "paused" if self.clock.paused_at else "playing"
        hud = None
        if self.hud:  # where we are, fresh every frame; then the figures
            hud = [f"{state} {self.where}"] if self.where else []
            hud += self.run.stats.hud(self.run)
        self.view.redraw(hud, self.title(state))

    # ---- the loop ---------------------------------------------------------------------

    def play(self) -> None:
        run = self.run
        self.open_outputs()
        try:
            self._loop()
        finally:
            run.stats.reanchors = self.clock.reanchors
            # the last frame is still held on screen: count what was shown or dropped
            done = run.stats.frames_shown + run.stats.dropped_late
            self.view.progress(done, run.stats.postfix(run))
            self.view.close()
            self.close_outputs()

    def _events(self, now: float) -> bool:
        """Handle keys; False to quit."""
        run = self.run
        for ev in self.view.events():
            if ev == QUIT:
                return False
            if ev == STATS:
                self.hud = not self.hud
                self.redraw()
            elif ev == PAUSE:
                if self.clock.paused_at is None:
                    self.clock.pause(now)
                else:
                    self.clock.resume(now)
                self.publish_clock()
                self.redraw()
            elif ev == STEP:  # as in mpv: pause if playing, then one frame on
                if self.clock.paused_at is None:
                    self.clock.pause(now)
                    self.publish_clock()
                self.step_pending = True
            elif ev in (SEEK_BACK, SEEK_FORWARD) and not run.live and run.info.seekable:
                here = self.last_index if self.last_index is not None else run.start_frame
                delta = round(SEEK_S * run.info.fps) * (1 if ev == SEEK_FORWARD else -1)
                target = max(0, here + delta)
                if run.info.declared_frames:
                    target = min(target, run.info.declared_frames - 1)
                self.seek(target)
                run.stats.seeks += 1
        return True

    def seek(self, target: int) -> None:
        """Ask the reader for `target`; frames already buffered are stale."""
        run = self.run
        run.epoch += 1
        run.shared[ctl.SEEK_TO] = target
        run.shared[ctl.EPOCH] = run.epoch
        # done() goes in sequence order: the frame on screen, then the accepted
        # frames, then those not looked at yet.
        self.release_shown()
        for frame in self.ready:
            run._release(frame["seq"])
        for seq in self.pending:
            run._release(seq)
        run.stats.discarded_seek += len(self.ready) + len(self.pending)
        self.ready.clear()
        self.pending.clear()
        self.clock.t0 = None  # re-anchored by the first frame of the new epoch
        self.publish_clock()
        self.last_index = target - 1  # a second seek before a frame arrives goes on from here
        self.show_next = self.clock.paused_at is not None  # paused: show where we landed
        run.eof = False

    def _loop(self) -> None:
        run = self.run
        ready = self.ready
        next_supervise = 0.0
        # A file pre-rolls a few frames; a live source starts at its first (what it
        # sends meanwhile would only add latency).
        preroll = 1 if run.live else min(PREROLL, run.slots - 1 - run.analysis.lookback)
        while True:
            now = time.monotonic()
            if not self._events(now):
                run.stats.ended = "quit"
                return
            if now >= next_supervise:
                run.supervise()
                next_supervise = now + SUPERVISE_S
                # the bar follows the ring's counter: frames through the display stage
                # (less those read only as context: those are published first)
                done = max(0, run.ring.stats(DISPLAY_STAGE)["items"] - run.stats.context(run))
                self.view.progress(done, run.stats.postfix(run))
            # Pull what is ready.  With nothing to show, wait on the ring itself, not
            # in a sleep, so a frame is taken the moment it is ready; briefly, so
            # keys stay responsive and the clock is never missed.
            idle = not ready and not self.pending
            run._take(self.pending, timeout=self._idle_wait(now) if idle else 0)
            if idle:
                now = time.monotonic()  # that wait may have lasted up to IDLE_WAIT_S
            while self.pending:
                frame = run._accept(self.pending.popleft())
                if frame is not None:
                    ready.append(frame)
                    self.record(frame)
                    self._watch_skips(frame, now)
            if not ready:
                if not self.pending and (run.eof or run.source_done()):
                    return
                self._stall(now)
                continue
            if self.clock.paused_at is not None:
                if self.step_pending or (self.show_next and not ready[0]["late"]):
                    self.step_pending = self.show_next = False
                    frame = ready.popleft()
                    self.clock.step_to(frame["index"], now)
                    self.show(frame, now)
                elif ready[0]["late"]:
                    self.drop(ready.popleft())
                else:
                    self._wait(now)
                continue
            if self.untimed:
                self.show(ready.popleft(), now)
                continue
            if self.clock.t0 is None:
                if len(ready) < preroll and not run.eof:
                    run._take(self.pending, timeout=IDLE_WAIT_S)  # pre-roll: wait, not spin
                    continue
                # Live: a little ahead, so that the analyzers have room to be on time.
                self.clock.anchor(ready[0]["index"], now + (LIVE_LEAD_S if run.live else 0.0))
                self.publish_clock()
            due = self.clock.due_index(now)
            # Late: skipped by an analyzer, or a newer frame is due too. Released unseen.
            while ready and (ready[0]["late"] or len(ready) >= 2 and ready[1]["index"] <= due):
                self.drop(ready.popleft())
            if run.live and ready and self.clock.lateness(ready[0]["index"], now) < -REANCHOR_S:
                # A live source does not wait for us: frames this far ahead of the clock
                # are latency to shed (the first frames waited for the analyzers to
                # start; a pause; a camera faster than it says).  Catch up.
                self.reanchor(ready[0]["index"], now + LIVE_LEAD_S)
            if ready and ready[0]["index"] <= due:
                self.show(ready.popleft(), now)
            elif not ready:
                self._stall(now)
            self._wait(now)

    def _watch_skips(self, frame: dict, now: float) -> None:
        """Live: make room on the clock when the analyzers skip every frame.

        An analyzer skips a frame it cannot finish before the frame is due.  If the
        clock leaves less time than an analysis takes (it started on a frame that
        cost nothing, as flow's first does; the analysis grew slower), every frame
        is skipped as it comes.  Those reach the display on time, so it neither
        starves nor falls behind, and nothing else would move the clock again.  A
        busy analyzer's skips come together, behind the frame it was working on:
        skipped frames coming one by one for longer than an analysis takes mean
        idle analyzers.  The clock then restarts with an analysis' worth of room."""
        if frame["failed"]:
            return
        if not frame["late"]:
            self.analysis_s.append(frame["analysis_ns"] / 1e9)
            self.skipping_since = None
        elif not self.run.live or not self.clock.running:
            self.skipping_since = None
        elif self.skipping_since is None:
            self.skipping_since = now
        else:
            need = max(self.analysis_s, default=0.0)
            if now - self.skipping_since > need + REANCHOR_S:
                self.reanchor(frame["index"], now + need + LIVE_LEAD_S)
                self.skipping_since = None

    def _stall(self, now: float) -> None:
        """Nothing to show: count a stall once per frame period that finds the buffer
        empty, and warn (at most once a second) that it ran dry."""
        run = self.run
        if self.untimed or self.clock.t0 is None or self.clock.paused_at is not None:
            return
        due = self.clock.due_index(now)
        if self.last_index is None or due <= self.last_index:
            return
        if due != self.last_stall_due:
            self.last_stall_due = due
            run.stats.stalls += 1
            run.stats.warn_dry()
        # Starving: the next frame is over REANCHOR_S late and still not here.  The
        # clock restarts a little ahead of now, at the next frame, so the analyzers
        # (which skip what is late) work on frames that can be shown on time.
        nxt = self.last_index + 1
        if self.clock.lateness(nxt, now) > REANCHOR_S:
            self.reanchor(nxt, now + STARVED_LEAD_S)

    def _idle_wait(self, now: float) -> float:
        """How long the display may wait for a frame when it has none."""
        if self.untimed or not self.clock.running:
            return IDLE_WAIT_S
        nxt = self.clock.due_time(self.clock.due_index(now) + 1)
        return min(max(nxt - now, 0.0), IDLE_WAIT_S)

    def _wait(self, now: float) -> None:
        """Sleep until the next frame is due, in short steps so keys stay responsive;
        the ring is polled, never waited on."""
        if self.untimed or self.clock.t0 is None or self.clock.paused_at is not None:
            time.sleep(0.002)
            return
        nxt = self.clock.due_time(self.clock.due_index(now) + 1)
        left = nxt - now
        if left > SPIN_S:
            # Sleep to just before the frame is due; the OS wakes us late by up to
            # a few hundred microseconds, so the last stretch is spent awake.
            time.sleep(min(left - SPIN_S, 0.004))
        else:
            while time.monotonic() < nxt:
                pass


def play(source: str | int | None = "demo", **options) -> dict:
    """Play (or, headless, process) a source through the pipeline; return the stats."""
    run = Run(PlayOptions(source=source, **options))
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        run.start()
        player = Player(run)
        try:
            player.play()
        except BaseException as e:
            run.stats.ended = ENDED_BY.get(type(e), "error")
            run.stats.finished(run)
            e.stats = run.stats.as_dict()  # the command line still sums the run up
            raise
        run.stats.finished(run)
        return run.stats.as_dict()
    finally:
        run.stop()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if run.opts.stats_json:
            run.stats.write_json(run.opts.stats_json)


@dataclass(frozen=True)
class Frame:
    """An analyzed frame, as `frames()` gives it. It unpacks as the pair
    `image, result`; `index` is the frame's number in the source, `pts` its time
    in seconds, and `status` "ok", or "skipped" (the analysis raised under
    on_error="skip"; result holds the error) or "failed" (its analyzer died)."""

    image: np.ndarray  # read-only view into the ring, valid until the next frame
    result: Any
    index: int
    pts: float
    status: str = "ok"

    def __iter__(self) -> Iterator[Any]:
        return iter((self.image, self.result))


def frames(source: str | int | None = "demo", **options) -> Iterator[Frame]:
    """Analyzed frames in order, as fast as they come (`Frame`s, which unpack as
    `image, result`). The image is a read-only view into the ring, valid until the
    next iteration (copy it to keep it). Leaving the loop stops the run."""
    options.setdefault("untimed", True)
    for name in ("output", "results", "stats_json", "headless"):
        if options.get(name) is not None:
            raise TypeError(f"frames() takes no {name!r}: it hands frames to the caller")
    run = Run(PlayOptions(source=source, headless=True, quiet=True, **options))
    try:
        run.start()
        for frame in run.frames():
            status = "failed" if frame["failed"] else "ok" if frame["analyzed"] else "skipped"
            yield Frame(run.image(frame), frame["result"], frame["index"], frame["pts"], status)
    finally:
        run.stop()


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


ENDED_BY = {KeyboardInterrupt: "interrupted", Terminated: "terminated"}
