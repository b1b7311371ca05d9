"""What the analyzers run: the built-in analyses and the lookup of users' functions.

An analysis is a function `fn(frame, out, ctx)`. `frame` is the decoded image
(height x width x 3 uint8, BGR) and must not be written; `out` is the image that
will be shown: a copy of `frame` to draw on, or, when the function is marked
`in_place`, the frame's own memory (no copy: it draws on the frame). `ctx` is a
`Context`. The
function may return a small dict of plain numbers (JSON-able), or None.

    from engine.analysis import analysis

    @analysis(lookback=1)          # ctx.prev is the previous frame
    def brightness_change(frame, out, ctx):
        if ctx.prev is None:
            return {"change": 0.0}
        return {"change": float(frame.mean()) - float(ctx.prev.mean())}

A function marked `@analysis(lookback=k)` sees the k frames before this one in
`ctx.history`, newest first: `history[0]` is frame `frame_index - 1` (also
`ctx.prev`), `history[1]` frame `frame_index - 2`, and so on. They are read-only
views into the ring, not copies: the ring keeps the k items before any item in
flight intact, so they stay valid while the function runs (and only then: copy
one to keep it). History is shorter than k where the stream has fewer frames of
the same run before this one: at frame 0, after a frame the source lost (a gap in
the frame numbers), and after a seek (the older frames are of before it). A run
started with --start, or a seek in the window, first reads the k frames before
the point it goes to, as context only (not analyzed, shown or counted as read),
so the first frame played has its full history.

The built-ins keep their scratch images between calls (per thread), so a worker
allocates nothing per frame beyond what OpenCV does inside its functions.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cv2
import numpy as np

from engine.errors import FrameEngineError, MainGuardError

__all__ = [
    "BUILTINS",
    "Analysis",
    "AnalysisError",
    "Context",
    "analysis",
    "blur",
    "edges",
    "flow",
    "gray",
    "motion",
    "none",
    "resolve",
]

F = TypeVar("F", bound=Callable[..., Any])


class AnalysisError(FrameEngineError):
    """An analysis that cannot be used; one line naming it and the problem."""


_importing: list[str] = []  # modules of analyses being imported, innermost last


def importing() -> str | None:
    """The module of an analysis being imported right now, if any: a run started
    then comes from that module's top level (a script without a main guard)."""
    return _importing[-1] if _importing else None


@dataclass
class Context:
    """What an analysis knows about the frame besides its pixels."""

    frame_index: int
    pts: float  # seconds
    prev: np.ndarray | None  # the previous frame, when the analysis has lookback >= 1
    worker: int
    # The frames before this one, newest first: frame_index - 1, frame_index - 2, ...
    # up to the analysis's lookback (fewer at the start, after a gap or a seek).
    history: tuple[np.ndarray, ...] = ()
    # For the ordered steps (after the pool): the results of the earlier steps for
    # this frame by step name (None for a step that produced none for it), what
    # happened to the frame in the pool ("ok"; "late": not analyzed, it would have
    # been shown late; "skipped": the analysis raised under --on-error skip;
    # "failed": its analyzer died), and whether it does not follow on from the
    # frame this step saw before (the first frame, a seek, a restarted step, a
    # live source back after a gap): a tracker starts over.
    results: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    reset: bool = False
    # A live source that stopped and came back: the seconds of the stream lost just
    # before this frame (frame_index and pts jump by as much); 0 otherwise. The
    # ordered steps are also told to reset on such a frame.
    gap: float = 0.0

    def __post_init__(self) -> None:
        # One of the two given: the other follows (prev is history[0]).
        if self.history:
            self.prev = self.history[0]
        elif self.prev is not None:
            self.history = (self.prev,)


