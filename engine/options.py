"""What a run is asked to do (`PlayOptions`, checked before anything starts) and the
sizes that follow from it: the analyzer pool and the ring."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import RunError
from engine.sources import PLAUSIBLE_FPS
from engine.videofile import VIDEO_EXTENSIONS  # noqa: F401  (what --output writes)

PREROLL = 4  # frames buffered before the clock starts


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) - 1)


@dataclass
class PlayOptions:
    source: str | int | None = "demo"
    analyze: str | Callable[..., Any] = "none"  # a name, or a function in a module
    workers: int | None = None
    buffer: int | None = None  # frames; default 2 s of video
    max_memory: int = 512 * 2**20
    batch: int = 3
    speed: float = 1.0
    fps: float | None = None  # None: the source's rate
    untimed: bool = False
    start: float = 0.0
    frames: int | None = None
    headless: bool | None = None  # None: headless where there is no display
    live: bool | None = None  # None: as the source says (a camera, a stream)
    output: str | None = None
    output_codec: str | None = None  # None: the extension's (engine.videofile.FORMATS)
    output_crf: float | None = None  # None: the encoder's default in engine.videofile
    results: str | None = None
    stats_json: str | None = None
    quiet: bool = False
    debug: bool = False
    on_error: str = "stop"
    then: tuple | list = ()  # ordered steps after the pool, in order: names or functions
    step_timeout: float | None = None  # seconds one frame may take in a step
    # Live sources: see RunConfig
    source_timeout: float = 5.0
    reconnect_for: float = 60.0
    max_latency: float | None = None  # None: 0.5 s in a live run

    def check(self) -> None:
        """Refuse options of the wrong type or out of range, and outputs that would
        overwrite the source or each other, naming the option."""
        self._check_types()
        if self.workers is not None and not 1 <= self.workers <= 64:
            raise RunError(f"--workers {self.workers}: must be from 1 to 64", exit_code=2)
        if self.buffer is not None and not 2 <= self.buffer <= 4096:
            raise RunError(f"--buffer {self.buffer}: must be from 2 to 4096 frames", exit_code=2)
        if not 1 <= self.batch <= 64:
            raise RunError(f"--batch {self.batch}: must be from 1 to 64", exit_code=2)
        if not (math.isfinite(self.speed) and 0.01 <= self.speed <= 100):
            raise RunError(f"--speed {self.speed}: must be from 0.01 to 100", exit_code=2)
        if self.fps is not None and not (
            math.isfinite(self.fps) and PLAUSIBLE_FPS[0] <= self.fps <= PLAUSIBLE_FPS[1]
        ):
            low, high = PLAUSIBLE_FPS
            raise RunError(f"--fps {self.fps}: must be from {low:g} to {high:g}", exit_code=2)
        if not (math.isfinite(self.start) and self.start >= 0):
            raise RunError(f"--start {self.start}: must be 0 or more seconds", exit_code=2)
        if self.frames is not None and self.frames < 1:
            raise RunError(f"--frames {self.frames}: must be at least 1", exit_code=2)
        if self.max_memory < 2**20:
            raise RunError(f"--max-memory {self.max_memory}: must be at least 1 MiB", exit_code=2)
        if self.step_timeout is not None and not (
            math.isfinite(self.step_timeout) and 0.1 <= self.step_timeout <= 86400
        ):
            raise RunError(
                f"--step-timeout {self.step_timeout}: must be from 0.1 to 86400 seconds",
                exit_code=2,
            )
        if not (math.isfinite(self.source_timeout) and 0.1 <= self.source_timeout <= 3600):
            raise RunError(
                f"--source-timeout {self.source_timeout}: must be from 0.1 to 3600 seconds",
                exit_code=2,
            )
        if math.isnan(self.reconnect_for) or self.reconnect_for < 0:
            raise RunError(
                f"--reconnect-for {self.reconnect_for}: must be 0 or more seconds (inf: forever)",
                exit_code=2,
            )
        if self.max_latency is not None and (math.isnan(self.max_latency) or self.max_latency <= 0):
            raise RunError(
                f"--max-latency {self.max_latency}: must be more than 0 seconds (inf: no limit)",
                exit_code=2,
            )
        if self.on_error not in ("stop", "skip"):
            raise RunError(f"--on-error {self.on_error}: must be stop or skip", exit_code=2)
        for option, path in (
            ("--output", self.output),
            ("--results", self.results),
            ("--stats-json", self.stats_json),
        ):
            if path is not None:
                folder = os.path.dirname(os.path.abspath(path))
                if not os.path.isdir(folder):
                    raise RunError(f"{option} {path}: no such folder {folder}", exit_code=2)
                if not os.access(folder, os.W_OK) or os.path.isdir(path):
                    raise RunError(f"{option} {path}: cannot write there", exit_code=2)
        self._check_outputs()

    def _check_types(self) -> None:
        """From Python, options come as given: the wrong type is one clear line too."""
        kinds = {
            "workers": (int, True),
            "buffer": (int, True),
            "max_memory": (int, False),
            "batch": (int, False),
            "frames": (int, True),
            "speed": (float, False),
            "fps": (float, True),
            "start": (float, False),
            "step_timeout": (float, True),
            "source_timeout": (float, False),
            "reconnect_for": (float, False),
            "max_latency": (float, True),
            "output_crf": (float, True),
            "untimed": (bool, False),
            "quiet": (bool, False),
            "debug": (bool, False),
            "headless": (bool, True),
            "live": (bool, True),
        }
        for name, (kind, optional) in kinds.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            if kind is bool:
                ok = isinstance(value, bool)
            elif kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok:
                what = {bool: "True or False", int: "a whole number", float: "a number"}[kind]
                what += " or None" if optional else ""
                raise RunError(
                    f"{name}={value!r}: must be {what}, not {type(value).__name__}", exit_code=2
                )

    def _check_outputs(self) -> None:
        """No output may be the source, or another output."""
        named = [("--output", self.output), ("--results", self.results)]
        named.append(("--stats-json", self.stats_json))
        seen: dict[str, str] = {}
        if isinstance(self.source, str) and os.path.exists(self.source):
            seen[os.path.realpath(self.source)] = "the source"
        for option, path in named:
            if path is None:
                continue
            real = os.path.realpath(path)
            if real in seen:
                raise RunError(
                    f"{option} {path}: is {seen[real]}: it would be overwritten", exit_code=2
                )
            seen[real] = option


def ring_slots(frames: int, lookback: int, slot_bytes: int, max_memory: int) -> int:
    """A power of two that holds `frames` (plus lookback), within max_memory."""
    slots = 2
    while slots < frames + lookback:
        slots *= 2
    while slots > 2 and slots * slot_bytes > max_memory:
        slots //= 2
    if slots * slot_bytes > max_memory or slots < lookback + 2:
        raise RunError(
            f"--max-memory {max_memory // 2**20} MiB: too small for two frames of "
            f"{slot_bytes / 2**20:.1f} MiB",
            exit_code=2,
        )
    return slots
