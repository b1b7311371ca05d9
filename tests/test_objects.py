"""engine.objects: the steps detect, track and count, called directly on a
synthetic clip of objects moving along known paths (no pipeline, no processes)."""

import json

import cv2
import numpy as np
import pytest

from engine.analysis import AnalysisError, Context, analysis
from engine.objects import (
    STEPS,
    Count,
    Track,
    build_step,
    detect,
    iou,
    match,
    moving_objects_clip,
    parse_step_spec,
)

cv2.setNumThreads(1)  # as in the workers


def readonly(clip):
    """The clip's frames, read-only like the ring's stage views."""
    frames = clip.frames.copy()
    frames.flags.writeable = False
    return frames


def detect_all(frames):
    """detect on each frame as a pool worker would: (results, outs)."""
    results, outs = [], []
    for i, frame in enumerate(frames):
        out = frame.copy()
        prev = frames[i - 1] if i else None
        results.append(detect(frame, out, Context(i, i / 25, prev, worker=0)))
        outs.append(out)
    return results, outs


def run_steps(frames, found, status=None, reset=(), track=None, count=None):
    """track and count on each frame in order, as the ordered stage would, with
    detect's results `found`; `status` {frame: status} (no detect result for a frame
    not "ok"), `reset` the frames to start over at. Their results, frame by frame."""
    status = status or {}
    track = track or Track()
    count = count or Count()
    tracks, counts = [], []
    for i, frame in enumerate(frames):
        out = frame.copy()
        s = status.get(i, "ok")
        results = {"detect": found[i] if s == "ok" else None}
        ctx = Context(i, i / 25, None, 0, results=results, status=s, reset=i == 0 or i in reset)
        results["track"] = track(frame, out, ctx)
        tracks.append(results["track"])
        counts.append(count(frame, out, ctx))
    return tracks, counts


def ids_of_objects(clip, tracks, frames):
    """For each object, the ids of the tracks that lie on it in `frames` (the
    track with the most overlap, at least 0.3), and the frames where none did."""
    ids = [set() for _ in range(clip.boxes.shape[1])]
    missing = []
    for i in frames:
        shown = tracks[i]["tracks"]
        if not shown:
            missing.append(i)
            continue
        overlap = iou(clip.boxes[i], np.array([t["box"] for t in shown]))
        for k, row in enumerate(overlap):
            if row.max() < 0.3:
                missing.append(i)
            else:
                ids[k].add(shown[int(row.argmax())]["id"])
    return ids, missing


@pytest.fixture(scope="module")
def clip():
    return moving_objects_clip(frames=48, size=(768, 576), n_objects=4, seed=0)


@pytest.fixture(scope="module")
def detected(clip):
    return detect_all(readonly(clip))


# --- the scene -------------------------------------------------------------------


def test_clip_is_what_it_says(clip):
    n, height, width, _ = clip.frames.shape
    assert (n, height, width) == (48, 576, 768)
    assert clip.boxes.shape == (48, 4, 4)
    x, y, w, h = np.moveaxis(clip.boxes, 2, 0)
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= width).all() and (y + h <= height).all()
    # objects 0 and 2 cross the middle line once, 1 and 3 keep away from it
    side = clip.centres[..., 1] >= height / 2
    flips = (side[1:] != side[:-1]).sum(axis=0)
    assert flips.tolist() == [1, 0, 1, 0]
    assert sum(clip.crossings()) == 2
    # they never overlap, and they move
    for i in range(n):
        overlap = iou(clip.boxes[i], clip.boxes[i])
        assert np.array_equal(overlap > 0, np.eye(4, dtype=bool))
    assert (np.abs(clip.centres[-1] - clip.centres[0]).max(axis=1) > 40).all()
    again = moving_objects_clip(frames=48, size=(768, 576), n_objects=4, seed=0)
    assert np.array_equal(again.frames, clip.frames)
    other = moving_objects_clip(frames=48, size=(768, 576), n_objects=4, seed=1)
    assert not np.array_equal(other.boxes, clip.boxes)


# --- detect ----------------------------------------------------------------------


