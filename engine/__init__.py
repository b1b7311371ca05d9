"""frame-engine: play and analyze video in Python in real time.

The names below are loaded on first use (PEP 562), so `from engine import Ring`
loads neither OpenCV nor pygame."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from engine._version import __version__

# name -> the module that defines it
_EXPORTS = {
    "Ring": "engine._ring",
    "RingAborted": "engine._ring",
    "Context": "engine.analysis",
    "analysis": "engine.analysis",
    "AnalysisError": "engine.analysis",
    "BatchItem": "engine.batchjobs",
    "batch": "engine.batchjobs",
    "batch_results": "engine.batchjobs",
    "Frame": "engine.api",
    "frames": "engine.api",
    "play": "engine.api",
    "clean_stale": "engine.segments",
    "SourceError": "engine.sources",
    "FrameEngineError": "engine.errors",
    "RunError": "engine.errors",
    "AnalysisFailed": "engine.errors",
    "MainGuardError": "engine.errors",
    "Terminated": "engine.api",
}

__all__ = [
    "AnalysisError",
    "AnalysisFailed",
    "BatchItem",
    "Context",
    "Frame",
    "FrameEngineError",
    "MainGuardError",
    "Ring",
    "RingAborted",
    "RunError",
    "SourceError",
    "Terminated",
    "__version__",
    "analysis",
    "batch",
    "batch_results",
    "clean_stale",
    "frames",
    "play",
]
assert sorted(__all__) == sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from engine._ring import Ring, RingAborted
    from engine.analysis import AnalysisError, Context, analysis
    from engine.api import Frame, Terminated, frames, play
    from engine.batchjobs import BatchItem, batch, batch_results
    from engine.errors import AnalysisFailed, FrameEngineError, MainGuardError, RunError
    from engine.segments import clean_stale
    from engine.sources import SourceError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    if importlib.util.find_spec("engine._ring") is None:
        # A checkout's engine/ folder (the current directory, first on sys.path)
        # shadows the installed package, and it has no compiled ring.
        raise ImportError(
            f"engine is imported from {__path__[0]}, a source tree without the compiled "
            "ring: run from another folder, or install it there (pip install -e .)"
        )
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return __all__
