"""The run's configuration as children receive it, and the few shared counters
and requests that pass between the supervisor and its children outside the ring."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from engine.slots import SlotLayout
from engine.sources import SourceInfo

# Indices into the shared control array (int64, no lock: one writer each).
EPOCH = 0  # display -> reader: bumped to ask for a seek to SEEK_TO
SEEK_TO = 1  # display -> reader: frame index to seek to
DROPPED_SOURCE = 2  # reader: frames dropped at a live source because the ring was full
DECODED = 3  # reader: frames decoded, set when it stops
READER_DONE = 4  # reader: 1 once it stopped cleanly (end of source, --frames, abort)
# The display's clock, for analyzers to skip frames that can no longer be shown
# in time (mpv's decoder framedrop): frame i is due at T0 + (i - BASE) / RATE.
CLOCK_T0_NS = 5  # time.monotonic_ns() of the anchor; 0 while the clock is not running
CLOCK_BASE = 6
CLOCK_RATE_MILLI = 7  # frames per second x 1000
SOURCE_END = 8  # reader: epoch + 1 once the source (or --frames) ended in that epoch
CONTEXT = 9  # reader: frames published only as context (PRELUDE), before a start or seek
# A live source that stopped (an error, or nothing for --source-timeout) and is
# being opened again:
RECONNECTING = 10  # reader: the attempt under way (1, 2, ...); 0 while the source gives frames
RECONNECTS = 11  # reader: how many times it came back
LOST_MS = 12  # reader: milliseconds of the stream lost in those gaps, all told
SOURCE_LOST = 13  # reader: 1 when it gave up (--reconnect-for ran out); the error says why
LAST_READ_NS = 14  # reader: time.monotonic_ns() when it last got a frame from the source
SIZE = 16
ERROR_BYTES = 512  # after the fields: the last error a child reported, UTF-8


def frame_due_ns(shared, index: int) -> int | None:
    """When frame `index` is due on the display's clock, or None (untimed, paused,
    not started).  The fields are read without a lock: a torn read during a
    re-anchor costs at most one wrong skip decision."""
    t0, rate, base = (
        int(shared[CLOCK_T0_NS]),
        int(shared[CLOCK_RATE_MILLI]),
        int(shared[CLOCK_BASE]),
    )
    if not t0 or not rate:
        return None
    return t0 + (index - base) * 1_000_000_000_000 // rate


@dataclass(frozen=True)
class RunConfig:
    """Everything a child needs to do its part; pickled once when it starts."""

    ring_name: str
    layout: SlotLayout
    source: SourceInfo
    analyze: str
    batch: int
    live: bool
    pace_fps: float | None  # a file or the demo played --live is read in real time, like a camera
    start_frame: int  # the first frame played
    max_frames: int | None  # frames played (context frames not counted)
    # An analysis that looks back: frames read before the start or a seek point as
    # context only, so the first frame played has its history.
    lookback: int
    on_error: str  # "stop" or "skip"
    seekable: bool  # a window may seek back after the end: the reader waits for that
    # A reader started again after one died goes on from where that one stopped:
    start_epoch: int = 0  # the seek epoch of the frames it goes on with
    resume_at: int | None = None  # the frame it reads first (context while < start_frame)
    decoded_before: int = 0  # frames the readers before it decoded and published
    then: tuple[str, ...] = ()  # the ordered steps, in order, run in one process
    steps_stage: int = 0  # their stage in the ring (0: the run has none)
    workers: int = 1  # the analyzers: where each process's busy record is
    writer_stage: int = 0  # the writer's stage in the ring (0: the run writes no video)
    # A live source: how long it may give nothing before it counts as stalled; how
    # long a stalled one is tried again (0: the run ends with it; inf: forever);
    # and the age (from the reader getting it) past which a frame is not shown.
    source_timeout: float = 5.0
    reconnect_for: float = 60.0
    max_latency: float | None = None


SUMMARY_BYTES = 4096  # per process: the summaries its steps' close() gave, JSON
# The ring's user area: the fields, the error text, then one summary area for the
# ordered steps' process (0) and one per analyzer (1..workers).
USER_BYTES = SIZE * 8 + ERROR_BYTES


def user_bytes(workers: int) -> int:
    """The user area of a run with `workers` analyzers: the fields and the error
    text, a summary area and a busy record per process (the steps' process is 0),
    then the writer's fields."""
    return USER_BYTES + (workers + 1) * (SUMMARY_BYTES + BUSY_BYTES) + WRITER_FIELDS * 8


BUSY_BYTES = 16  # per process: since when (monotonic ns, 0: idle) and on which frame


def busy_record(ring, workers: int, slot: int):
    """Process `slot`'s record of the frame it is working on: [since_ns, index]
    (int64; since 0 while it waits). One writer, the process; the supervisor reads
    it without a lock (a torn read costs at most one late kill decision)."""
    offset = USER_BYTES + (workers + 1) * SUMMARY_BYTES + slot * BUSY_BYTES
    return ring.user(shape=(2,), dtype="<i8", offset=offset)


# The writer's fields (int64), after the busy records:
WRITER_STOP = 0  # supervisor -> writer: the display has stopped: write what it passed, finish
WRITER_FRAMES = 1  # writer: frames written to the file
WRITER_US = 2  # writer: the file's length so far, in microseconds
WRITER_DONE = 3  # writer: 1 once the file is finished (closed), 2 if that failed
WRITER_CPU_US = 4  # writer: its CPU time from the first frame to the file finished
WRITER_FIELDS = 5


def writer_fields(ring, workers: int):
    """The writer's fields above (one writer each, read without a lock)."""
    offset = USER_BYTES + (workers + 1) * (SUMMARY_BYTES + BUSY_BYTES)
    return ring.user(shape=(WRITER_FIELDS,), dtype="<i8", offset=offset)


def write_summary(ring, slot: int, summaries: dict) -> None:
    """What the close() of the steps in one process gave, by step name; a summary
    too large for its area is replaced by a note saying so."""
    data = json.dumps(summaries, separators=(",", ":"), default=str).encode()
    if len(data) >= SUMMARY_BYTES:
        note = {name: f"summary of more than {SUMMARY_BYTES} bytes left out" for name in summaries}
        data = json.dumps(note).encode()[: SUMMARY_BYTES - 1]
    area = ring.user(shape=(SUMMARY_BYTES,), offset=USER_BYTES + slot * SUMMARY_BYTES)
    area[: len(data)] = np.frombuffer(data, np.uint8)
    area[len(data)] = 0


def read_summary(ring, slot: int) -> dict:
    area = ring.user(shape=(SUMMARY_BYTES,), offset=USER_BYTES + slot * SUMMARY_BYTES)
    data = bytes(area).split(b"\0", 1)[0]
    try:
        return json.loads(data) if data else {}
    except ValueError:  # a process killed while it wrote
        return {}


def shared_fields(ring):
    """The control fields above, an int64 array in the ring's user area."""
    return ring.user(shape=(SIZE,), dtype="<i8")


def report_error(ring, text: str) -> None:
    """A child says why it is about to fail, for the parent's one-line message."""
    data = text.encode()[: ERROR_BYTES - 1]
    area = ring.user(shape=(ERROR_BYTES,), offset=SIZE * 8)
    area[: len(data)] = list(data)
    area[len(data)] = 0


def reported_error(ring) -> str | None:
    area = bytes(ring.user(shape=(ERROR_BYTES,), offset=SIZE * 8))
    text = area.split(b"\0", 1)[0].decode(errors="replace")
    return text or None