def test_detect_is_a_pool_step_with_lookback_1():
    assert detect.lookback == 1 and not detect.in_place and not detect.ordered
    assert Track.ordered and Count.ordered
    assert not analysis()(lambda f, o, c: None).ordered  # the default
    assert STEPS == {"detect": detect, "track": Track, "count": Count}


def test_detect_finds_no_boxes_on_the_first_frame_or_a_still_scene(clip):
    frames = readonly(clip)
    out = frames[0].copy()
    assert detect(frames[0], out, Context(0, 0.0, None, 0)) == {"boxes": []}
    assert np.array_equal(out, frames[0])
    # the same image twice (noise and all): nothing moved
    assert detect(frames[5], out, Context(5, 0.2, frames[5], 0)) == {"boxes": []}
    # the same image with fresh noise, stronger than the clip's: noise is not motion
    rng = np.random.default_rng(1)
    noisy = frames[0] + rng.integers(-12, 13, frames[0].shape, np.int16)
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    assert detect(noisy, out, Context(1, 0.04, frames[0], 0)) == {"boxes": []}


def test_detect_finds_each_moving_object_where_it_is_now(clip, detected):
    results, _ = detected
    now, before = [], []  # how far the boxes' centres are from the objects' now and before
    for i in range(1, len(results)):
        boxes = np.array(results[i]["boxes"]).reshape(-1, 4)
        assert len(boxes) == 4, (i, boxes)
        # each true object has its own box, tight around it
        pairs = match(iou(clip.boxes[i], boxes), 0.7)
        assert len(pairs) == 4, (i, iou(clip.boxes[i], boxes).round(2))
        for k, c in pairs:
            centre = boxes[c, :2] + boxes[c, 2:] / 2
            now.append(np.hypot(*(centre - clip.centres[i, k])))
            before.append(np.hypot(*(centre - clip.centres[i - 1, k])))
    # where the objects are in this frame, not where they were (nor in between)
    assert np.mean(now) < 2 and np.mean(now) < np.mean(before) / 2, (np.mean(now), np.mean(before))


def test_detect_draws_its_boxes_and_returns_plain_ints(clip, detected):
    results, outs = detected
    frames = clip.frames
    result = results[10]
    assert json.loads(json.dumps(result)) == result
    assert all(type(v) is int for box in result["boxes"] for v in box)
    changed = np.any(outs[10] != frames[10], axis=2)
    for x, y, w, h in result["boxes"]:
        # the outline is drawn, the inside is not
        assert changed[y, x : x + w].all() and changed[y : y + h, x].all()
        assert not changed[y + 4 : y + h - 4, x + 4 : x + w - 4].any()
    assert changed.sum() < 0.05 * changed.size


# --- track -----------------------------------------------------------------------


def test_track_keeps_one_id_per_object(clip, detected):
    results, _ = detected
    track = Track()
    tracks, _ = run_steps(clip.frames, results, track=track)
    # frame 0 has no boxes, frame 1 starts tracks, frame 2 sees them again: ids
    assert tracks[0] == tracks[1] == {"tracks": []}
    ids, missing = ids_of_objects(clip, tracks, range(2, len(clip.frames)))
    assert missing == []
    assert all(len(s) == 1 for s in ids) and set.union(*ids) == {1, 2, 3, 4}
    assert all(len(t["tracks"]) == 4 for t in tracks[2:])
    assert all(t["missed"] == 0 for r in tracks for t in r["tracks"])
    assert track.close() == {"tracks": 4}
    assert json.loads(json.dumps(tracks)) == tracks


def test_track_is_deterministic(clip, detected):
    results, _ = detected
    first, _ = run_steps(clip.frames, results)
    again, _ = run_steps(clip.frames, results)
    assert first == again


