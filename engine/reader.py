"""The reader process: decodes the source straight into ring slots, in batches."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection

from engine import control as ctl
from engine._ring import Ring, RingAborted
from engine.slots import OK, PRELUDE
from engine.sources import Source, SourceError, connect, open_source, quiet_opencv

# How long a claim waits before the reader looks for a seek request again.
CLAIM_SLICE_S = 0.25
SEEK_POLL_S = 0.02  # at the end of a seekable source, how often to look for a seek
MANY = 1 << 62  # frames left to play without --frames
# A live source that stopped is opened again after these waits, then every last one.
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 5.0)
ABORT_POLL_S = 0.05  # how often a wait between attempts looks for the end of the run


class Timestamps:
    """The pts of each frame of one epoch: the container's timestamp where it has a
    usable one, later than the previous frame's; otherwise the previous frame's
    plus the frames since at `fps` (index / fps for the first)."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.last: tuple[int, float] | None = None  # (index, pts) of the previous frame

    def restart(self) -> None:
        """A seek: the next frame may come before the previous one."""
        self.last = None

    def pts(self, index: int, container: float | None) -> float:
        last = self.last
        if container is not None and (last is None or container > last[1]):
            pts = container
        elif last is None:
            pts = index / self.fps
        else:
            pts = last[1] + (index - last[0]) / self.fps
        self.last = (index, pts)
        return pts


def connect_and_run(spec: str, fps: float | None, timeout_s: float, fd: int) -> None:
    """Process body for a live source (a URL, a camera): open it once, tell the
    parent what it is over `fd` (or why it cannot be opened), then read it into the
    ring the parent made for it, with the frames the probe read first."""
    conn = Connection(fd)
    try:
        source = connect(spec, fps, timeout_s)
    except SourceError as e:
        conn.send(("error", str(e)))
        return
    conn.send(("info", source.info))
    try:
        cfg = conn.recv()  # the run's configuration, once its ring exists
    except EOFError:  # the parent gave up on the run
        source.close()
        return
    conn.close()
    run(cfg, source)


