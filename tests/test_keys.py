"""The window's keys, driven through SDL's real event queue under the dummy driver:
a script posts the key presses a person would make, at the moments it chooses."""

import json
import os

import numpy as np

import engine


def run(**kw):
    return engine.play("demo", analyze="none", workers=1, headless=False, quiet=True, **kw)


def test_seek_forward_jumps_five_seconds_and_q_quits(scripted):
    shown, install = scripted
    state = {"seeked": False}

    def script(shown, n):
        if len(shown) == 3 and not state["seeked"]:
            state["seeked"] = True
            return ["right"]
        if shown and shown[-1] >= 155:
            return ["q"]
        return []

    install(script)
    stats = run(speed=4)
    assert shown[:3] == [0, 1, 2]
    after = shown[3:]
    assert after and after[0] >= 150  # 5 s at 30 fps on from frame 2
    assert after == sorted(after) and shown[-1] >= 155
    assert stats["frames_shown"] == len(shown) < 300  # quit before the end


def test_after_a_seek_the_first_frame_has_the_one_before_it(scripted, monkeypatch, tmp_path):
    """A seek reads the frame before its target as context for an analysis that
    looks back: the first frame played there has its previous frame."""
    monkeypatch.syspath_prepend(os.path.dirname(os.path.abspath(__file__)))  # player_funcs
    shown, install = scripted
    state = {"seeked": False}

    def script(shown, n):
        if len(shown) == 3 and not state["seeked"]:
            state["seeked"] = True
            return ["right"]
        if shown and shown[-1] >= 155:
            return ["q"]
        return []

    install(script)
    results = str(tmp_path / "r.jsonl")
    stats = engine.play(
        "demo", analyze="player_funcs:prev_index", workers=1, headless=False, quiet=True,
        speed=4, results=results,
    )  # fmt: skip
    with open(results) as f:
        lines = [json.loads(line) for line in f]
    after = [x for x in lines if x["frame"] >= 150]
    assert after and len(after) < len(lines), lines  # frames before the seek and after it
    assert lines[0]["result"]["prev"] is None
    assert all(x["result"]["prev"] == x["frame"] - 1 for x in lines[1:]), lines
    assert stats["context_frames"] == 1  # the frame before the target; none at the start
    assert shown[3] == after[0]["frame"]  # not shown itself


def test_pause_stops_the_clock_and_step_advances_one_frame(scripted):
    shown, install = scripted
    state = {"phase": "play", "paused_at": 0}

    def script(shown, n):
        if state["phase"] == "play" and len(shown) == 2:
            state["phase"], state["paused_at"] = "paused", n
            return ["space"]
        if state["phase"] == "paused" and n - state["paused_at"] == 60:
            state["phase"], state["before_step"] = "stepped", len(shown)
            return ["."]
        if state["phase"] == "stepped" and n - state["paused_at"] == 120:
            state["phase"], state["after_step"] = "resumed", len(shown)
            return ["space"]
        if state["phase"] == "resumed" and len(shown) >= 12:
            return ["q"]
        return []

    install(script)
    stats = run(speed=2)
    assert state["before_step"] == 2  # paused: nothing new for 60 turns
    assert state["after_step"] == 3  # the step showed exactly one frame, still paused
    assert shown == list(range(len(shown)))
    # Paused for 120 loop turns (well over a frame period): had the clock kept
    # running, frames would have been late on resume and dropped.
    assert stats["dropped_late"] == 0


def grab_screen():
    """The window's pixels, BGR."""
    import pygame

    rgb = pygame.surfarray.array3d(pygame.display.get_surface()).transpose(1, 0, 2)
    return rgb[:, :, ::-1].copy()


def demo_frame(index, shape):
    """Demo frame `index`, fitted to `shape` as the window fits it."""
    from engine.sources import DemoSource

    image = np.empty(shape, np.uint8)
    demo = DemoSource()
    demo.seek(index)
    assert demo.read_into(image)
    return image


