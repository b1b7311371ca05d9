"""The reader process: decodes the source straight into ring slots, in batches."""

from __future__ import annotations

import time

from engine import control as ctl
from engine._ring import Ring, RingAborted
from engine.slots import OK, PRELUDE
from engine.sources import SourceError, open_source

# How long a claim waits before the reader looks for a seek request again.
CLAIM_SLICE_S = 0.25
SEEK_POLL_S = 0.02  # at the end of a seekable source, how often to look for a seek
MANY = 1 << 62  # frames left to play without --frames


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


def run(cfg: ctl.RunConfig) -> None:
    """Process body: read until the end of the source, --frames, or an abort."""
    ring = Ring.open(cfg.ring_name)
    shared = ctl.shared_fields(ring)
    try:
        source = open_source(cfg.source)
    except SourceError as e:  # probed in the parent, gone or changed since
        ctl.report_error(ring, str(e))
        raise
    layout, stamps = cfg.layout, Timestamps(cfg.source.fps)
    # Frames before `play_from` are read as context only (PRELUDE): the `lookback`
    # frames before the start or a seek point, for an analysis that looks back.
    epoch, play_from, read, source_ended = cfg.start_epoch, cfg.start_frame, 0, False
    index = max(0, play_from - cfg.lookback) if cfg.resume_at is None else cfg.resume_at
    skipped = 0  # source.frames_skipped as far as `index` counts them
    pace_start, paced = time.monotonic(), 0
    try:
        if index:
            source.seek(index)
        while True:
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
                context += index < play_from
                index += 1
                got += 1
                if got == n:
                    break
            if got:
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