@pytest.mark.parametrize("status", ["late", "skipped", "failed", "missing"])
def test_track_coasts_over_frames_without_detections(clip, detected, status):
    results, _ = detected
    gap = range(20, 24)  # four frames the pool did not analyze
    if status == "missing":  # "ok", but no detect result: also a gap
        results = [None if i in gap else r for i, r in enumerate(results)]
        tracks, _ = run_steps(clip.frames, results)
    else:
        tracks, _ = run_steps(clip.frames, results, status=dict.fromkeys(gap, status))
    before, missing = ids_of_objects(clip, tracks, range(2, gap[0]))
    after, missing_after = ids_of_objects(clip, tracks, range(gap[-1] + 1, len(clip.frames)))
    assert missing == missing_after == []
    assert after == before and all(len(s) == 1 for s in before)
    # in the gap the tracks go on where the objects are in that frame (moved on at
    # their speed, 2 to 6 px a frame), marked as missed
    for n, i in enumerate(gap, 1):
        assert [t["missed"] for t in tracks[i]["tracks"]] == [n] * 4
        boxes = np.array([t["box"] for t in tracks[i]["tracks"]])
        k = iou(boxes, clip.boxes[i]).argmax(axis=1)
        off = np.hypot(*(boxes[:, :2] + boxes[:, 2:] / 2 - clip.centres[i, k]).T)
        assert (off < 2 + n).all(), (n, off)
    through, missing = ids_of_objects(clip, tracks, gap)
    assert missing == [] and through == before


def test_track_forgets_tracks_not_seen_for_longer_than_coast(clip, detected):
    results, _ = detected
    gap = range(20, 24)
    track = Track(coast=3)
    tracks, _ = run_steps(clip.frames, results, status=dict.fromkeys(gap, "late"), track=track)
    assert tracks[gap[-1]] == {"tracks": []}  # the fourth frame missed: gone
    before, _ = ids_of_objects(clip, tracks, range(2, gap[0]))
    after, missing = ids_of_objects(clip, tracks, range(gap[-1] + 2, len(clip.frames)))
    assert missing == []
    assert set.union(*before) == {1, 2, 3, 4} and set.union(*after) == {5, 6, 7, 8}
    assert track.close() == {"tracks": 8}


def test_track_starts_over_on_reset(clip, detected):
    results, _ = detected
    tracks, _ = run_steps(clip.frames, results, reset={30})
    before, _ = ids_of_objects(clip, tracks, range(2, 30))
    # at the reset the old tracks are gone; the boxes start new ones, seen again
    # (confirmed, given an id) at the next frame; ids go on, never reused
    assert tracks[30] == {"tracks": []}
    after, missing = ids_of_objects(clip, tracks, range(31, len(clip.frames)))
    assert missing == []
    assert set.union(*before) == {1, 2, 3, 4} and set.union(*after) == {5, 6, 7, 8}
    assert all(len(s) == 1 for s in after)
    # without the reset the ids go on unchanged
    tracks, _ = run_steps(clip.frames, results)
    assert ids_of_objects(clip, tracks, range(31, len(clip.frames)))[0] == before


def test_track_draws_boxes_ids_and_trails(clip, detected):
    results, _ = detected

    def drawn(trail):
        track = Track(trail=trail)
        for i, frame in enumerate(clip.frames[:12]):
            out = frame.copy()
            ctx = Context(i, 0.0, None, 0, results={"detect": results[i]}, reset=i == 0)
            shown = track(frame, out, ctx)
        return shown["tracks"], np.any(out != clip.frames[11], axis=2)

    shown, changed = drawn(30)
    _, no_trail = drawn(0)
    assert len(shown) == 4
    for t in shown:
        x, y, w, h = t["box"]
        assert changed[y, x : x + w].mean() > 0.9  # the box's top
        assert changed[max(0, y - 30) : y, x : x + w].any()  # its id above it
        # its trail: through where the object's centre was at frame 2
        k = int(iou(np.array([t["box"]]), clip.boxes[11]).argmax())
        cx, cy = clip.centres[2, k].astype(int)
        assert changed[cy - 3 : cy + 4, cx - 3 : cx + 4].any()
        assert not no_trail[cy - 3 : cy + 4, cx - 3 : cx + 4].any()


