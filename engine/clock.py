"""The display clock: which frame is due now, which frames are late, and when the
next one is due.  Pure logic, so it can be tested without a screen or a ring."""

from __future__ import annotations

import math

REANCHOR_S = 0.1  # a frame shown this late re-anchors the clock instead of bursting


class Clock:
    """Frame `index` is due at t0 + (index - base) / rate, rate = fps * speed."""

    def __init__(self, fps: float, speed: float = 1.0) -> None:
        self.rate = fps * speed
        self.t0: float | None = None  # None until the first frame anchors the clock
        self.base = 0
        self.paused_at: float | None = None
        self.reanchors = 0

    @property
    def running(self) -> bool:
        return self.t0 is not None and self.paused_at is None

    def anchor(self, index: int, now: float) -> None:
        """Make frame `index` due exactly now (paused: when play resumes)."""
        self.t0, self.base = now, index
        if self.paused_at is not None:
            self.paused_at = now

    def due_time(self, index: int) -> float:
        assert self.t0 is not None
        return self.t0 + (index - self.base) / self.rate

    def due_index(self, now: float) -> int:
        """The newest frame whose time has come."""
        assert self.t0 is not None
        at = self.paused_at if self.paused_at is not None else now
        return self.base + math.floor((at - self.t0) * self.rate + 1e-9)

    def lateness(self, index: int, now: float) -> float:
        return now - self.due_time(index)

    def showing(self, index: int, now: float, at: float | None = None) -> float:
        """Frame `index` is being shown now; returns its lateness (s) before any
        re-anchoring.  More than REANCHOR_S late, the clock restarts at it (due
        `at`, default now), so that a stall is followed by smooth playback rather
        than a burst of drops."""
        at = now if at is None else at
        if self.t0 is None:
            self.anchor(index, at)
            return 0.0
        late = self.lateness(index, now)
        if late > REANCHOR_S:
            self.anchor(index, at)
            self.reanchors += 1
        return late

    def pause(self, now: float) -> None:
        if self.paused_at is None:
            self.paused_at = now

    def resume(self, now: float) -> None:
        if self.paused_at is not None and self.t0 is not None:
            self.t0 += now - self.paused_at
        self.paused_at = None

    def step_to(self, index: int, now: float) -> None:
        """While paused: make `index` the frame the clock stands at."""
        self.anchor(index, now)