def run(cfg: ctl.RunConfig, source: Source | None = None) -> None:
    """Process body: read until the end of the source, --frames, or an abort."""
    ring = Ring.open(cfg.ring_name)
    shared = ctl.shared_fields(ring)
    quiet_opencv()  # a stream's read timeouts are ours to tell, in one line
    if source is None:
        try:
            source = open_source(cfg.source)
        except SourceError as e:  # probed in the parent, gone or changed since
            ctl.report_error(ring, str(e))
            raise
    reconnects = cfg.source.live and cfg.reconnect_for > 0
    layout, stamps = cfg.layout, Timestamps(cfg.source.fps)
    # Frames before `play_from` are read as context only (PRELUDE): the `lookback`
    # frames before the start or a seek point, for an analysis that looks back.
    epoch, play_from, read, source_ended = cfg.start_epoch, cfg.start_frame, 0, False
    index = max(0, play_from - cfg.lookback) if cfg.resume_at is None else cfg.resume_at
    skipped = 0  # source.frames_skipped as far as `index` counts them
    pace_start, paced = time.monotonic(), 0
    gap_s = 0.0  # a live source came back: the stream lost before its next frame
    try:
        if index:
            source.seek(index)
        while True:
            if (
                source_ended
                and reconnects
                and not (cfg.max_frames is not None and read >= cfg.max_frames)
            ):
                gap_s = reconnect(source, ring, shared, cfg)
                if gap_s is None:  # given up (or stopped); the stream ends
                    shared[ctl.SOURCE_LOST] = not ring.aborted  # the parent says why
                else:
                    source_ended = False
                    # the frames it would have sent meanwhile: indices and pts go on
                    # as if they had come (a gap, which the analyses can see)
                    index += round(gap_s * cfg.source.fps)
                    continue
            if cfg.max_frames is not None and read >= cfg.max_frames or source_ended:
                # what the source gave: frames read, and those dropped at the source
                shared[ctl.DECODED] = (
                    cfg.decoded_before + source.frames_read + shared[ctl.DROPPED_SOURCE]
                )
                shared[ctl.SOURCE_END] = epoch + 1
                if not cfg.seekable:
                    break
                # A window can still seek back: wait for that, or for the abort
                # that ends the run.
                while shared[ctl.EPOCH] == epoch and not ring.aborted:
                    time.sleep(SEEK_POLL_S)
                if ring.aborted:
                    break
                source_ended, read = False, 0
            if shared[ctl.EPOCH] != epoch:  # the display asked for a seek
                epoch, play_from = int(shared[ctl.EPOCH]), int(shared[ctl.SEEK_TO])
                index = max(0, play_from - cfg.lookback)
                source.seek(index)
                stamps.restart()
            if cfg.pace_fps:  # real time: frame k of the source comes at k / fps
                time.sleep(max(0.0, pace_start + paced / cfg.pace_fps - time.monotonic()))
                paced += 1
            # frames still to play (--frames), and to read as context before them
            left = MANY if cfg.max_frames is None else cfg.max_frames - read
            n = min(cfg.batch, max(0, play_from - index) + left)
            if cfg.live:
                n = 1  # a live source gives one frame at a time
            try:
                seq = ring.claim(n, timeout=0 if cfg.live else CLAIM_SLICE_S)
            except TimeoutError:
                if not cfg.live:
                    continue
                # A live source never waits: the frame is dropped at the source.
                if not source.skip():
                    source_ended = True
                    continue
                shared[ctl.LAST_READ_NS] = time.monotonic_ns()
                shared[ctl.DROPPED_SOURCE] += 1
                index += 1
                continue
            got = context = 0
            while got - context < left and source.read_into(layout.frame(ring, seq + got)):
                # frames passed over as undecodable keep their place: a gap, not a shift
                index += source.frames_skipped - skipped
                skipped = source.frames_skipped
                meta = layout.meta(ring, seq + got)
                meta["index"], meta["epoch"] = index, epoch
                meta["pts"] = stamps.pts(index, source.pts)
                meta["status"], meta["result_len"] = (PRELUDE if index < play_from else OK), 0
                meta["read_at"], meta["gap_ms"] = source.read_at, round(gap_s * 1000)
                gap_s = 0.0
                context += index < play_from
                index += 1
                got += 1
                if got == n:
                    break
            if got:
                shared[ctl.LAST_READ_NS] = time.monotonic_ns()
                ring.publish(seq, got)
                shared[ctl.CONTEXT] += context
            read += got - context
            if got < n:
                ring.abandon()  # the rest of the batch: a seek may need those slots
                # the source ended (or stopped decoding), unless --frames was reached
                # early (frames passed over as undecodable shortened the context)
                source_ended = got - context < left
        ring.end()
        shared[ctl.READER_DONE] = 1
    except RingAborted:
        shared[ctl.READER_DONE] = 1  # the run is being stopped
    except SourceError as e:  # a seek the source refused, a read that failed
        ctl.report_error(ring, str(e))
        raise
    finally:
        source.close()
        ring.close()


def reconnect(source: Source, ring: Ring, shared, cfg: ctl.RunConfig) -> float | None:
    """A live source stopped (an error, or nothing for --source-timeout): open it
    again, after waits that grow (BACKOFF_S), until it gives a frame again, for at
    most --reconnect-for seconds. Returns the seconds of the stream lost (from its
    last frame to now), or None when it did not come back (the reason reported) or
    the run was stopped meanwhile."""
    began = time.monotonic()
    last = int(shared[ctl.LAST_READ_NS])
    lost_from = last / 1e9 if last else began
    deadline = began + cfg.reconnect_for  # inf: for as long as it takes
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        # the last attempt comes when --reconnect-for runs out
        wait = min(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)], left)
        attempt += 1
        shared[ctl.RECONNECTING] = attempt
        if not _sleep_unless_aborted(ring, wait):
            shared[ctl.RECONNECTING] = 0
            return None
        if source.reopen():
            now = time.monotonic()
            shared[ctl.RECONNECTING] = 0
            shared[ctl.RECONNECTS] += 1
            shared[ctl.LOST_MS] += round((now - lost_from) * 1000)
            return now - lost_from
    shared[ctl.RECONNECTING] = 0
    silent = time.monotonic() - lost_from
    ctl.report_error(
        ring,
        f"{cfg.source.spec}: lost: no frames for {silent:.0f} s; "
        + (f"{attempt} attempts to reopen it failed" if attempt else "not reopened")
        + f" (--reconnect-for {cfg.reconnect_for:g})",
    )
    return None


def _sleep_unless_aborted(ring: Ring, seconds: float) -> bool:
    """Sleep, looking out for the end of the run; False if it ended."""
    end = time.monotonic() + seconds
    while not ring.aborted:
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, ABORT_POLL_S))
    return False