def test_stats_overlay_and_fullscreen_keys_do_not_disturb_playback(scripted):
    """`i` draws the overlay over the frame's top left (the rest of the window is
    the frame itself) and a second `i` takes it away; `f` goes full screen; the
    frames go on in order throughout."""
    shown, install = scripted
    state = {"phase": "play"}
    grabbed = {}

    def script(shown, n):
        phase = state["phase"]
        if phase == "play" and len(shown) >= 3:
            state["phase"], state["at"] = "overlay", len(shown)
            return ["i"]
        if phase == "overlay" and len(shown) >= state["at"] + 2:  # frames shown since
            grabbed["overlay"] = grab_screen(), shown[-1]
            state["phase"], state["at"] = "plain", len(shown)
            return ["i"]
        if phase == "plain" and len(shown) >= state["at"] + 2:
            grabbed["plain"] = grab_screen(), shown[-1]
            state["phase"] = "fullscreen"
            return ["f"]
        if phase == "fullscreen" and len(shown) >= 20:
            return ["q"]
        return []

    install(script)
    stats = run(speed=4)
    # in order, none twice (a loaded machine may drop some late at 120 fps)
    assert shown == sorted(set(shown)) and len(shown) >= 20
    assert stats["frames_shown"] == len(shown) and stats["display"] == "window"

    def differs(screen, index, rows, cols):
        frame = demo_frame(index, screen.shape)
        return np.abs(screen[rows, cols].astype(int) - frame[rows, cols].astype(int)).mean()

    top_left = (slice(8, 22), slice(10, 200))  # inside the box of the overlay's first line
    screen, index = grabbed["overlay"]
    h, w = screen.shape[:2]
    rest = (slice(h // 2, h), slice(w // 2, w))  # well clear of the overlay
    assert differs(screen, index, *rest) < 2.0  # the frame itself, shown as it is
    assert differs(screen, index, *top_left) > 20  # darkened, with white text over it
    screen, index = grabbed["plain"]
    assert differs(screen, index, *top_left) < 2.0  # the overlay is gone


def test_seek_back_after_the_reader_reached_the_end(scripted):
    """The reader finishes about 2 s (the buffer) before the display: a seek back
    near the end must still play on."""
    shown, install = scripted
    state = {"seeked": False}

    def script(shown, n):
        if shown and shown[-1] >= 290 and not state["seeked"]:
            state["seeked"] = True
            return ["left"]
        return []

    install(script)
    stats = run(speed=6)
    cut = next(i for i in range(1, len(shown)) if shown[i] < shown[i - 1])
    assert 130 <= shown[cut] <= 150  # 5 s (150 frames) back from where we were
    assert shown[-1] == 299  # and on to the end again
    assert stats["frames_read"] == (
        stats["frames_shown"] + stats["dropped_late"] + stats["discarded_seek"]
    )


def test_the_window_shows_the_frame_itself_in_the_right_colours(scripted, monkeypatch):
    """What reaches the screen is the slot's frame, BGR read as BGR: the barcode on
    screen decodes to the frame shown, and a pixel keeps its colour."""
    import numpy as np
    import pygame

    from engine.sources import DemoSource, read_frame_number

    shown, install = scripted
    grabbed = {}

    def script(shown, n):
        if len(shown) == 20 and "screen" not in grabbed:
            screen = pygame.display.get_surface()
            rgb = pygame.surfarray.array3d(screen).transpose(1, 0, 2)
            grabbed["screen"], grabbed["index"] = rgb[:, :, ::-1].copy(), shown[-1]
            return ["q"]
        return []

    install(script)
    run(speed=4)
    bgr, index = grabbed["screen"], grabbed["index"]
    assert read_frame_number(bgr) == index
    expected = np.empty_like(bgr)
    demo = DemoSource()
    demo.seek(index)
    assert demo.read_into(expected)
    assert np.abs(bgr.astype(int) - expected.astype(int)).mean() < 1.0  # same frame, same colours


def test_a_seek_tells_the_ordered_steps_to_reset(scripted, monkeypatch, tmp_path):
    """Ordered steps see the frames after a seek in order, the first with
    ctx.reset, so that a tracker starts over there."""
    monkeypatch.syspath_prepend(os.path.dirname(os.path.abspath(__file__)))  # step_funcs
    shown, install = scripted
    state = {"seeked": False}

    def script(shown, n):
        if len(shown) == 5 and not state["seeked"]:
            state["seeked"] = True
            return ["right"]
        if shown and shown[-1] >= 160:
            return ["q"]
        return []

    install(script)
    results = tmp_path / "r.jsonl"
    run(speed=4, then=["step_funcs:seen"], results=str(results))
    steps = [json.loads(x)["steps"]["step_funcs:seen"] for x in results.read_text().splitlines()]
    indices = [s["i"] for s in steps]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)  # in order, once
    resets = [s["i"] for s in steps if s["reset"]]
    assert resets[0] == 0 and len(resets) == 2 and resets[1] >= 150  # the start, the seek
    after = indices[indices.index(resets[1]) :]
    assert after == list(range(resets[1], resets[1] + len(after)))  # contiguous after it
