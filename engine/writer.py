"""The writer process (`fe-writer`): the ring's last stage, after the display.
It encodes what the run produced into the --output file: every frame of an
untimed run; of a timed run, the frames the display showed (those it dropped
late are left out, the frame before them lasting longer), so that the file plays
as the run looked on screen.  Each frame keeps its time in the source, so a run
that dropped frames still gives a file as long as the source played.

It finishes the file on every way out: the end of the stream, or the supervisor's
stop request (q, Ctrl-C, SIGTERM, an error elsewhere).  A write that fails (a full
disk, a folder removed) is reported in one line and ends the run."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from engine import control as ctl
from engine._ring import Ring, RingAborted
from engine.procs import die_with_parent
from engine.slots import DROPPED, NOT_SHOWN, PRELUDE
from engine.videofile import VideoFile, VideoSpec, WriteError

TAKE_MAX = 16  # frames taken at once
SLICE_S = 0.1  # how long a take waits before the writer looks at its requests again
CHECK_S = 1.0  # how often the file is looked for (a folder removed under it)


@dataclass(frozen=True)
class WriterConfig:
    spec: VideoSpec
    threads: int  # the encoder's
    audio_from: str | None  # the source file whose audio is copied; None: no audio
    parent: int  # the player's pid


class Writer:
    """The file, opened at the first frame written (the audio is cut from there),
    and the output clock: each frame's time is its time in the source less the
    first frame's; after a seek, the clock goes on from the frame before it."""

    def __init__(self, cfg: ctl.RunConfig, wcfg: WriterConfig, fields) -> None:
        self.cfg, self.wcfg, self.fields = cfg, wcfg, fields
        self.file: VideoFile | None = None
        self.epoch: int | None = None
        self.base = 0.0  # source seconds at the file's 0 in this epoch
        self.checked = time.monotonic()
        self.existed = False

    def frame(self, ring: Ring, seq: int) -> None:
        layout = self.cfg.layout
        meta = layout.meta(ring, seq)
        if meta["status"] == PRELUDE or meta["shown"] == NOT_SHOWN:
            return  # context for a lookback, a stale frame of before a seek, unplayed
        pts, epoch = float(meta["pts"]), int(meta["epoch"])
        if meta["shown"] == DROPPED:  # played: the file lasts to its end
            if self.file is not None and epoch == self.epoch:
                self.file.lasts_until(pts - self.base + 1 / self.cfg.source.fps)
            return
        failed = ring.failed(seq)
        image = (
            layout.out(ring, seq, readonly=True)
            if layout.separate_out and not failed
            else layout.frame(ring, seq, readonly=True)
        )
        if self.file is None:
            self.cpu0 = time.process_time()
            self.base, self.epoch = pts, epoch
            src = self.cfg.source
            self.file = VideoFile(
                self.wcfg.spec,
                src.width,
                src.height,
                src.fps,
                threads=self.wcfg.threads,
                audio_from=self.wcfg.audio_from,
                audio_start=pts,
            )
        elif epoch != self.epoch:  # a seek: go on a frame after the last one written
            self.epoch = epoch
            self.base = pts - self.file.end
            self.file.stop_audio()  # the source's sound no longer follows the frames
        self.file.add(image, pts - self.base)
        self.fields[ctl.WRITER_FRAMES] = self.file.frames
        self.fields[ctl.WRITER_US] = round(self.file.end * 1e6)

    def check(self) -> None:
        """A folder removed under the file: the writes still go to the open file,
        but it could never be finished (faststart reopens it by name)."""
        now = time.monotonic()
        if now - self.checked < CHECK_S or self.file is None:
            return
        self.checked = now
        path = self.wcfg.spec.path
        if os.path.exists(path):
            self.existed = True  # made when the first packets come out of the encoder
        elif self.existed or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise WriteError(0, f"{path}: removed while it was written")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            # what encoding cost (the encoder's threads included), for the figures
            self.fields[ctl.WRITER_CPU_US] = round((time.process_time() - self.cpu0) * 1e6)


_told_to_stop = False  # SIGTERM: the parent died, or the whole group was told to stop


def _on_sigterm(signum, frame) -> None:
    global _told_to_stop
    _told_to_stop = True


def run(cfg: ctl.RunConfig, wcfg: WriterConfig) -> None:
    """Process body: write until the end of the stream, or until asked to finish."""
    # A parent killed outright (SIGKILL, the OOM killer) cannot ask the writer to
    # finish: its death does (SIGTERM instead of the other children's SIGKILL),
    # and so does a SIGTERM sent to the whole process group.
    signal.signal(signal.SIGTERM, _on_sigterm)
    die_with_parent(wcfg.parent, signal.SIGTERM)
    ring = Ring.open(cfg.ring_name)
    fields = ctl.writer_fields(ring, cfg.workers)
    writer = Writer(cfg, wcfg, fields)
    stage = cfg.writer_stage
    try:
        try:
            while True:
                stopping = bool(fields[ctl.WRITER_STOP]) or _told_to_stop
                try:
                    seq, n = ring.take(stage, max_n=TAKE_MAX, timeout=0 if stopping else SLICE_S)
                except TimeoutError:
                    if stopping:  # the display has stopped, and all it passed is written
                        break
                    writer.check()
                    continue
                except (EOFError, RingAborted):
                    break
                try:
                    for s in range(seq, seq + n):
                        writer.frame(ring, s)
                finally:
                    ring.done(stage, seq, n)
                writer.check()
            writer.close()
            fields[ctl.WRITER_DONE] = 1
        except WriteError as e:
            fields[ctl.WRITER_DONE] = 2
            try:
                writer.close()  # what was written may still make a file
                ctl.report_error(ring, f"{e.strerror}")
            except WriteError:
                ctl.report_error(ring, f"{e.strerror} (the file is unfinished)")
            raise SystemExit(1) from None
    finally:
        ring.close()