@dataclass(frozen=True)
class Analysis:
    """A resolved analysis or step: what to call and how the pipeline must call it."""

    name: str  # as given, parameters included
    fn: Callable[..., Any]  # the function, or the class built once per process
    in_place: bool  # True: out is frame itself (no copy); False: out starts as a copy
    lookback: int  # how many previous frames it needs (ctx.history); ctx.prev when >= 1
    ordered: bool = False  # a step that must see every frame in order, in one process
    batch: int = 1  # > 1: called with runs of up to `batch` frames at once
    params: dict[str, Any] = field(default_factory=dict, compare=False)  # for a class
    step: str = ""  # its name in ctx.results: the name without parameters

    def make(self) -> Callable[..., Any]:
        """What is called on each frame: the class built with its parameters (call
        it once per process), or the function itself."""
        from engine.objects import build_step

        return build_step(self.step, self.fn, self.params)


def analysis(
    *, in_place: bool = False, lookback: int = 0, ordered: bool = False, batch: int = 1
) -> Callable[[F], F]:
    """Mark a function (or a class) as an analysis that works in place (it draws
    nothing, so the pipeline need not copy the frame) and/or looks back at the
    `lookback` frames before each one (ctx.history, newest first; ctx.prev the
    newest). `ordered`: a step that must see every frame once, in order, in one
    process (it keeps state from frame to frame: a tracker, a counter), run after
    the pool with --then. `batch=n`: called with runs of up to n consecutive frames
    at once, `fn(frames, outs, ctxs)` with frames and outs of shape (k, h, w, 3),
    k <= n, views into the ring (no copy), returning a list of k results (or None)."""

    def mark(fn: F) -> F:
        fn.in_place = in_place  # type: ignore[attr-defined]
        fn.lookback = lookback  # type: ignore[attr-defined]
        fn.ordered = ordered  # type: ignore[attr-defined]
        fn.batch = batch  # type: ignore[attr-defined]
        return fn

    return mark


# --- scratch images ------------------------------------------------------------

_scratch = threading.local()


def _buffer(
    key: str, shape: tuple[int, ...], dtype: type = np.uint8, fill: Any = None
) -> np.ndarray:
    """A scratch array kept between calls in this thread, made anew (and filled
    with `fill`, if given) only when the shape changes."""
    buffers: dict[str, np.ndarray] = _scratch.__dict__.setdefault("buffers", {})
    buf = buffers.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = buffers[key] = np.empty(shape, dtype)
        if fill is not None:
            buf[:] = fill
    return buf


