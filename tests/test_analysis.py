"""engine.analysis: looking analyses up by name, and what each built-in does."""

import json
import sys
import textwrap

import cv2
import numpy as np
import pytest

from engine import analyzer
from engine.analysis import (
    BUILTINS,
    FLOW_COLOUR,
    Analysis,
    AnalysisError,
    Context,
    _flow_grid,
    resolve,
)
from engine.slots import SlotLayout
from engine.sources import DemoSource

cv2.setNumThreads(1)  # as in the workers

# what each built-in returns: key -> type, or None for no result
RESULTS = {
    "none": None,
    "gray": None,
    "edges": {"edge_pixels": int},
    "blur": None,
    "motion": {"motion": float},
    "flow": {"flow_mean": float, "flow_max": float},
}
LOOKBACK = {"motion": 1, "flow": 1}


@pytest.fixture(scope="module")
def frames():
    """Demo frames 0, 1 and 2 at 640x360, read-only like the ring's stage views."""
    demo = DemoSource(frames=3, size=(640, 360))
    out = []
    for _ in range(3):
        frame = np.empty((360, 640, 3), np.uint8)
        assert demo.read_into(frame)
        frame.flags.writeable = False
        out.append(frame)
    return out


def run(name, frame, prev=None):
    """Run a built-in as a worker would: (out, result)."""
    a = resolve(name)
    out = frame if a.in_place else frame.copy()
    ctx = Context(frame_index=1, pts=1 / 30, prev=prev if a.lookback else None, worker=0)
    return out, a.fn(frame, out, ctx)


def test_builtins_resolve_with_their_flags():
    assert set(BUILTINS) == set(RESULTS)
    for name in BUILTINS:
        a = resolve(name)
        assert a == Analysis(name, BUILTINS[name], name == "none", LOOKBACK.get(name, 0), step=name)


@pytest.mark.parametrize("name", list(RESULTS))
def test_builtin_leaves_frame_alone_and_returns_its_keys(name, frames):
    before = [f.copy() for f in frames]
    # frames are read-only: a built-in that wrote into one would raise here
    out, result = run(name, frames[1], prev=frames[0])
    for f, b in zip(frames, before, strict=True):
        assert np.array_equal(f, b)
    expected = RESULTS[name]
    if expected is None:
        assert result is None
    else:
        assert set(result) == set(expected)
        for key, kind in expected.items():
            assert type(result[key]) is kind, (key, type(result[key]))
        assert json.loads(json.dumps(result)) == result
    assert out.shape == frames[1].shape and out.dtype == np.uint8
    if name != "none":
        assert not np.array_equal(out, frames[1]), f"{name} drew nothing"


@pytest.mark.parametrize("name", ["motion", "flow"])
def test_lookback_builtins_on_the_first_frame(name, frames):
    out, result = run(name, frames[0], prev=None)
    assert all(v == 0.0 for v in result.values())
    assert np.array_equal(out, frames[0])


def test_gray_is_gray(frames):
    out, _ = run("gray", frames[1])
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    expected = cv2.cvtColor(frames[1], cv2.COLOR_BGR2GRAY)
    assert np.array_equal(out[..., 0], expected)


def test_edges_are_painted(frames):
    out, result = run("edges", frames[1])
    painted = np.all(out == (0, 255, 0), axis=2)
    assert result["edge_pixels"] > 1000
    assert painted.sum() >= result["edge_pixels"]


def test_blur_smooths(frames):
    out, _ = run("blur", frames[1])
    detail = cv2.Laplacian(cv2.cvtColor(frames[1], cv2.COLOR_BGR2GRAY), cv2.CV_32F)
    blurred = cv2.Laplacian(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.CV_32F)
    assert np.abs(blurred).mean() < np.abs(detail).mean() / 2


def test_motion_sees_change_and_only_change(frames):
    _, moved = run("motion", frames[1], prev=frames[0])
    assert 0.001 < moved["motion"] < 1
    out, still = run("motion", frames[1], prev=frames[1].copy())
    assert still == {"motion": 0.0}
    assert np.array_equal(out, frames[1])


def test_flow_is_zero_when_still_and_follows_a_shift(frames):
    _, still = run("flow", frames[1], prev=frames[1].copy())
    assert still["flow_mean"] < 0.05
    shifted = np.ascontiguousarray(np.roll(frames[1], 3, axis=1))
    _, moved = run("flow", shifted, prev=frames[1])
    assert 1.5 < moved["flow_mean"] < 4.5, "a 3 px shift, in frame pixels"
    assert moved["flow_max"] >= moved["flow_mean"]