def test_match_takes_the_best_overlaps_first():
    overlap = np.array([[0.9, 0.8, 0.0], [0.85, 0.1, 0.0], [0.0, 0.0, 0.2]])
    # row 1's best, column 0, is taken by row 0; its 0.1 with column 1 is too little
    assert match(overlap, 0.3) == [(0, 0)]
    assert match(overlap, 0.05) == [(0, 0), (2, 2), (1, 1)]
    assert match(np.zeros((0, 3)), 0.3) == []
    # ties: the lower row, then the lower column
    assert match(np.full((2, 2), 0.5), 0.3) == [(0, 0), (1, 1)]
    boxes = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]])
    expected = [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]]
    assert np.allclose(iou(boxes, boxes), expected)


# --- count -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_count_gives_the_known_crossings_of_the_middle_line(seed):
    clip = moving_objects_clip(frames=40, size=(480, 360), n_objects=5, seed=seed)
    down, up = clip.crossings()
    assert down + up == 3  # objects 0, 2 and 4
    results, _ = detect_all(readonly(clip))
    count = Count()
    _, counts = run_steps(clip.frames, results, count=count)
    assert counts[-1] == {"crossed": 3, "down": down, "up": up}
    assert count.close() == counts[-1]
    # the count rises where the objects cross: at the first frame past the line,
    # give or take a frame (the boxes are where the objects are, within a few px)
    crossed = [c["crossed"] for c in counts]
    past = clip.centres[..., 1] >= 180
    when = sorted(int(np.flatnonzero(p[1:] != p[:-1])[0]) + 1 for p in past.T if p.any() != p.all())
    for n, i in enumerate(when, 1):
        assert crossed[i - 2] < n <= crossed[min(i + 1, len(crossed) - 1)], (n, i, crossed)


def tracks_at(*points, missed=0):
    """A track result: a 10x10 box centred on each (id, x, y)."""
    return {
        "tracks": [{"id": i, "box": [x - 5, y - 5, 10, 10], "missed": missed} for i, x, y in points]
    }


def feed(count, *frames, size=(200, 100), reset=()):
    """`count` on blank frames with these track results; its results."""
    image = np.zeros((size[1], size[0], 3), np.uint8)
    return [
        count(image, image.copy(), Context(i, 0.0, None, 0, results={"track": t}, reset=i in reset))
        for i, t in enumerate(frames)
    ]


def test_count_counts_each_track_once_each_way():
    count = Count()  # y = 50 of 100
    results = feed(
        count,
        tracks_at((1, 20, 40), (2, 100, 60)),
        tracks_at((1, 20, 49), (2, 100, 55)),
        tracks_at((1, 20, 50), (2, 100, 45)),  # 1 down (on the line is past it), 2 up
        tracks_at((1, 20, 40), (2, 100, 60)),  # 1 up, 2 down
        tracks_at((1, 20, 60), (2, 100, 40)),  # again: not counted again
        tracks_at((1, 20, 60), (2, 100, 40), (3, 150, 70)),
    )
    assert [r["crossed"] for r in results] == [0, 0, 2, 4, 4, 4]
    assert results[-1] == {"crossed": 4, "down": 2, "up": 2}


def test_count_waits_for_a_coasting_track_and_forgets_on_reset():
    count = Count(y=0.5)
    results = feed(
        count,
        tracks_at((1, 20, 40)),
        tracks_at((1, 20, 60), missed=1),  # only expected there: not counted
        tracks_at((1, 20, 70)),  # seen past the line: counted now
        tracks_at((2, 20, 40)),
        tracks_at((2, 20, 60)),  # after a reset: where 2 was is not known
        reset={4},
    )
    assert [r["crossed"] for r in results] == [0, 0, 1, 1, 1]


def test_count_a_vertical_line_and_a_line_between_two_ends():
    results = feed(Count(x=0.25), tracks_at((1, 40, 50)), tracks_at((1, 60, 50)))
    assert results[-1] == {"crossed": 1, "right": 1, "left": 0}
    # y=0.5 from x = 40 to 100 of 200: a crossing at x = 20 is outside it
    count = Count(y=0.5, x0=0.2, x1=0.5)
    results = feed(
        count,
        tracks_at((1, 20, 40), (2, 60, 40), (3, 100, 60)),
        tracks_at((1, 20, 60), (2, 80, 60), (3, 120, 40)),  # 3 meets the line at x = 110
    )
    assert results[-1] == {"crossed": 1, "down": 1, "up": 0}


