"""The Python API: `play()` runs a source through the player and returns its
figures; `frames()` hands the analyzed frames to the caller, in order, as fast as
they come.  Either way, every way out stops the children and removes the segment."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.arrivals import Arrivals
from engine.errors import RunError
from engine.options import PlayOptions
from engine.playloop import Player
from engine.supervisor import SUPERVISE_S, Run


class Terminated(SystemExit):
    """SIGTERM arrived: unwind like Ctrl-C, through every cleanup; uncaught, the
    program then exits with 143, as SIGTERM's default would (and no traceback)."""

    def __init__(self) -> None:
        super().__init__(143)


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
            run.finish()  # the analyzers and steps give their summaries as they exit
        except BaseException as e:  # (also a SIGTERM while they do)
            run.stats.ended = ENDED_BY.get(type(e), "error")
            run.stop_writer(check=False)  # what was written up to now is a finished file
            run.stats.finished(run)
            e.stats = run.stats.as_dict()  # the command line still sums the run up
            raise
        lost = run.source_lost()
        if lost:  # a live source stopped and did not come back: played up to there
            run.stats.ended = "source lost"
        run.stats.finished(run)
        if lost:
            error = RunError(lost)
            error.stats = run.stats.as_dict()  # the command line still sums the run up
            raise error
        if run.opts.start and not run.stats.final["frames_read"]:
            # a source that does not say its length (variable frame rate) ended first
            raise RunError(f"--start {run.opts.start}: the source ends before that", exit_code=2)
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
    steps: dict | None = None  # the ordered steps' results (then=...), by step name

    def __iter__(self) -> Iterator[Any]:
        return iter((self.image, self.result))


def frames(
    source: str | int | None = "demo", *, stats: dict | None = None, **options
) -> Iterator[Frame]:
    """Analyzed frames in order, as fast as they come (`Frame`s, which unpack as
    `image, result`). The image is a read-only view into the ring, valid until the
    next iteration (copy it to keep it). Leaving the loop stops the run.  A dict
    given as `stats` gets the run's figures (as `play()` returns them) once the
    frames have ended."""
    options.setdefault("untimed", True)
    for name in ("output", "results", "stats_json", "headless"):
        if options.get(name) is not None:
            raise TypeError(f"frames() takes no {name!r}: it hands frames to the caller")
    run = Run(PlayOptions(source=source, headless=True, quiet=True, **options))
    try:
        run.start()
        arrivals = Arrivals(run)
        while True:
            record = arrivals.next(timeout=SUPERVISE_S)
            if record is None:  # none came meanwhile: look at the children
                run.supervise()
                if arrivals.eof:
                    lost = run.source_lost()  # a live source that did not come back
                    if stats is not None:  # the steps give their summaries as they exit
                        run.finish()
                        run.stats.ended = "source lost" if lost else run.stats.ended
                        run.stats.finished(run)
                        stats.update(run.stats.as_dict())
                    if lost:
                        raise RunError(lost)
                    return
                continue
            image = arrivals.image(record)
            yield Frame(image, record.result, record.index, record.pts, record.status, record.steps)
            arrivals.release(record.seq)
    finally:
        run.stop()


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


ENDED_BY = {KeyboardInterrupt: "interrupted", Terminated: "terminated"}