@pytest.fixture(scope="module")
def frames_720p():
    """Demo frame 1 at 1280x720, read-only, and the same moved 3 px to the right."""
    demo = DemoSource(frames=2, size=(1280, 720))
    frame = np.empty((720, 1280, 3), np.uint8)
    assert demo.read_into(frame) and demo.read_into(frame)
    moved = np.ascontiguousarray(np.roll(frame, 3, axis=1))
    frame.flags.writeable = moved.flags.writeable = False
    return frame, moved


def test_flow_draws_nothing_on_a_still_scene(frames_720p):
    """A still scene with a little noise (a camera's): no dots, nothing at all."""
    frame, _ = frames_720p
    noise = np.random.default_rng(0).integers(-2, 3, frame.shape)
    noisy = np.clip(frame + noise, 0, 255).astype(np.uint8)
    out, result = run("flow", frame, prev=noisy)
    assert result["flow_mean"] < 0.5
    assert np.array_equal(out, frame)


def test_flow_draws_arrows_to_be_seen(frames_720p):
    """3 px a frame to the right: arrows 2 px thick at 720p, long enough to see
    (a shaft of 6 px or more), pointing right."""
    before, frame = frames_720p
    out, _ = run("flow", frame, prev=before)
    drawn = np.all(out == FLOW_COLOUR, axis=2) & ~np.all(frame == FLOW_COLOUR, axis=2)
    count, _, boxes, _ = cv2.connectedComponentsWithStats(drawn.astype(np.uint8))
    widths = boxes[1:, cv2.CC_STAT_WIDTH]
    assert (widths >= 8).sum() >= 50, sorted(widths)[-10:]  # shaft and head, each arrow
    # 2 px thick: a 2x2 square fits inside the strokes nearly everywhere
    thick = cv2.erode(drawn.astype(np.uint8), np.ones((2, 2), np.uint8))
    assert thick.sum() > drawn.sum() / 3
    # pointing right: the arrows reach further right of the grid points than left
    cell, centres, _, _ = _flow_grid(720, 1280)
    ys, xs = np.nonzero(drawn)
    columns = np.unique(centres[:, 0])
    nearest_x = columns[np.abs(columns[None, :] - xs[:, None]).argmin(axis=1)]
    assert (xs > nearest_x).sum() > 2 * (xs < nearest_x).sum()


