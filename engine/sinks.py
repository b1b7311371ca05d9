"""Where a run's frames go besides the screen: the results file of --results, fed
by the player loop (every frame that reaches the display, shown or dropped, as it
arrives, and every frame shown).  The video of --output is written by its own
process after the display (engine/writer.py, encoding with engine/videofile.py)."""

from __future__ import annotations

import json

import numpy as np

from engine.arrivals import FrameRecord
from engine.errors import RunError
from engine.options import PlayOptions
from engine.sources import SourceInfo


class Sink:
    """Takes frames from the loop; each method does nothing unless overridden."""

    def arrived(self, record: FrameRecord) -> None:
        """Frame `record` reached the display, in order (it may yet be dropped)."""

    def shown(self, record: FrameRecord, image: np.ndarray) -> None:
        """Frame `record` was shown as `image` (a view into its slot)."""

    def close(self) -> None:
        pass


class ResultsSink(Sink):
    """--results: one JSON line per analyzed frame that reached the display, shown
    or dropped, in order."""

    def __init__(self, path: str) -> None:
        try:
            self.file = open(path, "w")
        except OSError as e:
            raise RunError(f"{path}: cannot write results: {e.strerror}") from None

    def arrived(self, record: FrameRecord) -> None:
        # a frame analyzed, or one the ordered steps saw (they see every frame)
        if record.analyzed or record.steps is not None:
            line = {"frame": record.index, "result": record.result if record.analyzed else None}
            if record.steps is not None:
                line["steps"] = record.steps
            self.file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.file.close()


def open_sinks(opts: PlayOptions, info: SourceInfo) -> list[Sink]:
    """The sinks the options ask for, open; none left open if one cannot be."""
    sinks: list[Sink] = []
    try:
        if opts.results:
            sinks.append(ResultsSink(opts.results))
    except BaseException:
        close_sinks(sinks)
        raise
    return sinks


def close_sinks(sinks: list[Sink]) -> None:
    for sink in sinks:
        sink.close()
