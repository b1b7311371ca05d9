"""Setting a run up and watching it (mpv's loadfile.c): probe the source, resolve
the analysis, size and create the ring, start the reader, the analyzer pool, the
ordered steps and the writer; replace an analyzer that dies, restart a reader that
dies; on every way out, let the writer finish the file, stop the children and
remove the segment."""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass, field, replace
from multiprocessing import Pipe
from multiprocessing.connection import Connection

from engine import control as ctl
from engine._ring import Ring
from engine.analysis import importing, resolve
from engine.display import display_available
from engine.errors import RunError, refuse_nested_run
from engine.options import PREROLL, PlayOptions, default_workers, ring_slots
from engine.procs import Child
from engine.segments import clean_stale
from engine.slots import SlotLayout
from engine.sources import SourceError, SourceInfo, probe, source_kind
from engine.stats import RunStats
from engine.videofile import encoder_threads, video_spec
from engine.writer import WriterConfig

SUPERVISE_S = 0.05  # how often the children are checked
JOIN_S = 1.5  # children get this long to stop before they are killed
MAX_DEATHS = 3  # analyzer deaths in a row, with no frame finished between, end the run
# The writer gets this long to write what the display passed and finish the file
# (for .mp4 that moves the index to the front: the whole file is copied).
WRITER_JOIN_S = 60.0
CONNECT_SLACK_S = 10.0  # a live source's reader: time to start, beyond its source timeouts
DEFAULT_MAX_LATENCY = 0.5  # seconds: --max-latency of a live run


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
        # --output: its extension, codec and CRF checked now; written by the last stage
        self.video = None
        if opts.output is not None:
            self.video = video_spec(opts.output, opts.output_codec, opts.output_crf)
        self.ring: Ring | None = None
        self.procs: dict[str, Child] = {}
        self.connection: Connection | None = None  # to a live source's reader, until start()
        self._resolve()  # a mistake in the analysis is told before any source is opened
        spec = "demo" if opts.source is None else opts.source
        if source_kind(spec) in ("url", "camera"):
            # Opened once, by the reader that reads it: a server or camera that takes
            # one client is never asked twice. It waits for the ring made to its size.
            self.info = self._connect(spec)
        else:
            self.info = probe(spec, opts.fps)
        try:
            self._set_up()
        except BaseException:
            self.stop()  # the reader waiting for its ring
            raise

    def _connect(self, spec: str | int) -> SourceInfo:
        """Start the reader of a live source: it opens the source and says what it
        is (or why it cannot be opened). Ctrl-C meanwhile stops it at once."""
        opts = self.opts
        ours, theirs = Pipe()
        try:
            self.procs["reader"] = child = Child(
                "fe-reader",
                "engine.reader:connect_and_run",
                (spec, opts.fps, opts.source_timeout, theirs.fileno()),
                debug=opts.debug,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        self.connection = ours
        try:
            # opening waits up to the timeout, and so may reading the first frames
            deadline = time.monotonic() + 3 * opts.source_timeout + CONNECT_SLACK_S
            while not ours.poll(SUPERVISE_S):
                if not child.is_alive() or time.monotonic() > deadline:
                    how = "stopped answering" if child.is_alive() else exit_text(child.exitcode)
                    raise SourceError(f"{spec}: the reader process {how} while opening it")
            what, value = ours.recv()
        except BaseException:
            self.stop()
            raise
        if what == "error":
            self.stop()
            raise SourceError(value)
        return value

    def _resolve(self) -> None:
        """The analysis and the ordered steps, imported and checked."""
        opts = self.opts
        self.analysis = resolve(opts.analyze)  # import errors surface here, once
        if self.analysis.ordered:
            raise RunError(
                f"--analyze {self.analysis.name}: an ordered step (it keeps state from frame "
                "to frame) runs after the pool: give it with --then",
                exit_code=2,
            )
        then = [opts.then] if isinstance(opts.then, str) or callable(opts.then) else opts.then
        self.steps = [resolve(spec) for spec in then]

    def _set_up(self) -> None:
        opts = self.opts
        self.live = self.info.live if opts.live is None else opts.live
        # A frame of a live run older than this when due is not shown.
        self.max_latency = (
            (DEFAULT_MAX_LATENCY if opts.max_latency is None else opts.max_latency)
            if self.live
            else None
        )
        self.workers = opts.workers or default_workers()
        self.layout = SlotLayout(
            self.info.height, self.info.width, not self.analysis.in_place, steps=bool(self.steps)
        )
        buffer = opts.buffer or max(PREROLL * 2, math.ceil(2 * self.info.fps))
        self.slots = ring_slots(
            buffer + 1, self.analysis.lookback, self.layout.slot_bytes, opts.max_memory
        )
        if opts.start and self.info.live:
            raise RunError(
                f"--start {opts.start}: {self.info.spec} is live, it cannot start later",
                exit_code=2,
            )
        # the frame on screen at that time (a hair's slack for 0.1 s at 30 fps)
        self.start_frame = math.floor(opts.start * self.info.fps + 1e-6)
        declared = self.info.declared_frames
        if declared and self.start_frame >= declared:
            length = declared / self.info.fps
            raise RunError(f"--start {opts.start}: the source has {length:.1f} s", exit_code=2)
        self.stats = RunStats(self.info, self.analysis.name, opts.quiet)
        for note in self.info.notes:
            self.stats.note(f"{self.info.spec}: {note}")
        # The ring's consumer stages, in order: the analyzer pool, the ordered steps
        # (all in one process, where the run has any), the display, then the writer
        # (where the run writes a video).  Everything that reads a stage's counters
        # asks the run which it is.
        self.stages: tuple[str, ...] = ("pool", "ordered") + (("ordered",) if self.steps else ())
        self.steps_stage = 2 if self.steps else 0
        self.display_stage = len(self.stages)  # stage 0 is the reader
        if self.video is not None:
            self.stages += ("ordered",)
        self.writer_stage = len(self.stages) if self.video is not None else 0
        # Where a window will open, the user can seek back after the source ended.
        self.seekable = (
            self.info.seekable
            and not (self.live or opts.untimed or opts.headless)
            and display_available()
        )
        self.deaths, self.progress_at_death = 0, -1  # analyzer deaths with no frame between
        self.reader_deaths, self.reader_progress = 0, -1  # the same for the reader
        self.steps_deaths, self.steps_progress = 0, -1  # and for the steps' process

    # ---- set-up and clean-up ------------------------------------------------

    def start(self) -> None:
        clean_stale()  # segments of runs whose parent was killed
        try:
            self.ring = Ring.create(
                slots=self.slots,
                slot_bytes=self.layout.slot_bytes,
                stages=self.stages,
                lookback=self.analysis.lookback,
                user_bytes=ctl.user_bytes(self.workers),
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
            then=tuple(a.name for a in self.steps),
            steps_stage=self.steps_stage,
            workers=self.workers,
            writer_stage=self.writer_stage,
            source_timeout=self.opts.source_timeout,
            reconnect_for=self.opts.reconnect_for,
            max_latency=self.max_latency,
        )
        self.writer_fields = ctl.writer_fields(self.ring, self.workers)
        if self.connection is not None:  # the reader of a live source: it is waiting
            try:
                self.connection.send(self.cfg)
            except OSError:  # it died meanwhile; supervise() says so
                pass
            self.connection.close()
            self.connection = None
        else:
            self._spawn("reader", "fe-reader", "engine.reader:run", (self.cfg,))
        for w in range(1, self.workers + 1):
            self._spawn_analyzer(w)
        if self.steps:
            self._spawn("steps", "fe-steps", "engine.steps:run", (self.cfg,))
        if self.video is not None:
            wcfg = WriterConfig(
                spec=self.video,
                threads=encoder_threads(self.workers),
                # the sound of a file, copied beside the frames (not of a stream:
                # that would be a second connection, and live)
                audio_from=self.info.spec if self.info.kind == "file" else None,
                parent=os.getpid(),
            )
            self._spawn("writer", "fe-writer", "engine.writer:run", (self.cfg, wcfg))
        self.stats.started()

    def _spawn(self, role: str, name: str, target: str, args: tuple) -> None:
        self.procs[role] = Child(name, target, args, debug=self.opts.debug)

    def _spawn_analyzer(self, worker: int) -> None:
        # a record left by the one it replaces (killed in the middle of a frame)
        ctl.busy_record(self.ring, self.workers, worker)[0] = 0
        self._spawn(
            f"analyzer-{worker}", f"fe-analyze-{worker}", "engine.analyzer:run", (self.cfg, worker)
        )

    def finish(self) -> None:
        """The stream ended: let the analyzers and the steps exit (they give their
        summaries on the way out), within JOIN_S."""
        self.stop_writer()
        deadline = time.monotonic() + JOIN_S
        for role, p in self.procs.items():
            if role != "reader":
                p.join(max(0.0, deadline - time.monotonic()))

    def summaries(self) -> dict:
        """What the steps' close() gave: an ordered step's summary, and a pool
        class's, one per analyzer, in a list."""
        found: dict = {}
        for w in range(1, self.workers + 1):
            for name, summary in ctl.read_summary(self.ring, w).items():
                found.setdefault(name, []).append(summary)
        found.update(ctl.read_summary(self.ring, 0))
        return found

    def stop_writer(self, waiting=None, check: bool = True) -> None:
        """The display has stopped: the writer writes what it passed and finishes
        the file (within WRITER_JOIN_S; `waiting()` is called while it does).  The
        run's figures get what it wrote.  With `check`, a writer that failed (a
        full disk) raises RunError saying why."""
        p = self.procs.get("writer")
        if p is None or self.ring is None:
            return
        self.writer_fields[ctl.WRITER_STOP] = 1
        deadline = time.monotonic() + WRITER_JOIN_S
        while p.is_alive() and time.monotonic() < deadline:
            p.join(SUPERVISE_S)
            if waiting is not None:
                waiting()
        if p.is_alive():
            self.stats.note(
                f"{self.video.path}: the writer did not finish within {WRITER_JOIN_S:g} s: "
                "stopped, the file is unfinished"
            )
            p.kill()
            p.join(1.0)
        self.stats.output = self.output_report()
        if check and p.exitcode:
            why = ctl.reported_error(self.ring)
            raise RunError(why or f"{self.video.path}: the writer died ({exit_text(p.exitcode)})")

    def output_report(self) -> dict:
        """What the writer wrote: the file, its frames and length, whether it was
        finished."""
        fields = self.writer_fields
        path = self.video.path
        return {
            "path": os.path.abspath(path),
            "frames": int(fields[ctl.WRITER_FRAMES]),
            "seconds": round(int(fields[ctl.WRITER_US]) / 1e6, 3),
            "bytes": os.path.getsize(path) if os.path.exists(path) else 0,
            "finished": int(fields[ctl.WRITER_DONE]) == 1,
            "cpu_s": round(int(fields[ctl.WRITER_CPU_US]) / 1e6, 3),  # the writer's
        }

    def stop(self) -> None:
        """Let the writer finish the file, then stop every child within JOIN_S and
        remove the segment; safe to call twice."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        reader = self.procs.get("reader")
        if self.ring is None:
            # Only a live source's reader, opening it (no ring to tell it by): at once.
            if reader is not None:
                reader.kill()
                reader.join(1.0)
            return
        try:
            self.stop_writer(check=False)
        finally:
            self.ring.abort()
        if reader is not None and self.shared[ctl.RECONNECTING]:
            reader.kill()  # it may be in the middle of an open that waits for its timeout
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

    def source_lost(self) -> str | None:
        """Why the run ended early, when a live source stopped and did not come back
        within --reconnect-for (the reader said why); None otherwise."""
        if self.ring is None or not self.shared[ctl.SOURCE_LOST]:
            return None
        return ctl.reported_error(self.ring) or f"{self.info.spec}: lost"

    # ---- supervision ----------------------------------------------------------

    def _kill_hung(self) -> None:
        """--step-timeout: kill an analyzer that has spent longer than that on one
        frame (it is then replaced, below, its frames moved on as failed); ordered
        steps that hang stop the run (their state cannot be rebuilt)."""
        limit = self.opts.step_timeout
        if not limit:
            return
        now = time.monotonic_ns()
        for role, p in self.procs.items():
            if role in ("reader", "writer") or not p.is_alive():
                continue
            slot = 0 if role == "steps" else int(role[9:])
            since, index = (int(v) for v in ctl.busy_record(self.ring, self.workers, slot))
            if not since or now - since < limit * 1e9:
                continue
            if role == "steps":
                names = ", ".join(a.name for a in self.steps)
                why = f"frame {index} took longer than --step-timeout {limit:g} s"
                if self.opts.on_error != "skip":
                    raise RunError(f"steps {names}: {why}")
                self.stats.note(f"steps {names}: {why}: killed")
                p.kill()  # restarted below, from scratch (--on-error skip)
                p.join(1.0)
                continue
            self.stats.note(
                f"analyzer {slot}: frame {index} took longer than --step-timeout {limit:g} s: "
                "killed"
            )
            p.kill()
            p.join(1.0)

    def supervise(self) -> None:
        """Replace dead analyzers (their frames move on, flagged failed) and a dead
        reader of a seekable source (it goes on after the last frame published); a
        reader of a live source that died, or one that dies again and again, ends
        the run."""
        self._kill_hung()
        for role, p in list(self.procs.items()):
            if p.is_alive():
                continue
            why = ctl.reported_error(self.ring)
            if role == "reader":
                if not self.shared[ctl.READER_DONE]:
                    self._restart_reader(p, why)
                continue
            if role == "steps":
                if p.exitcode == 0 and self.ring.end_seq is not None:
                    continue  # finished with the stream
                self._restart_steps(p, why)
                continue
            if role == "writer":
                if p.exitcode == 0 and self.ring.end_seq is not None:
                    continue  # finished the file
                # its frames cannot be written again: the file ends the run
                if p.exitcode == 0:  # a SIGTERM of its own: it finished the file early
                    raise RunError(
                        f"{self.video.path}: the writer was stopped (SIGTERM); the file ends there"
                    )
                died = f"{self.video.path}: the writer died ({exit_text(p.exitcode)})"
                raise RunError(why or died)
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

    def _restart_steps(self, p: Child, why: str | None) -> None:
        """The ordered steps' process died: their state cannot be rebuilt, so the
        run stops; with --on-error skip they start again from scratch (ctx.reset on
        their first frame), the frames the dead one held moved on as failed."""
        names = ", ".join(a.name for a in self.steps)
        died = f"steps {names}: the steps process died ({exit_text(p.exitcode)})"
        died += f": {why}" if why else ""
        progress = self.ring.stats(self.steps_stage)["items"]
        self.steps_deaths = self.steps_deaths + 1 if progress == self.steps_progress else 1
        self.steps_progress = progress
        if self.opts.on_error != "skip" or why or self.steps_deaths >= MAX_DEATHS:
            raise RunError(died)
        moved = self.ring.reclaim(p.pid)
        self.stats.note(f"{died}; {moved} frame(s) move on without them; restarted fresh")
        ctl.busy_record(self.ring, self.workers, 0)[0] = 0  # the dead one's, if it hung
        self._spawn("steps", "fe-steps", "engine.steps:run", (self.cfg,))

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


def exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
