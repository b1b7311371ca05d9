"""Moving objects: the built-in steps `detect`, `track` and `count`.

    frame-engine play video.mp4 --analyze detect --then track --then count:y=0.6

`detect` is a pool analysis like the others (stateless, `@analysis(lookback=1)`):
the moving objects of a frame, found from the dense optical flow against the
previous frame. `track` and `count` are *ordered steps* (`@analysis(ordered=True)`):
they keep state from frame to frame, so they run after the pool, in one process,
and see every frame once, in order, with the results of the steps before them in
`ctx.results` (by step name), what happened to the frame in the pool in
`ctx.status` ("ok", "late", "skipped", "failed") and `ctx.reset` set where the
frame does not follow on from the one the step saw before.

Step forms. A step is either

- a function `fn(frame, out, ctx) -> dict | None`, as any analysis, taking no
  parameters; or
- a class, built once per process with keyword parameters from the command line
  (`count:y=0.6` gives `Count(y=0.6)`; `build_step` does it, with one clear error
  for a parameter the class does not take), whose instances are called on each
  frame, `step(frame, out, ctx) -> dict | None`, and have `close() -> dict | None`,
  called once at the end of the stream: a summary for the stats JSON.

Each step finds the results it needs under the built-ins' names: track reads
`ctx.results["detect"]["boxes"]`, count reads `ctx.results["track"]["tracks"]`;
a user's detector or tracker can stand in for them by giving the same form. A
frame whose status is not "ok", or that has no result of the step before, is a
gap: track coasts over it, count waits for the tracks to be seen again.

Step specs (`parse_step_spec`). Parameters, if any, follow the LAST colon of a
spec, as `key=value` pairs separated by commas, and only a part with an `=` in it
is parameters; what comes before is the step's name, a built-in or
"module:function". So

    count                    ("count", {})
    count:y=0.6,x0=0.1       ("count", {"y": 0.6, "x0": 0.1})
    mymod:Counter            ("mymod:Counter", {})
    mymod:Counter:y=0.6      ("mymod:Counter", {"y": 0.6})

A built-in's name followed by a colon is always followed by parameters (a name
that is a built-in is never a module, as in `resolve`): `count:y` is an error,
not the function y of a module count. Values are ints where they read as one,
else floats where they read as one, else strings; they cannot hold `,`, `:` or
`=`.

Results (each a small JSON-able dict, boxes as [x, y, w, h] in frame pixels):

- detect: `{"boxes": [[x, y, w, h], ...]}`, none on the first frame;
- track: `{"tracks": [{"id": 3, "box": [x, y, w, h], "missed": 0}, ...]}`, the
  confirmed tracks alive at this frame; `missed` is how many frames in a row it
  has not been seen (its box is then where it is expected to be); ids start at 1
  and are never reused within a run, not even after a reset; close() gives
  `{"tracks": how many ids were given}`;
- count: `{"crossed": n, "down": d, "up": u}` so far (`"right"`/`"left"` for a
  vertical line), and the same from close().
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from engine.analysis import (
    BUILTINS,
    AnalysisError,
    Context,
    _buffer,
    _gray,
    analysis,
    check_params,
)

__all__ = [
    "STEPS",
    "Clip",
    "Count",
    "Track",
    "build_step",
    "detect",
    "iou",
    "match",
    "moving_objects_clip",
    "parse_step_spec",
]

# --- detect --------------------------------------------------------------------

# The flow is computed at half resolution (at 768x576: about 15 ms of the 17 ms a
# frame costs on one core), with the parameters of the `flow` built-in.
DETECT_SCALE = 0.5
DETECT_FLOW = (0.5, 3, 15, 3, 5, 1.2, 0)  # pyr_scale, levels, winsize, iterations, poly_n, ...
# A pixel is moving where the flow is at least DETECT_MIN_SPEED frame pixels a frame
# and the grey levels changed by DETECT_MIN_CHANGE on average over a window
# DETECT_CHANGE_WINDOW wide (at the reduced resolution) around it: in flat parts of
# an image noise alone makes the flow wander by a pixel or two, and the flow of a
# moving object spreads over the flow's window (15) around it; the change keeps
# the boxes within a few pixels of the objects (measured on moving_objects_clip
# with noise of +-3 to +-12: IoU with the true boxes 0.78 at worst, 0.85 typically;
# centres 1 px off on average).
DETECT_MIN_SPEED = 1.0
DETECT_MIN_CHANGE = 8.0  # grey levels
DETECT_CHANGE_WINDOW = 5
# Limits, as of any detector of change: an object needs texture (a flat-coloured
# one changes the image only at its front and back edges, and gives a box at
# each), and one that moves half its size or more in a frame gets a box stretched
# over where it was too.
# The moving pixels are cleaned (an opening removes specks, a closing joins the
# parts of one object) and each connected region is an object, unless it covers
# less than DETECT_MIN_AREA of the frame. At most DETECT_MAX_BOXES, the largest:
# the result must fit in a frame's result area (16 KiB of JSON).
DETECT_OPEN, DETECT_CLOSE = 3, 7  # kernel sizes at the reduced resolution
DETECT_MIN_AREA = 1 / 2000
DETECT_MAX_BOXES = 200
DETECT_COLOUR = (0, 200, 255)  # BGR


@functools.lru_cache(maxsize=4)
def _kernel(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


@analysis(lookback=1)
def detect(frame: np.ndarray, out: np.ndarray, ctx: Context) -> dict[str, list[list[int]]]:
    """The moving objects of the frame: boxes around the regions that moved since
    the previous frame, drawn on `out` (none on the first frame)."""
    if ctx.prev is None:
        return {"boxes": []}
    height, width = frame.shape[:2]
    small = (round(width * DETECT_SCALE), round(height * DETECT_SCALE))
    shape = small[::-1]
    now = cv2.resize(
        _gray(frame), small, dst=_buffer("detect_now", shape), interpolation=cv2.INTER_AREA
    )
    before = cv2.resize(
        _gray(ctx.prev, "prev_gray"),
        small,
        dst=_buffer("detect_before", shape),
        interpolation=cv2.INTER_AREA,
    )
    # From this frame back to the previous one: at an object, the way back to
    # where it was.
    flow = cv2.calcOpticalFlowFarneback(
        now, before, _buffer("detect_flow", (*shape, 2), np.float32), *DETECT_FLOW
    )
    speed = cv2.magnitude(
        flow[..., 0], flow[..., 1], magnitude=_buffer("detect_speed", shape, np.float32)
    )
    change = cv2.absdiff(now, before, dst=_buffer("detect_change", shape))
    cv2.blur(change, (DETECT_CHANGE_WINDOW, DETECT_CHANGE_WINDOW), dst=change)
    moving = _buffer("detect_moving", shape)  # 0 or 1
    changed = _buffer("detect_changed", shape, bool)
    np.greater_equal(speed, DETECT_MIN_SPEED * DETECT_SCALE, out=moving.view(bool))
    np.greater_equal(change, DETECT_MIN_CHANGE, out=changed)
    np.logical_and(moving.view(bool), changed, out=moving.view(bool))
    cv2.morphologyEx(moving, cv2.MORPH_OPEN, _kernel(DETECT_OPEN), dst=moving)
    cv2.morphologyEx(moving, cv2.MORPH_CLOSE, _kernel(DETECT_CLOSE), dst=moving)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    keep = np.flatnonzero(area[1:] >= DETECT_MIN_AREA * moving.size) + 1  # 0: background
    if len(keep) > DETECT_MAX_BOXES:  # the largest, in the order found
        keep = np.sort(keep[np.argsort(-area[keep], kind="stable")[:DETECT_MAX_BOXES]])
    # A region covers where the object was and where it is now (the grey levels
    # changed at both): its box is the object's, stretched by the object's motion.
    # The mean flow over the region (from now back to before) is that motion:
    # take it off the side the object left. Not where the motion is half the box
    # or more: the object moved farther than its size, and the region is where it
    # is now (or was: such an object gives a box at each).
    flat = labels.ravel()
    back = (
        np.stack(
            [np.bincount(flat, flow[..., k].ravel(), minlength=n)[keep] for k in (0, 1)], axis=1
        )
        / area[keep, None]
    )
    boxes = stats[keep, :4].astype(np.float64)
    back[np.abs(back) >= boxes[:, 2:] / 2] = 0
    boxes[:, :2] += np.clip(-back, 0, None)
    boxes[:, 2:] -= np.abs(back)
    boxes = _to_frame(boxes, width, height)
    for x, y, w, h in boxes:
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), DETECT_COLOUR, _thickness(height))
    return {"boxes": boxes.tolist()}


def _to_frame(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes [x, y, w, h] at the reduced resolution, in frame pixels (ints, at
    least 1 x 1, in the frame)."""
    x0, y0 = (
        np.clip(np.rint(boxes[:, k] / DETECT_SCALE), 0, n - 1) for k, n in ((0, width), (1, height))
    )
    w = np.clip(np.rint(boxes[:, 2] / DETECT_SCALE), 1, width - x0)
    h = np.clip(np.rint(boxes[:, 3] / DETECT_SCALE), 1, height - y0)
    return np.stack([x0, y0, w, h], axis=1).astype(np.int64).reshape(-1, 4)