def test_flow_draws_all_its_arrows_in_one_call(frames_720p, monkeypatch):
    """Hundreds of arrows where everything moves, on a 24 px grid: one polylines
    call for them all (a Python loop of arrowedLine calls would cost more than the
    flow itself)."""
    before, frame = frames_720p
    calls = []
    real = cv2.polylines

    def polylines(image, lines, *args, **kw):
        calls.append(len(lines))
        return real(image, lines, *args, **kw)

    monkeypatch.setattr(cv2, "polylines", polylines)
    for name in ("arrowedLine", "line"):
        monkeypatch.setattr(cv2, name, lambda *a, name=name, **k: calls.append(name))
    run("flow", frame, prev=before)
    # one call, with at most one arrow per 24 px cell: a grid coarse enough to read
    assert len(calls) == 1 and 300 <= calls[0] <= (1280 // 24) * (720 // 24), calls


def test_history_is_the_frames_before_newest_first_until_a_gap_or_a_seek(make_ring):
    """analyzer.history() on a ring holding (index, epoch): 0..3, then 7, 8 (the
    source lost 4..6), then 3, 4 after a seek (epoch 1)."""
    layout = SlotLayout(36, 64, separate_out=True)
    ring = make_ring(slots=16, slot_bytes=layout.slot_bytes, stages=("pool", "ordered"), lookback=3)
    items = [(0, 0), (1, 0), (2, 0), (3, 0), (7, 0), (8, 0), (3, 1), (4, 1)]
    seq = ring.claim(len(items))
    for s, (index, epoch) in enumerate(items, seq):
        layout.frame(ring, s)[:] = index + 10 * epoch  # what the frame shows
        meta = layout.meta(ring, s)
        meta["index"], meta["epoch"] = index, epoch
    ring.publish(seq, len(items))
    seen = []
    for s in range(seq, seq + len(items)):
        past = analyzer.history(ring, layout, s, layout.meta(ring, s), 3)
        assert all(not f.flags.writeable and not f.flags.owndata for f in past)
        seen.append([int(f[0, 0, 0]) for f in past])
    assert seen == [[], [0], [1, 0], [2, 1, 0], [], [7], [], [13]]
    one = analyzer.history(ring, layout, seq + 3, layout.meta(ring, seq + 3), 1)
    assert [int(f[0, 0, 0]) for f in one] == [2]


def test_context_prev_is_the_newest_of_history(frames):
    ctx = Context(frame_index=5, pts=0.0, prev=None, worker=0, history=(frames[1], frames[0]))
    assert ctx.prev is frames[1]
    ctx = Context(frame_index=5, pts=0.0, prev=frames[1], worker=0)
    assert ctx.history == (frames[1],)
    assert Context(frame_index=0, pts=0.0, prev=None, worker=0).history == ()


def test_builtins_work_at_any_size_in_turn(frames):
    """Scratch images are kept between calls; a new size must not trip them."""
    for size in [(640, 360), (320, 240), (640, 360)]:
        frame = cv2.resize(frames[1], size)
        prev = cv2.resize(frames[0], size)
        for name in BUILTINS:
            out, _ = run(name, frame, prev)
            assert out.shape == frame.shape


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write a module to an importable directory; return its name's maker."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made = []

    def make(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        made.append(name)
        return name

    yield make
    for name in made:
        sys.modules.pop(name, None)


def test_resolve_a_users_function(user_module, frames):
    user_module(
        "fe_user_ok",
        """
        from engine.analysis import analysis

        def plain(frame, out, ctx):
            out[:] = 0
            return {"index": ctx.frame_index}

        @analysis(in_place=True)
        def marked(frame, out, ctx):
            return None

        @analysis(lookback=2)
        def behind(frame, out, ctx):
            return None

        @analysis(in_place=True, lookback=1)
        def both(frame, out, ctx):
            return None

        class Tools:
            @staticmethod
            def method(frame, out, ctx):
                return None
        """,
    )
    plain = resolve("fe_user_ok:plain")
    assert (plain.name, plain.in_place, plain.lookback) == ("fe_user_ok:plain", False, 0)
    out = frames[0].copy()
    ctx = Context(frame_index=7, pts=0.25, prev=None, worker=1)
    assert plain.fn(frames[0], out, ctx) == {"index": 7} and not out.any()
    marked = resolve("fe_user_ok:marked")
    assert (marked.in_place, marked.lookback) == (True, 0)
    assert resolve("fe_user_ok:behind").lookback == 2
    # prev would be a frame another worker may be drawing on
    with pytest.raises(AnalysisError, match="in_place and lookback cannot go together"):
        resolve("fe_user_ok:both")
    assert resolve("fe_user_ok:Tools.method").lookback == 0


@pytest.mark.parametrize(
    "name, message",
    [
        (
            "sharpen",
            "no such built-in (choose from none, gray, edges, blur, motion, flow, detect, "
            "track, count)",
        ),
        ("Gray", "no such built-in"),
        (":fn", "not module:function"),
        ("mod:", "not module:function"),
        ("a:b:c", "not module:function"),
        ("fe_no_such_module:fn", "cannot import fe_no_such_module: ModuleNotFoundError: "),
        ("fe_user_broken:fn", "cannot import fe_user_broken: ZeroDivisionError: division by zero"),
        ("fe_user_bad:missing", "fe_user_bad has no function 'missing'"),
        ("fe_user_bad:NUMBER", "NUMBER is not callable"),
        ("fe_user_bad:negative", "lookback must be a whole number >= 0, not -1"),
        ("fe_user_bad:yes", "in_place must be True or False, not 'yes'"),
    ],
)
def test_bad_analyses_are_one_clear_error(user_module, name, message):
    user_module("fe_user_broken", "x = 1 / 0\n")
    user_module(
        "fe_user_bad",
        """
        from engine.analysis import analysis

        NUMBER = 3

        @analysis(lookback=-1)
        def negative(frame, out, ctx):
            pass

        def yes(frame, out, ctx):
            pass

        yes.in_place = "yes"
        """,
    )
    with pytest.raises(AnalysisError) as e:
        resolve(name)
    text = str(e.value)
    assert text.startswith(f"analysis {name!r}: ")
    assert message in text
    assert "\n" not in text
