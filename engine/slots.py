"""What one ring slot holds in the player: the decoded frame, the image to show,
the frame's metadata and the analysis result, at fixed offsets."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from engine._ring import Ring

# Per-frame metadata, written by the reader (index, pts, epoch, gap_ms, read_at), the
# analyzer (status, worker, result_len, analysis_ns) and the display (shown, for the writer).
META = np.dtype(
    [
        ("index", "<i8"),  # frame number in the source
        ("pts", "<f8"),  # seconds
        ("epoch", "<i8"),  # bumped by every seek: frames of an older epoch are stale
        ("analysis_ns", "<i8"),
        ("status", "<i4"),  # below
        ("worker", "<i4"),
        ("result_len", "<i4"),
        ("steps_len", "<i4"),  # the ordered steps' results (JSON), when the run has steps
        ("steps_status", "<i4"),  # OK, or ERROR (a step raised: its report is there)
        # A live source that came back after a gap: the milliseconds of the stream
        # lost just before this frame (0 for every other frame).
        ("gap_ms", "<i4"),
        ("read_at", "<f8"),  # when the reader got the frame: time.monotonic(), any process
        ("shown", "<i4"),  # set by the display as it lets the frame go: NOT_SHOWN, ...
        ("pad", "<i4"),
    ]
)
# Analysis status: done; raised (stops the run); raised under --on-error skip;
# not analyzed because it could no longer be shown in time (dropped late); read
# only as context for an analysis that looks back (set by the reader: one of the
# `lookback` frames before a start or seek point; not analyzed, not shown).
OK, ERROR, SKIPPED, LATE, PRELUDE = 0, 1, 2, 3, 4
# What the display did with a frame, for the writer: not played (a stale frame of
# before a seek, or left in the buffer when the run stopped); shown; dropped late
# (played, its time given to the frame shown before it).
NOT_SHOWN, SHOWN, DROPPED = 0, 1, 2
RESULT_BYTES = 16384  # room for the analysis result (JSON) or an error report
STEPS_BYTES = 16384  # room for the ordered steps' results, in a run that has steps
ARRAY_VALUES = 1024  # a numpy array in a result is stored as a list up to this size


class ResultError(ValueError):
    """What an analysis returned cannot be stored: the message says what it was
    and what is expected, after the word "returned"."""


EXPECTED = "expected a dict of numbers, strings and lists, or None"


def _brief(value: object) -> str:
    """A value as a message shows it: its type, and a short repr."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind} {text}"


def _finite(value: object) -> object:
    """`value` with NaN and the infinities (which JSON has no words for) as None."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json(payload: object) -> bytes:
    """Strict JSON (no NaN, no Infinity: other readers refuse them; they become
    null) of a result, numpy values as plain ones."""
    try:
        return json.dumps(payload, separators=(",", ":"), default=_plain, allow_nan=False).encode()
    except ValueError as e:
        if "Out of range float" not in str(e):
            raise
    plain = json.loads(json.dumps(payload, default=_plain))  # numpy values as floats
    return json.dumps(_finite(plain), separators=(",", ":"), allow_nan=False).encode()


def _plain(value: object) -> object:
    """json.dumps' fallback: numpy scalars as numbers, small arrays as lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.size <= ARRAY_VALUES:
        return value.tolist()
    if isinstance(value, np.ndarray):
        raise ResultError(
            f"{_brief(value)} in its result: at most {ARRAY_VALUES} values of an array "
            "are stored (draw images on `out`; return figures)"
        )
    raise ResultError(f"{_brief(value)} in its result; {EXPECTED}")


def encode_result(payload: object) -> bytes:
    """The JSON of what an analysis returned (numpy scalars and small arrays
    become plain numbers and lists), or ResultError saying why it cannot be."""
    if payload is None:
        return b""
    if not isinstance(payload, dict):
        hint = (
            " (draw on `out` rather than return an image)"
            if isinstance(payload, np.ndarray) and payload.ndim >= 2
            else ""
        )
        raise ResultError(f"{_brief(payload)}; {EXPECTED}{hint}")
    try:
        data = _json(payload)
    except ResultError:
        raise
    except (TypeError, ValueError) as e:  # a key that is not a string, a cycle
        raise ResultError(f"a dict that is not JSON ({e}); {EXPECTED}") from None
    if len(data) > RESULT_BYTES:
        raise ResultError(
            f"a result of {len(data)} bytes as JSON; at most {RESULT_BYTES} fit in a frame"
        )
    return data


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class SlotLayout:
    """Offsets of a frame's parts inside its slot."""

    height: int
    width: int
    separate_out: bool  # False when the analysis draws on the frame itself
    steps: bool = False  # room for the results of ordered steps

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
    def steps_offset(self) -> int:
        return self.result_offset + RESULT_BYTES

    @property
    def slot_bytes(self) -> int:
        return self.steps_offset + (STEPS_BYTES if self.steps else 0)

    def frame(self, ring: Ring, seq: int, readonly: bool = False) -> np.ndarray:
        return ring.view(seq, shape=self.shape, readonly=readonly)

    def out(self, ring: Ring, seq: int, readonly: bool = False) -> np.ndarray:
        return ring.view(seq, shape=self.shape, readonly=readonly, offset=self.out_offset)

    def meta(self, ring: Ring, seq: int) -> np.ndarray:
        """The metadata record of `seq` (a 0-d structured array, writable)."""
        return ring.view(seq, shape=(), dtype=META, offset=self.meta_offset)

    def write_result(self, ring: Ring, seq: int, meta: np.ndarray, payload: object) -> None:
        """Store a result (see encode_result); ResultError if it cannot be stored."""
        data = encode_result(payload)
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

    def write_steps(self, ring: Ring, seq: int, meta: np.ndarray, payload: dict) -> None:
        """Store the ordered steps' results (or a step's error report), by step name."""
        data = _json(payload)
        if len(data) > STEPS_BYTES:
            raise ResultError(
                f"results of {len(data)} bytes as JSON; at most {STEPS_BYTES} fit in a frame"
            )
        if data:
            ring.view(seq, shape=(len(data),), offset=self.steps_offset)[:] = np.frombuffer(
                data, np.uint8
            )
        meta["steps_len"] = len(data)

    def read_steps(self, ring: Ring, seq: int, meta: np.ndarray) -> dict | None:
        n = int(meta["steps_len"])
        if n == 0:
            return None
        return json.loads(ring.view(seq, shape=(n,), offset=self.steps_offset).tobytes())
