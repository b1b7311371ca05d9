"""What one ring slot holds in the player: the decoded frame, the image to show,
the frame's metadata and the analysis result, at fixed offsets."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from engine._ring import Ring

# Per-frame metadata, written by the reader (index, pts, epoch) and the analyzer
# (status, worker, result_len, analysis_ns).
META = np.dtype(
    [
        ("index", "<i8"),  # frame number in the source
        ("pts", "<f8"),  # seconds
        ("epoch", "<i8"),  # bumped by every seek: frames of an older epoch are stale
        ("analysis_ns", "<i8"),
        ("status", "<i4"),  # below
        ("worker", "<i4"),
        ("result_len", "<i4"),
        ("pad", "<i4"),
    ]
)
# Analysis status: done; raised (stops the run); raised under --on-error skip;
# not analyzed because it could no longer be shown in time (dropped late); read
# only as context for an analysis that looks back (set by the reader: one of the
# `lookback` frames before a start or seek point; not analyzed, not shown).
OK, ERROR, SKIPPED, LATE, PRELUDE = 0, 1, 2, 3, 4
RESULT_BYTES = 16384  # room for the analysis result (JSON) or an error report


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class SlotLayout:
    """Offsets of a frame's parts inside its slot."""

    height: int
    width: int
    separate_out: bool  # False when the analysis draws on the frame itself

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def image_bytes(self) -> int:
        return self.height * self.width * 3

    @property
    def out_offset(self) -> int:
        return _align(self.image_bytes) if self.separate_out else 0

    @property
    def meta_offset(self) -> int:
        return self.out_offset + _align(self.image_bytes)

    @property
    def result_offset(self) -> int:
        return self.meta_offset + _align(META.itemsize)

    @property
    def slot_bytes(self) -> int:
        return self.result_offset + RESULT_BYTES

    def frame(self, ring: Ring, seq: int, readonly: bool = False) -> np.ndarray:
        return ring.view(seq, shape=self.shape, readonly=readonly)

    def out(self, ring: Ring, seq: int, readonly: bool = False) -> np.ndarray:
        return ring.view(seq, shape=self.shape, readonly=readonly, offset=self.out_offset)

    def meta(self, ring: Ring, seq: int) -> np.ndarray:
        """The metadata record of `seq` (a 0-d structured array, writable)."""
        return ring.view(seq, shape=(), dtype=META, offset=self.meta_offset)

    def write_result(self, ring: Ring, seq: int, meta: np.ndarray, payload: object) -> None:
        """Store a JSON-able payload; raise ValueError if it does not fit."""
        data = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else b""
        if len(data) > RESULT_BYTES:
            raise ValueError(
                f"result of {len(data)} bytes is larger than the {RESULT_BYTES} bytes a frame has"
            )
        if data:
            ring.view(seq, shape=(len(data),), offset=self.result_offset)[:] = np.frombuffer(
                data, np.uint8
            )
        meta["result_len"] = len(data)

    def read_result(self, ring: Ring, seq: int, meta: np.ndarray) -> object:
        n = int(meta["result_len"])
        if n == 0:
            return None
        return json.loads(ring.view(seq, shape=(n,), offset=self.result_offset).tobytes())