def test_count_draws_its_line_and_counts():
    image = np.zeros((360, 480, 3), np.uint8)
    out = image.copy()
    Count(y=0.25)(image, out, Context(0, 0.0, None, 0))  # no track result: nothing counted
    drawn = np.any(out != 0, axis=2)
    assert drawn[90, :].all()  # the line, across the whole width
    assert drawn[:85].any()  # the counts, above it
    assert not drawn[100:].any()


# --- step specs and parameters -------------------------------------------------------


@pytest.mark.parametrize(
    "spec, parsed",
    [
        ("count", ("count", {})),
        ("count:y=0.6", ("count", {"y": 0.6})),
        ("count:y=0.6,x0=0.1", ("count", {"y": 0.6, "x0": 0.1})),
        ("track:coast=5, iou=1", ("track", {"coast": 5, "iou": 1})),
        ("count:name=left", ("count", {"name": "left"})),
        ("mymod:Counter", ("mymod:Counter", {})),
        ("mymod.sub:Counter", ("mymod.sub:Counter", {})),
        ("mymod:Counter:y=0.6", ("mymod:Counter", {"y": 0.6})),
    ],
)
def test_parse_step_spec(spec, parsed):
    assert parse_step_spec(spec) == parsed
    name, params = parse_step_spec(spec)
    for value in params.values():
        assert type(value) in (int, float, str)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("count:y", "after count: come parameters"),
        ("count:", "after count: come parameters"),
        ("flow:x", "after flow: come parameters"),
        ("count:y=", "'y=' is not key=value"),
        ("count:=1", "'=1' is not key=value"),
        ("count:y=0.6,", "'' is not key=value"),
        ("count:y=1=2", "'y=1=2' is not key=value"),
        ("count:2y=1", "'2y=1' is not key=value"),
        ("count:y=1,y=2", "y is given twice"),
        ("y=0.6", "parameters come after the step's name"),
        (":y=0.6", "no step's name before the parameters"),
        ("", "give a step's name"),
    ],
)
def test_bad_step_specs_are_one_clear_error(spec, message):
    with pytest.raises(AnalysisError) as e:
        parse_step_spec(spec)
    assert message in str(e.value) and repr(spec) in str(e.value)
    assert "\n" not in str(e.value)


def test_build_step_makes_a_class_with_its_parameters():
    count = build_step("count", Count, {"y": 0.6})
    assert isinstance(count, Count) and count.at == 0.6
    track = build_step("track", Track, {})
    assert isinstance(track, Track) and track.coast == 10
    assert build_step("detect", detect, {}) is detect


@pytest.mark.parametrize(
    "name, target, params, message",
    [
        ("count", Count, {"z": 1}, "step 'count': no parameter 'z' (it takes y, x, x0, x1"),
        ("count", Count, {"y": 2}, "step count: y must be a number from 0 to 1, not 2"),
        ("count", Count, {"y": "top"}, "y must be a number from 0 to 1, not 'top'"),
        ("count", Count, {"y": 0.5, "x": 0.5}, "give y (a horizontal line) or x"),
        ("count", Count, {"x0": 0.6, "x1": 0.4}, "x0 must be less than x1"),
        ("track", Track, {"coast": 1.5}, "coast must be a whole number from 0"),
        ("track", Track, {"iou": 0}, "iou must be a number from 0.01 to 1"),
        ("detect", detect, {"y": 1}, "step 'detect': a function takes no parameters"),
    ],
)
def test_bad_step_parameters_are_one_clear_error(name, target, params, message):
    with pytest.raises(AnalysisError) as e:
        build_step(name, target, params)
    assert message in str(e.value)


def test_context_defaults_for_ordered_steps():
    a, b = Context(0, 0.0, None, 0), Context(1, 0.0, None, 0)
    assert (a.results, a.status, a.reset) == ({}, "ok", False)
    a.results["detect"] = {"boxes": []}
    assert b.results == {}  # each its own
