"""frame-engine: play and analyze video in Python in real time."""

from engine._ring import Ring, RingAborted
from engine._version import __version__
from engine.segments import clean_stale

__all__ = ["Ring", "RingAborted", "clean_stale", "__version__"]