def _gray(image: np.ndarray, key: str = "gray") -> np.ndarray:
    """The grey image of a BGR image, in the scratch array `key`."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=_buffer(key, image.shape[:2]))


# --- the built-ins -------------------------------------------------------------

EDGE_COLOUR = (0, 255, 0)  # BGR
MOTION_TINT = (0, 0, 160, 0)  # added to moving pixels: towards red
MOTION_THRESHOLD = 25  # grey levels of difference that count as motion
FLOW_SCALE = 0.5  # flow is computed at half resolution: 4x faster, plenty for display
# The flow overlay: an arrow from the centre of each cell of a grid (24 px at 720p)
# that moves at least FLOW_MIN_PX a frame and whose grey levels changed by
# FLOW_MIN_CHANGE on average (a still scene shows nothing: in flat parts of an
# image, noise alone makes the flow wander by a pixel or two), FLOW_GAIN times
# longer than the motion in one frame, and at least FLOW_MIN_CELLS and at most
# FLOW_MAX_CELLS cells long (a short arrow would be a dot, a long one would cover
# its neighbours).
FLOW_CELL = 1 / 30  # of the frame height
FLOW_MIN_PX = 1.0
FLOW_MIN_CHANGE = 3.0  # grey levels
FLOW_GAIN = 4
FLOW_MIN_CELLS, FLOW_MAX_CELLS = 0.5, 2.0
FLOW_HEAD = 0.35  # arrow head length, of the arrow's (at least 3 line widths); sides at 25 deg
FLOW_COLOUR = (0, 255, 255)


@analysis(in_place=True)
def none(frame: np.ndarray, out: np.ndarray, ctx: Context) -> None:
    """Nothing: the frame is shown as decoded."""
    return None


@analysis()
def gray(frame: np.ndarray, out: np.ndarray, ctx: Context) -> None:
    """The frame in grey."""
    cv2.cvtColor(_gray(frame), cv2.COLOR_GRAY2BGR, dst=out)


@analysis()
def edges(frame: np.ndarray, out: np.ndarray, ctx: Context) -> dict[str, int]:
    """Canny edges of the grey image, painted over the frame; their pixel count."""
    g = _gray(frame)
    found = cv2.Canny(g, 100, 200, edges=_buffer("edges", g.shape))
    cv2.copyTo(_buffer("edge_colour", out.shape, fill=EDGE_COLOUR), found, out)
    return {"edge_pixels": int(cv2.countNonZero(found))}


@analysis()
def blur(frame: np.ndarray, out: np.ndarray, ctx: Context) -> None:
    """A Gaussian blur (15x15)."""
    cv2.GaussianBlur(frame, (15, 15), 0, dst=out)


@analysis(lookback=1)
def motion(frame: np.ndarray, out: np.ndarray, ctx: Context) -> dict[str, float]:
    """Pixels whose grey level changed since the previous frame, tinted red; the
    fraction of the image that moved (0 for the first frame)."""
    if ctx.prev is None:
        return {"motion": 0.0}
    diff = cv2.absdiff(
        _gray(frame), _gray(ctx.prev, "prev_gray"), dst=_buffer("diff", out.shape[:2])
    )
    cv2.threshold(diff, MOTION_THRESHOLD, 255, cv2.THRESH_BINARY, dst=diff)
    cv2.add(out, MOTION_TINT, dst=out, mask=diff)
    return {"motion": cv2.countNonZero(diff) / diff.size}


@functools.lru_cache(maxsize=8)
def _flow_grid(height: int, width: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The flow overlay's grid for a frame of this size: the cell size (px), the
    centres of the cells (n x 2, x and y in the frame, float32) and the same points
    in the reduced flow field (fx, fy)."""
    cell = max(12, round(height * FLOW_CELL))
    rows, cols = max(1, height // cell), max(1, width // cell)
    y, x = np.mgrid[0:rows, 0:cols]
    x = ((x.ravel() + 0.5) * (width / cols)).astype(np.float32)
    y = ((y.ravel() + 0.5) * (height / rows)).astype(np.float32)
    fh, fw = round(height * FLOW_SCALE), round(width * FLOW_SCALE)
    fx = np.minimum((x * FLOW_SCALE).astype(np.intp), fw - 1)
    fy = np.minimum((y * FLOW_SCALE).astype(np.intp), fh - 1)
    centres = np.stack([x, y], axis=1)
    for a in (centres, fx, fy):
        a.flags.writeable = False
    return cell, centres, fx, fy


_HEAD_COS, _HEAD_SIN = np.cos(np.radians(25)), np.sin(np.radians(25))


def _draw_flow(out: np.ndarray, field: np.ndarray, change: np.ndarray) -> None:
    """Arrows for the flow field `field` on `out`, where `change` (the absolute
    difference of the two grey images; both reduced by FLOW_SCALE) shows that
    something changed, all in one polylines call (a shaft and a triangular head
    each): drawing stays a small part of computing the flow. Farneback smooths the
    field over more than a cell, so the value at a cell's centre stands for it."""
    height, width = out.shape[:2]
    cell, centres, fx, fy = _flow_grid(height, width)
    rows, cols = height // cell or 1, width // cell or 1
    changed = cv2.resize(
        change, (cols, rows), dst=_buffer("flow_change", (rows, cols)), interpolation=cv2.INTER_AREA
    )  # the mean change in each cell
    motion = field[fy, fx] / FLOW_SCALE  # frame pixels per frame
    speed = np.hypot(motion[:, 0], motion[:, 1])
    moving = (speed >= FLOW_MIN_PX) & (changed.ravel() >= FLOW_MIN_CHANGE)
    if not moving.any():
        return
    start, motion, speed = centres[moving], motion[moving], speed[moving]
    length = np.clip(speed * FLOW_GAIN, FLOW_MIN_CELLS * cell, FLOW_MAX_CELLS * cell)
    ux, uy = motion[:, 0] / speed, motion[:, 1] / speed
    tip = start + np.stack([ux, uy], axis=1) * length[:, None]
    thickness = max(1, round(2 * height / 720))
    head = np.maximum(FLOW_HEAD * length, 3 * thickness)[:, None]
    # the head's corners: back from the tip, 25 degrees either side of the shaft
    left = np.stack([ux * _HEAD_COS - uy * _HEAD_SIN, uy * _HEAD_COS + ux * _HEAD_SIN], axis=1)
    right = np.stack([ux * _HEAD_COS + uy * _HEAD_SIN, uy * _HEAD_COS - ux * _HEAD_SIN], axis=1)
    arrows = np.stack([start, tip, tip - head * left, tip - head * right, tip], axis=1)
    # LINE_8, not LINE_AA: anti-aliased lines 2 px thick cost 4x as much (about 4 ms
    # for 1,000 arrows at 720p, an eighth of the flow itself; LINE_8: 0.9 ms).
    cv2.polylines(out, np.rint(arrows).astype(np.int32), False, FLOW_COLOUR, thickness)


@analysis(lookback=1)
def flow(frame: np.ndarray, out: np.ndarray, ctx: Context) -> dict[str, float]:
    """Dense optical flow (Farneback) from the previous frame, drawn as arrows where
    the image moves (one per grid cell, FLOW_GAIN times the motion of a frame long);
    the mean and largest motion in pixels per frame (0 for the first frame)."""
    if ctx.prev is None:
        return {"flow_mean": 0.0, "flow_max": 0.0}
    height, width = out.shape[:2]
    small = (round(width * FLOW_SCALE), round(height * FLOW_SCALE))
    now = cv2.resize(
        _gray(frame), small, dst=_buffer("flow_now", small[::-1]), interpolation=cv2.INTER_AREA
    )
    before = cv2.resize(
        _gray(ctx.prev, "prev_gray"),
        small,
        dst=_buffer("flow_before", small[::-1]),
        interpolation=cv2.INTER_AREA,
    )
    field = cv2.calcOpticalFlowFarneback(
        before, now, _buffer("flow", (small[1], small[0], 2), np.float32), 0.5, 3, 15, 3, 5, 1.2, 0
    )
    speed = _buffer("flow_speed", small[::-1], np.float32)
    np.hypot(field[..., 0], field[..., 1], out=speed)
    _draw_flow(out, field, cv2.absdiff(now, before, dst=_buffer("flow_change_px", small[::-1])))
    return {
        "flow_mean": float(speed.mean()) / FLOW_SCALE,
        "flow_max": float(speed.max()) / FLOW_SCALE,
    }


BUILTINS: dict[str, Callable[..., Any]] = {
    "none": none,
    "gray": gray,
    "edges": edges,
    "blur": blur,
    "motion": motion,
    "flow": flow,
}


def resolve(spec: str | Callable[..., Any]) -> Analysis:
    """The analysis or step `spec` names: a built-in, "module:function" (a dotted
    path after the colon reaches into classes or objects), imported here, either
    followed by ":key=value,..." parameters for a class (engine.objects gives the
    rule), or a function or class defined at the top level of an importable module
    (the processes import it by its module and name). Call it in each process that
    runs it, and once in the parent to report a bad name early."""
    from engine.objects import STEPS, parse_step_spec

    params: dict[str, Any] = {}
    if callable(spec) and not isinstance(spec, str):
        name = step = _name_of(spec)
        fn = spec
    elif not isinstance(spec, str):
        raise AnalysisError(
            f"analysis {spec!r}: give a function, a built-in's name or 'module:function'"
        )
    else:
        name = spec
        step, params = parse_step_spec(spec)
        if step in BUILTINS:
            fn = BUILTINS[step]
        elif step in STEPS:
            fn = STEPS[step]
        elif step.count(":") == 1 and all(step.split(":")):
            fn = _import(step)
        else:
            names = [*BUILTINS, *STEPS]
            close = difflib.get_close_matches(step.lower(), names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise AnalysisError(
                f"analysis {spec!r}: no such built-in (choose from {', '.join(names)}) and "
                f"not module:function{hint}"
            )
    in_place = getattr(fn, "in_place", False)
    lookback = getattr(fn, "lookback", 0)
    ordered = getattr(fn, "ordered", False)
    batch = getattr(fn, "batch", 1)
    for flag, value in (("in_place", in_place), ("ordered", ordered)):
        if not isinstance(value, bool):
            raise AnalysisError(f"analysis {name!r}: {flag} must be True or False, not {value!r}")
    for what, value, low in (("lookback", lookback, 0), ("batch", batch, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise AnalysisError(
                f"analysis {name!r}: {what} must be a whole number >= {low}, not {value!r}"
            )
    if in_place and lookback:
        # prev would be a frame that another worker may be drawing on at that moment.
        raise AnalysisError(f"analysis {name!r}: in_place and lookback cannot go together")
    if name.split(":")[0] == "__main__":
        raise AnalysisError(
            f"analysis {name!r}: the analyzer processes cannot import the main script; "
            "put the function in a module"
        )
    check_params(step, fn, params)
    return Analysis(
        name=name,
        fn=fn,
        in_place=in_place,
        lookback=lookback,
        ordered=ordered,
        batch=batch,
        params=params,
        step=step,
    )


def check_params(step: str, fn: Callable[..., Any], params: dict[str, Any]) -> None:
    """AnalysisError for parameters that a step does not take (their values are the
    class's to check when it is built, in the process that runs it)."""
    if not isinstance(fn, type):
        if params:
            raise AnalysisError(
                f"step {step!r}: a function takes no parameters (given {', '.join(params)})"
            )
        return
    accepted = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    unknown = [k for k in params if k not in accepted]
    if unknown:
        takes = ", ".join(accepted) if accepted else "none"
        raise AnalysisError(f"step {step!r}: no parameter {unknown[0]!r} (it takes {takes})")


def _name_of(fn: Callable[..., Any]) -> str:
    """ "module:qualname" of a function the analyzer processes can import, or
    AnalysisError saying why they cannot and what to do."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    shown = qualname or repr(fn)
    if not module or not qualname:
        raise AnalysisError(
            f"analysis {shown}: not a function the analyzer processes can import; "
            "define it with def at the top level of a module"
        )
    if qualname.split(".")[-1] == "<lambda>":
        raise AnalysisError(
            f"analysis {module}.<lambda>: a lambda cannot be sent to the analyzer "
            "processes; define the function with def at the top level of a module"
        )
    if "<locals>" in qualname:
        raise AnalysisError(
            f"analysis {module}.{qualname}: defined inside a function, so the analyzer "
            "processes cannot import it; define it at the top level of a module"
        )
    if module == "__main__":
        raise AnalysisError(
            f"analysis __main__.{qualname}: defined in the main script, which the analyzer "
            "processes do not import; move it to a module (e.g. myanalysis.py next to "
            "the script) and import it from there"
        )
    name = f"{module}:{qualname}"
    if _import(name) is not fn:
        raise AnalysisError(
            f"analysis {module}.{qualname}: importing {name} gives another object; "
            "pass a function defined at the top level of a module"
        )
    return name


def _import(name: str) -> Callable[..., Any]:
    """The function named by "module:function", or AnalysisError."""
    module_name, _, path = name.partition(":")
    _importing.append(module_name)
    try:
        target: Any = importlib.import_module(module_name)
    except MainGuardError:
        raise  # its own message says it all
    except Exception as e:  # an import runs the user's code: anything can happen
        raise AnalysisError(
            f"analysis {name!r}: cannot import {module_name}: {type(e).__name__}: "
            + " ".join(str(e).split())
        ) from e
    finally:
        _importing.pop()
    for part in path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AnalysisError(
                f"analysis {name!r}: {module_name} has no function {path!r}"
            ) from None
    if not callable(target):
        raise AnalysisError(f"analysis {name!r}: {path} is not callable")
    return target
