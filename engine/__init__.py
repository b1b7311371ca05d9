"""frame-engine: play and analyze video in Python in real time."""

from engine._ring import Ring, RingAborted
from engine._version import __version__
from engine.analysis import Context
from engine.pipeline import frames, play
from engine.segments import clean_stale

__all__ = [
    "Context",
    "Ring",
    "RingAborted",
    "__version__",
    "clean_stale",
    "frames",
    "play",
]
