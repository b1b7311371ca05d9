"""The player loop (mpv's playloop.c and video.c): each turn handles the keys,
watches the children, pulls the frames that arrived, and shows the frame that is
due on the display's clock (dropping late ones, counting stalls), in a window or
headless."""

from __future__ import annotations

import time
from collections import deque

from engine import control as ctl
from engine.arrivals import Arrivals, FrameRecord
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
from engine.options import PREROLL
from engine.sinks import Sink, close_sinks, open_sinks
from engine.slots import DROPPED, SHOWN
from engine.stats import reconnecting
from engine.supervisor import SUPERVISE_S, Run

SEEK_S = 5.0
SPIN_S = 0.0004  # the last stretch before a frame is due is waited awake (timing error)
IDLE_WAIT_S = 0.004  # the longest the display waits for a frame between looks at keys
STARVED_LEAD_S = 0.05  # after a stall, the clock restarts this far ahead of now
LIVE_LEAD_S = 0.05  # a live frame is due at first this long after it was read
SILENT_S = 1.0  # a live source that sent nothing for this long is stalled, not slow


class Player:
    """Runs a Run on the display's clock, in a window or headless."""

    def __init__(self, run: Run) -> None:
        self.run = run
        opts = run.opts
        self.arrivals = Arrivals(run)
        self.sinks: list[Sink] = []  # opened by play()
        self.untimed = opts.untimed
        self.clock = Clock(run.info.fps, opts.speed)
        self.hud = False
        self.shown: FrameRecord | None = None  # on screen: its slot is held until replaced
        self.last_stall_due: int | None = None
        self.last_index: int | None = None  # the newest frame shown or dropped
        self.next_supervise = 0.0
        # A file pre-rolls a few frames; a live source starts at its first (what it
        # sends meanwhile would only add latency).
        self.preroll = 1 if run.live else min(PREROLL, run.slots - 1 - run.analysis.lookback)
        headless = opts.headless
        if headless is None:
            headless = not display_available()
            if headless:
                run.stats.note("no display: running headless")
        self.step_pending = False
        self.show_next = False  # paused and sought: show the first frame that comes
        declared = run.info.declared_frames
        self.duration = declared / run.info.fps if declared else None
        self.where: str | None = None  # position_text() of the frame on screen
        self.analysis_s: deque[float] = deque(maxlen=8)  # the last few analysis times
        self.attempt = 0  # a live source being reopened: the attempt under way
        self.reconnects, self.lost_s = 0, 0.0  # as far as they were told
        # Live: from a frame's reading to its showing, what the analyzers need (at
        # first a little; more when they turn out to need more: _watch_skips()).
        self.live_room = LIVE_LEAD_S
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
            title = run.info.spec + (f" -> {opts.output}" if opts.output else "")
            self.view = HeadlessView(total, title, opts.quiet)
        self.windowed = isinstance(self.view, WindowView)
        run.stats.display = "window" if self.windowed else "headless"

    def state(self) -> str:
        """What the title and the overlay say the player is doing."""
        if self.attempt:
            return f"reconnecting (attempt {self.attempt})"
        return "paused" if self.clock.paused_at is not None else "playing"

    def title(self, state: str) -> str:
        where = f" {self.where}" if self.where else ""
        return f"frame-engine: {self.run.info.spec} [{state}{where}]"

    # ---- the loop ---------------------------------------------------------------------

    def play(self) -> None:
        run = self.run
        self.sinks = open_sinks(run.opts, run.info)
        try:
            while self.turn():
                pass
            if run.writer_stage:  # the writer writes what is left; the bar follows it
                self.release_shown()
                run.stop_writer(waiting=self._writing)
        finally:
            if run.writer_stage:  # the frame on screen goes to the writer too
                self.release_shown()
            run.stats.reanchors = self.clock.reanchors
            # the last frame is still held on screen: count what was shown or dropped
            done = run.stats.frames_shown + run.stats.dropped_late
            self.view.progress(done, run.stats.postfix(run))
            self.view.close()
            close_sinks(self.sinks)

    def _writing(self) -> None:
        """While the writer finishes: the bar follows the frames it wrote."""
        run = self.run
        done = max(0, run.ring.stats(run.writer_stage)["items"] - run.stats.context(run))
        self.view.progress(done, run.stats.postfix(run))

    def turn(self) -> bool:
        """One turn of the loop; False when the run is over."""
        now = time.monotonic()
        if not self.handle_keys(now):
            self.run.stats.ended = "quit"
            return False
        self.supervise(now)
        self.watch_source()
        now = self.pull_arrivals(now)
        if not self.arrivals:  # nothing to show
            if self.arrivals.ended():
                return False
            self._stall(now)
        elif self.clock.paused_at is not None:
            self.handle_paused(now)
        elif self.untimed:
            self.show(self.arrivals.pop(), now)
        elif self.clock.t0 is None and not self.start_clock(now):
            pass  # pre-rolling
        else:
            due = self.clock.due_index(now)
            self.drop_late(due, now)
            self.catch_up_live(now)
            self.show_or_stall(now, due)
            self._wait(now)
        return True

    # ---- the steps of a turn -------------------------------------------------------------

    def handle_keys(self, now: float) -> bool:
        """Act on the keys pressed; False to quit."""
        for ev in self.view.events():
            if ev == QUIT:
                return False
            self.on_key(ev, now)
        return True

    def supervise(self, now: float) -> None:
        """Every SUPERVISE_S: watch the children, and move the progress bar."""
        if now < self.next_supervise:
            return
        run = self.run
        run.supervise()
        self.next_supervise = now + SUPERVISE_S
        # the bar follows the ring's counter: frames through the last stage, the
        # display or the writer (less those read only as context: published first)
        done = max(0, run.ring.stats(len(run.stages))["items"] - run.stats.context(run))
        self.view.progress(done, run.stats.postfix(run))

    def watch_source(self) -> None:
        """A live source being reopened: the clock stops (the analyzers skip nothing
        meanwhile) and starts again at the first frame after the gap; the title says
        so."""
        run = self.run
        attempt = reconnecting(run)
        if attempt and self.clock.t0 is not None:
            self.clock.t0 = None
            self.publish_clock()
        if attempt == self.attempt:
            return
        # said in a line too, for a headless run whose stderr is a log
        if attempt:
            run.stats.note(f"{run.info.spec}: no frames: reconnecting (attempt {attempt})")
        elif run.shared[ctl.RECONNECTS] > self.reconnects:
            self.reconnects = int(run.shared[ctl.RECONNECTS])
            lost = int(run.shared[ctl.LOST_MS]) / 1000 - self.lost_s
            self.lost_s += lost
            run.stats.note(f"{run.info.spec}: reconnected; {lost:.1f} s of the stream lost")
        self.attempt = attempt
        self.redraw()

    def pull_arrivals(self, now: float) -> float:
        """Take what is ready and look at it: every frame that arrived goes to the
        sinks.  With nothing to show, wait on the ring itself, not in a sleep, so a
        frame is taken the moment it is ready; briefly, so keys stay responsive and
        the clock is never missed.  Returns the time after that wait."""
        idle = self.arrivals.idle()
        self.arrivals.take(timeout=self._idle_wait(now) if idle else 0)
        if idle:
            now = time.monotonic()  # that wait may have lasted up to IDLE_WAIT_S
        for record in self.arrivals.accept_taken():
            for sink in self.sinks:
                sink.arrived(record)
            if record.gap_ms and self.clock.running:  # back after a gap: start from it
                self.reanchor(record.index, self.live_due(record))
            self._watch_skips(record, now)
        return now

    def handle_paused(self, now: float) -> None:
        """Paused: show a frame only when stepping (or where a seek landed)."""
        head = self.arrivals.peek()
        if self.step_pending or (self.show_next and not head.late):
            self.step_pending = self.show_next = False
            record = self.arrivals.pop()
            self.clock.step_to(record.index, now)
            self.show(record, now)
        elif head.late:
            self.drop(self.arrivals.pop())
        else:
            self._wait(now)

    def start_clock(self, now: float) -> bool:
        """Pre-roll: start the clock at the first frame once a few are buffered (or
        the stream ended); False while still waiting for them."""
        run = self.run
        if len(self.arrivals) < self.preroll and not self.arrivals.eof:
            self.arrivals.take(timeout=IDLE_WAIT_S)  # wait, not spin
            return False
        # Live: as long after it was read as the analyzers need to be on time.
        head = self.arrivals.peek()
        self.clock.anchor(head.index, self.live_due(head) if run.live else now)
        self.publish_clock()
        return True

    def drop_late(self, due: int, now: float) -> None:
        """Release unseen the frames that are late: skipped by an analyzer, or a
        newer frame is due too; in a live run, also those older than --max-latency."""
        oldest = self.run.max_latency
        while True:
            head, after = self.arrivals.peek(0), self.arrivals.peek(1)
            if head is None:
                return
            if oldest is not None and not head.late and now - head.read_at > oldest:
                self.drop(self.arrivals.pop(), too_old=True)
                self.run.stats.warn_old(oldest)
                continue
            if not (head.late or (after is not None and after.index <= due)):
                return
            self.drop(self.arrivals.pop())

    def catch_up_live(self, now: float) -> None:
        """A live source does not wait for us: frames far ahead of the clock are
        latency to shed (the first frames waited for the analyzers to start; a
        pause; a camera faster than it says).  Catch up."""
        head = self.arrivals.peek()
        if not self.run.live or head is None:
            return
        if self.clock.lateness(head.index, now) < -REANCHOR_S:
            self.reanchor(head.index, self.live_due(head))

    def show_or_stall(self, now: float, due: int) -> None:
        head = self.arrivals.peek()
        if head is not None and head.index <= due:
            self.show(self.arrivals.pop(), now)
        elif head is None:
            self._stall(now)

    # ---- keys ---------------------------------------------------------------------------

    def on_key(self, ev: str, now: float) -> None:
        run = self.run
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

    def seek(self, target: int) -> None:
        """Ask the reader for `target`; frames already buffered are stale."""
        self.arrivals.new_epoch(target)
        # done() goes in sequence order: the frame on screen, then the buffered ones.
        self.release_shown()
        self.arrivals.discard()
        self.clock.t0 = None  # re-anchored by the first frame of the new epoch
        self.publish_clock()
        self.last_index = target - 1  # a second seek before a frame arrives goes on from here
        self.show_next = self.clock.paused_at is not None  # paused: show where we landed

    # ---- showing ------------------------------------------------------------------

    def show(self, record: FrameRecord, now: float) -> None:
        run = self.run
        image = self.arrivals.image(record)
        self.where = position_text(record.pts, record.index, self.duration)
        if self.windowed:
            self.view.show(image, self.title(self.state()))
        for sink in self.sinks:
            sink.shown(record, image)
        if self.shown is not None:
            # forgotten before it is released: Ctrl-C in between leaves it held
            # (unwritten), never released twice
            previous, self.shown = self.shown, None
            self.arrivals.release(previous.seq, shown=SHOWN)
        self.shown = record
        self.last_index = record.index
        # (a live frame shown late restarts the clock on its reading, not on now:
        # else its age would stay in every frame after it)
        at = self.live_due(record) if run.live else None
        late = 0.0 if self.untimed else self.clock.showing(record.index, now, at)
        self.publish_clock()
        age = None if run.max_latency is None else now - record.read_at
        run.stats.shown(record.index, late, age)
        self.redraw()

    def release_shown(self) -> None:
        """Let the frame on screen go before a later one (done() is in order); the
        window keeps a copy of it for redraws."""
        if self.shown is not None:
            if self.windowed:
                self.view.keep_copy()
            record, self.shown = self.shown, None  # as in show(): never released twice
            self.arrivals.release(record.seq, shown=SHOWN)

    def drop(self, record: FrameRecord, too_old: bool = False) -> None:
        """A late frame (or, live, one older than --max-latency), released unseen."""
        self.release_shown()
        self.arrivals.release(record.seq, shown=DROPPED)
        if too_old:
            self.run.stats.dropped_latency += 1
        else:
            self.run.stats.dropped_late += 1
        self.last_index = record.index

    def redraw(self) -> None:
        state = self.state()
        hud = None
        if self.hud:  # where we are, fresh every frame; then the figures
            hud = [f"{state} {self.where}"] if self.where else []
            hud += self.run.stats.hud(self.run)
        self.view.redraw(hud, self.title(state))

    # ---- the clock ----------------------------------------------------------------------

    def reanchor(self, index: int, at: float) -> None:
        """Restart the clock with frame `index` due at `at`, counted, and tell the
        analyzers."""
        self.clock.anchor(index, at)
        self.clock.reanchors += 1
        self.publish_clock()

    def live_due(self, record: FrameRecord) -> float:
        """When a live frame is due: `live_room` after the reader got it. The clock
        is anchored so, so that the age of every frame shown is that room, not what
        it was when the clock happened to start."""
        return record.read_at + self.live_room

    def publish_clock(self) -> None:
        """Tell the analyzers the clock, so they skip frames that are already late."""
        shared, clock = self.run.shared, self.clock
        if self.untimed or not clock.running:
            shared[ctl.CLOCK_T0_NS] = 0
            return
        shared[ctl.CLOCK_BASE] = clock.base
        shared[ctl.CLOCK_RATE_MILLI] = round(clock.rate * 1000)
        shared[ctl.CLOCK_T0_NS] = round(clock.t0 * 1e9)

    def _watch_skips(self, record: FrameRecord, now: float) -> None:
        """Live: make room on the clock when the analyzers skip every frame.

        An analyzer skips a frame it cannot finish before the frame is due.  If the
        clock leaves less time than an analysis takes (it started on a frame that
        cost nothing, as flow's first does; the analysis grew slower), every frame
        is skipped as it comes.  Those reach the display on time, so it neither
        starves nor falls behind, and nothing else would move the clock again.  A
        busy analyzer's skips come together, behind the frame it was working on:
        skipped frames coming one by one for longer than an analysis takes mean
        idle analyzers.  The clock then restarts with an analysis' worth of room."""
        if record.failed:
            return
        if not record.late:
            self.analysis_s.append(record.analysis_ns / 1e9)
            self.skipping_since = None
        elif not self.run.live or not self.clock.running:
            self.skipping_since = None
        elif self.skipping_since is None:
            self.skipping_since = now
        else:
            need = max(self.analysis_s, default=0.0)
            if now - self.skipping_since > need + REANCHOR_S:
                self.live_room = need + LIVE_LEAD_S
                self.reanchor(record.index, self.live_due(record))
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
            silent = time.monotonic_ns() - int(run.shared[ctl.LAST_READ_NS])
            if run.info.live and silent > SILENT_S * 1e9:  # not slow: the source sends nothing
                run.stats.warn(
                    f"{run.info.spec}: nothing from the source (reopened after "
                    f"--source-timeout {run.opts.source_timeout:g} s)"
                )
            else:
                run.stats.warn_dry()
        # Starving: the next frame is over REANCHOR_S late and still not here.  The
        # clock restarts a little ahead of now, at the next frame, so the analyzers
        # (which skip what is late) work on frames that can be shown on time.  Not
        # live: there the clock follows the times the frames were read, which the
        # frames to come keep to (a frame that comes late restarts it when shown).
        nxt = self.last_index + 1
        if not run.live and self.clock.lateness(nxt, now) > REANCHOR_S:
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