def _thickness(height: int) -> int:
    return max(1, round(2 * height / 720))


# --- track ---------------------------------------------------------------------

TRACK_COLOURS = np.array(  # BGR, by id
    [
        (75, 25, 230),
        (75, 180, 60),
        (25, 225, 255),
        (200, 130, 0),
        (48, 130, 245),
        (180, 30, 145),
        (240, 240, 70),
        (230, 50, 240),
        (60, 245, 210),
        (212, 190, 250),
    ]
)


def _track_colour(track_id: int) -> tuple[int, int, int]:
    b, g, r = TRACK_COLOURS[(track_id - 1) % len(TRACK_COLOURS)]
    return int(b), int(g), int(r)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The intersection over union of each box of `a` (n x 4) with each of `b`
    (m x 4), boxes [x, y, w, h]: an n x m array."""
    a = np.asarray(a, np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, np.float64).reshape(1, -1, 4)
    w = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(overlap: np.ndarray, least: float) -> list[tuple[int, int]]:
    """Greedy matching of rows to columns by `overlap` (an n x m array): the pair
    that overlaps most first, then the most of what is left, ..., down to `least`.
    Ties go to the lower row, then the lower column, so the result depends on the
    input only."""
    pairs = []
    if overlap.size:
        order = np.argsort(-overlap, axis=None, kind="stable")
        rows, cols = np.unravel_index(order, overlap.shape)
        used_rows, used_cols = set(), set()
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if overlap[r, c] < least:
                break
            if r not in used_rows and c not in used_cols:
                pairs.append((r, c))
                used_rows.add(r)
                used_cols.add(c)
    return pairs


@dataclass
class _Object:
    """One track: its last box seen, the motion of its centre, how often it was seen."""

    box: np.ndarray  # [x, y, w, h], float, where it was last seen
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre, px a frame
    hits: int = 1  # frames it was seen in
    missed: int = 0  # frames in a row it was not seen
    id: int = 0  # 0 until confirmed
    trail: deque = field(default_factory=deque)  # its centres seen, oldest first

    @property
    def centre(self) -> np.ndarray:
        return self.box[:2] + self.box[2:] / 2

    def expected(self, ahead: int = 1) -> np.ndarray:
        """Where its box is expected `ahead` frames from now (0: in the frame just
        missed), moved on at its velocity from where it was last seen."""
        box = self.box.copy()
        box[:2] += self.velocity * (self.missed + ahead)
        return box


def _check(step: str, name: str, value: Any, kind: type, low: float, high: float) -> None:
    """AnalysisError unless `value` is a `kind` in [low, high] (an int is a float too)."""
    ok = isinstance(value, int | float) if kind is float else isinstance(value, kind)
    if isinstance(value, bool) or not ok or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        raise AnalysisError(
            f"step {step}: {name} must be {what} from {low} to {high}, not {value!r}"
        )


@analysis(ordered=True)
class Track:
    """Gives the boxes of `detect` ids that stay with the objects from frame to
    frame, and draws each with its id and a trail of where it went.

    Each frame, the boxes are matched to the tracks by how much they overlap where
    the tracks are expected (IoU, greedy: the best overlap first), at least `iou`.
    A box matched by no track starts one, which gets an id once it has been seen
    in `hits` frames (a speck seen once gets none). A track not seen in a frame
    (no box matched it, or the frame has no detect result: it was late, skipped or
    lost in the pool) coasts on at its last velocity for up to `coast` frames, and
    is then forgotten. `ctx.reset` forgets all tracks (ids go on from where they
    were: an id names one object in a whole run). `trail`: how many of its last
    centres a track draws.
    """

    def __init__(self, iou: float = 0.3, coast: int = 10, hits: int = 2, trail: int = 30):
        _check("track", "iou", iou, float, 0.01, 1)
        _check("track", "coast", coast, int, 0, 10_000)
        _check("track", "hits", hits, int, 1, 10_000)
        _check("track", "trail", trail, int, 0, 10_000)
        self.least, self.coast, self.hits, self.trail = float(iou), coast, hits, trail
        self.objects: list[_Object] = []  # oldest first
        self.next_id = 1

    def __call__(
        self, frame: np.ndarray, out: np.ndarray, ctx: Context
    ) -> dict[str, list[dict[str, Any]]]:
        if ctx.reset:
            self.objects.clear()
        found = ctx.results.get("detect") if ctx.status == "ok" else None
        if found is None:
            for o in self.objects:
                o.missed += 1
        else:
            self._update(np.asarray(found["boxes"], np.float64).reshape(-1, 4))
        self.objects = [o for o in self.objects if o.missed <= self.coast]
        shown = [o for o in self.objects if o.id]
        self._draw(out, shown)
        return {
            "tracks": [{"id": o.id, "box": _ints(o.expected(0)), "missed": o.missed} for o in shown]
        }

    def _update(self, boxes: np.ndarray) -> None:
        """Match this frame's boxes to the tracks, move the matched ones, start new ones."""
        expected = np.array([o.expected() for o in self.objects]).reshape(-1, 4)
        pairs = match(iou(expected, boxes), self.least)
        seen = set()
        for r, c in pairs:
            o, box = self.objects[r], boxes[c]
            moved = (box[:2] + box[2:] / 2 - o.centre) / (o.missed + 1)
            o.velocity = moved if o.hits == 1 else 0.5 * o.velocity + 0.5 * moved
            o.box, o.missed = box, 0
            o.hits += 1
            seen.add(r)
        for r, o in enumerate(self.objects):
            if r not in seen:
                # a track not yet confirmed that is not seen again was a speck
                o.missed = o.missed + 1 if o.id else self.coast + 1
        matched = {c for _, c in pairs}
        self.objects += [_Object(box) for c, box in enumerate(boxes) if c not in matched]
        for o in self.objects:
            if not o.id and o.hits >= self.hits:
                o.id, self.next_id = self.next_id, self.next_id + 1
            if not o.missed:
                o.trail.append(o.centre)
                if len(o.trail) > self.trail:
                    o.trail.popleft()

    def _draw(self, out: np.ndarray, shown: list[_Object]) -> None:
        thickness = _thickness(out.shape[0])
        scale = out.shape[0] / 720
        for o in shown:
            colour = _track_colour(o.id)
            x, y, w, h = _ints(o.expected(0))
            # a coasting track: thinner, where it is expected
            cv2.rectangle(
                out, (x, y), (x + w - 1, y + h - 1), colour, thickness if not o.missed else 1
            )
            cv2.putText(
                out,
                str(o.id),
                (x, max(y - 4, 12)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.8 * scale,
                colour,
                thickness,
                cv2.LINE_AA,
            )
            if len(o.trail) > 1:
                points = np.rint(np.array(o.trail)).astype(np.int32)
                cv2.polylines(out, [points], False, colour, thickness)

    def close(self) -> dict[str, int]:
        """How many ids were given: objects tracked in the run."""
        return {"tracks": self.next_id - 1}


def _ints(box: np.ndarray) -> list[int]:
    return [int(v) for v in np.rint(box)]


# --- count ---------------------------------------------------------------------

COUNT_COLOUR = (255, 255, 255)


@analysis(ordered=True)
class Count:
    """Counts the tracks of `track` whose centre crosses a line, each at most once
    in each direction, and draws the line and the counts.

    The line is horizontal at `y` (a fraction of the height, 0.5 unless `x` is
    given) from `x0` to `x1` (fractions of the width), or vertical at `x` from
    `y0` to `y1`. A track crosses it where its centre was on one side when last
    seen and is on the other now (the way between them passing through the line
    between its ends): "down" or "up" across a horizontal line, "right" or "left"
    across a vertical one. Coasting tracks (not seen this frame) do not count
    until they are seen again. `ctx.reset` forgets where the tracks were; the
    counts go on.
    """

    def __init__(
        self,
        y: float | None = None,
        x: float | None = None,
        x0: float = 0.0,
        x1: float = 1.0,
        y0: float = 0.0,
        y1: float = 1.0,
    ):
        if y is not None and x is not None:
            raise AnalysisError(
                f"step count: give y (a horizontal line) or x (a vertical one), not both "
                f"(y={y!r}, x={x!r})"
            )
        for name, value in (("y", y), ("x", x), ("x0", x0), ("x1", x1), ("y0", y0), ("y1", y1)):
            if value is not None:
                _check("count", name, value, float, 0, 1)
        self.vertical = x is not None
        # along: the coordinate across the line (0 x, 1 y); the line's ends on the other
        self.along = 0 if self.vertical else 1
        self.at = float(x if self.vertical else (0.5 if y is None else y))
        self.ends = (float(y0), float(y1)) if self.vertical else (float(x0), float(x1))
        if self.ends[0] >= self.ends[1]:
            lo, hi = ("y0", "y1") if self.vertical else ("x0", "x1")
            raise AnalysisError(
                f"step count: {lo} must be less than {hi} "
                f"({lo}={self.ends[0]}, {hi}={self.ends[1]})"
            )
        self.names = ("right", "left") if self.vertical else ("down", "up")
        self.counts = dict.fromkeys(self.names, 0)
        self.counted: set[tuple[int, str]] = set()
        self.last: dict[int, np.ndarray] = {}  # track id -> its centre when last seen

    def __call__(self, frame: np.ndarray, out: np.ndarray, ctx: Context) -> dict[str, int]:
        height, width = frame.shape[:2]
        size = np.array([width, height], np.float64)
        line = self.at * size[self.along]
        if ctx.reset:
            self.last.clear()
        found = ctx.results.get("track")
        tracks = found["tracks"] if found is not None else []
        alive = set()
        for t in tracks:
            alive.add(t["id"])
            if t.get("missed", 0):
                continue
            box = np.asarray(t["box"], np.float64)
            now = box[:2] + box[2:] / 2
            before = self.last.get(t["id"])
            self.last[t["id"]] = now
            if before is None:
                continue
            a, b = before[self.along], now[self.along]
            if (a < line) == (b < line):
                continue
            # where the way from before to now meets the line, along it
            other = 1 - self.along
            meet = before[other] + (now[other] - before[other]) * (line - a) / (b - a)
            lo, hi = (e * size[other] for e in self.ends)
            direction = self.names[0] if b >= line else self.names[1]
            if lo <= meet <= hi and (t["id"], direction) not in self.counted:
                self.counted.add((t["id"], direction))
                self.counts[direction] += 1
        # gone tracks: forgotten, but their counts stay
        self.last = {k: v for k, v in self.last.items() if k in alive or found is None}
        self._draw(out, line, size)
        return self.close()

    def _draw(self, out: np.ndarray, line: float, size: np.ndarray) -> None:
        other = 1 - self.along
        ends = [np.zeros(2), np.zeros(2)]
        for end, e in zip(ends, self.ends, strict=True):
            end[self.along], end[other] = line, e * size[other]
        start, stop = (tuple(int(v) for v in np.rint(e)) for e in ends)
        thickness = _thickness(out.shape[0])
        cv2.line(out, start, stop, COUNT_COLOUR, thickness, cv2.LINE_AA)
        a, b = self.names
        text = f"{a} {self.counts[a]}  {b} {self.counts[b]}"
        scale = out.shape[0] / 720
        origin = (start[0] + 6, start[1] - 8) if not self.vertical else (start[0] + 6, 30)
        origin = (origin[0], max(origin[1], int(30 * scale)))
        cv2.putText(
            out,
            text,
            origin,
            cv2.FONT_HERSHEY_SIMPLEX,
            0.9 * scale,
            COUNT_COLOUR,
            thickness,
            cv2.LINE_AA,
        )

    def close(self) -> dict[str, int]:
        """The counts: crossings in all, and in each direction."""
        return {"crossed": sum(self.counts.values()), **self.counts}


# --- steps by name and their parameters -----------------------------------------

STEPS: dict[str, Callable[..., Any]] = {"detect": detect, "track": Track, "count": Count}


def parse_step_spec(spec: str) -> tuple[str, dict[str, int | float | str]]:
    """A step's name and its parameters, from a spec such as "count:y=0.6,x0=0.1"
    (the module docstring gives the rule); AnalysisError naming the spec and the
    problem for a bad one."""
    if not isinstance(spec, str) or not spec.strip():
        raise AnalysisError(f"step {spec!r}: give a step's name, e.g. count or count:y=0.6")
    name, colon, last = spec.rpartition(":")
    if not colon or "=" not in last:
        first = spec.split(":")[0]
        if ":" in spec and first in _builtin_names():
            raise AnalysisError(
                f"step {spec!r}: after {first}: come parameters, key=value pairs separated "
                f"by commas (e.g. {first}:key=1)"
            )
        if "=" in spec:
            raise AnalysisError(
                f"step {spec!r}: parameters come after the step's name and a colon "
                "(e.g. count:y=0.6)"
            )
        return spec, {}
    if not name:
        raise AnalysisError(f"step {spec!r}: no step's name before the parameters")
    params: dict[str, int | float | str] = {}
    for pair in last.split(","):
        key, eq, value = (part.strip() for part in pair.partition("="))
        if not eq or not key.isidentifier() or not value or "=" in value:
            raise AnalysisError(
                f"step {spec!r}: {pair.strip()!r} is not key=value (parameters are "
                "key=value pairs separated by commas)"
            )
        if key in params:
            raise AnalysisError(f"step {spec!r}: {key} is given twice")
        params[key] = _value(value)
    return name, params


def _value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _builtin_names() -> set[str]:
    return {*BUILTINS, *STEPS}


def build_step(name: str, target: Callable[..., Any], params: dict[str, Any]) -> Callable[..., Any]:
    """What is called on each frame for the step `name`: a class built with
    `params` (once per process), or a function as it is (it takes none);
    AnalysisError naming the step for a parameter it does not take or a bad value."""
    check_params(name, target, params)
    if not isinstance(target, type):
        return target
    try:
        return target(**params)
    except AnalysisError:
        raise
    except (TypeError, ValueError) as e:
        raise AnalysisError(f"step {name!r}: {e}") from e


# --- a test scene ----------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """A synthetic clip of objects moving along known straight paths."""

    frames: np.ndarray  # n x height x width x 3, uint8, BGR
    boxes: np.ndarray  # n x objects x 4: each object's box [x, y, w, h] in each frame, int

    @property
    def centres(self) -> np.ndarray:
        """n x objects x 2: each object's centre (x, y) in each frame."""
        return self.boxes[..., :2] + self.boxes[..., 2:] / 2

    def crossings(self, y: float = 0.5) -> tuple[int, int]:
        """How many objects cross the horizontal line at `y` (a fraction of the
        height) downwards and upwards (each at most once in each direction)."""
        line = y * self.frames.shape[1]
        below = self.centres[..., 1] >= line  # frames x objects
        down = (~below[:-1] & below[1:]).any(axis=0)
        up = (below[:-1] & ~below[1:]).any(axis=0)
        return int(down.sum()), int(up.sum())


def moving_objects_clip(
    frames: int = 60,
    size: tuple[int, int] = (768, 576),
    n_objects: int = 4,
    seed: int = 0,
    noise: int = 3,
) -> Clip:
    """`frames` frames of `size` (width, height): `n_objects` textured ellipses on
    a still textured background, each in a lane of its own (a vertical strip of the
    frame: they never meet), moving at a steady 2-6 px a frame, mostly up or down,
    never leaving the frame. Objects 0, 2, 4, ... cross the middle line (y = 0.5)
    once, between the first and last quarter of the clip; the others stay at least
    half their height plus 20 px away from it. Each frame gets its own noise
    (uniform, +-`noise` grey levels). The same arguments give the same clip."""
    width, height = size
    lane = width / n_objects
    if frames < 8 or lane < 48 or height < 160:
        raise ValueError(
            f"moving_objects_clip: too small for {n_objects} objects: {size}, {frames}"
        )
    rng = np.random.default_rng(seed)
    background = _texture(rng, height, width, 12, (60, 190))
    middle = height / 2
    starts, velocities, sizes, textures = [], [], [], []
    for i in range(n_objects):
        w = int(rng.uniform(0.5, 0.75) * min(lane - 16, height * 0.2))
        h = int(rng.uniform(0.6, 1.0) * height * 0.12)
        sizes.append((w, h))
        textures.append(_texture(rng, h, w, 1.5, (0, 255)))
        room = middle - h / 2 - 4  # from the middle to an edge, for the centre
        if i % 2 == 0:  # crosses the middle line at frame `at`
            at = rng.uniform(0.25, 0.75) * (frames - 1)
            vy = min(rng.uniform(2, 6), room / max(at, frames - 1 - at))
            vy *= rng.choice([-1, 1])
            cy = middle - vy * at
        else:  # moves away from it on one side
            gap = h / 2 + 20
            vy = min(rng.uniform(2, 6), (room - gap) / (frames - 1))
            side = rng.choice([-1, 1])
            vy *= side
            cy = middle + side * gap
        drift = (lane - w - 8) / 2  # the most the centre may move sideways in its lane
        vx = rng.uniform(-1, 1) * min(1.0, drift / (frames - 1))
        cx = (i + 0.5) * lane - vx * (frames - 1) / 2
        starts.append((cx - w / 2, cy - h / 2))
        velocities.append((vx, vy))
    t = np.arange(frames)[:, None, None]
    corners = np.rint(np.array(starts)[None] + t * np.array(velocities)[None]).astype(np.int64)
    boxes = np.concatenate([corners, np.broadcast_to(np.array(sizes), corners.shape)], axis=2)
    video = np.empty((frames, height, width, 3), np.uint8)
    masks = [
        cv2.ellipse(
            np.zeros((h, w), np.uint8), (w // 2, h // 2), (w // 2, h // 2), 0, 0, 360, 1, -1
        ).astype(bool)
        for w, h in sizes
    ]
    for f in range(frames):
        image = background.copy()
        for (x, y, w, h), texture, mask in zip(boxes[f], textures, masks, strict=True):
            np.copyto(image[y : y + h, x : x + w], texture, where=mask[..., None])
        shaken = rng.integers(-noise, noise + 1, image.shape, np.int16) + image
        np.clip(shaken, 0, 255, out=shaken)
        video[f] = shaken
    return Clip(video, boxes)


def _texture(
    rng: np.random.Generator, height: int, width: int, grain: float, levels: tuple[int, int]
) -> np.ndarray:
    """A random colour texture: noise smoothed over `grain` pixels, stretched to `levels`."""
    noise = rng.random((height, width, 3), np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), grain)
    lo, hi = smooth.min(), smooth.max()
    low, high = levels
    return (low + (smooth - lo) * ((high - low) / max(hi - lo, 1e-6))).astype(np.uint8)
