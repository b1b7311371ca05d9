"""The window: it fits the screen (mpv's autofit), shows the frame scaled with its
aspect ratio kept on black however the window is sized, goes full screen and back
without a word on stderr, and says where playback is in its title and overlay.

Driven as tests/test_keys.py does: SDL's dummy driver (a 1024x768 desktop) and key
presses posted to its real event queue by a script."""

import json
import os
import shutil
import subprocess
import sys
import time
import warnings

import pytest

import engine
from engine import display
from engine.sources import read_frame_number

DEMO = (1280, 720)  # the demo's frame size: larger than 90% of the dummy desktop
DUMMY_DESKTOP = (1024, 768)


def run(**kw):
    return engine.play("demo", analyze="none", workers=1, headless=False, quiet=True, **kw)


def grab():
    """The window's pixels, BGR (height x width x 3)."""
    import pygame

    rgb = pygame.surfarray.array3d(pygame.display.get_surface()).transpose(1, 0, 2)
    return rgb[:, :, ::-1].copy()


def test_fit_keeps_the_aspect_ratio_and_never_enlarges_a_new_window():
    # the case: 1920x1080 on a 1280x800 screen, 90% of it at most
    box = display.autofit_box([(1280, 800)])
    assert box == (1152, 720)
    assert display.fit((1920, 1080), box) == (1152, 648)
    assert display.fit((640, 360), box) == (640, 360)  # small clips open at their size
    assert display.fit((640, 360), (1000, 1000), upscale=True) == (1000, 562)
    # two screens: the window fits the smaller one, whichever it opens on
    assert display.autofit_box([(2560, 1440), (1280, 800)]) == (1152, 720)


def test_position_text_says_time_duration_and_frame():
    assert display.position_text(372 / 30, 372, 65.0) == "00:12.4 / 01:05.0, frame 372"
    assert display.position_text(59.99, 1799, None) == "00:59.9, frame 1799"  # live: no duration
    assert display.position_text(3725.25, 5, 7200.0) == "1:02:05.2 / 2:00:00.0, frame 5"
    assert display.position_text(12.0, 360, 4000.0) == "0:00:12.0 / 1:06:40.0, frame 360"


def test_a_clip_larger_than_the_screen_opens_scaled_to_fit_it(scripted):
    import pygame

    shown, install = scripted
    seen = {}

    def script(shown, n):
        if len(shown) == 5 and "size" not in seen:
            seen["size"] = pygame.display.get_surface().get_size()
            seen["screen"], seen["index"] = grab(), shown[-1]
            return ["q"]
        return []

    install(script)
    run(speed=4)
    w, h = seen["size"]
    assert w <= DUMMY_DESKTOP[0] * 0.9 and h <= DUMMY_DESKTOP[1] * 0.9
    assert abs(w / h - DEMO[0] / DEMO[1]) < 0.01  # the clip's aspect ratio
    assert (w, h) == display.fit(DEMO, display.autofit_box([DUMMY_DESKTOP]))
    # the whole frame, scaled (not cropped): its code strip reads as the frame shown
    assert read_frame_number(seen["screen"]) == seen["index"]


def test_a_resized_window_shows_the_whole_frame_on_black_also_paused(scripted):
    """Resized to a wide strip while paused: the frame is drawn again at once,
    pillarboxed, not stretched and not left as it was."""
    from pygame._sdl2.video import Window

    shown, install = scripted
    state = {"phase": "play"}

    def script(shown, n):
        if state["phase"] == "play" and len(shown) == 3:
            state["phase"] = "pause"
            return ["space"]
        if state["phase"] == "pause":
            state["phase"], state["at"] = "resized", n
            Window.from_display_module().size = (800, 300)  # as a user's drag would
            return []
        if state["phase"] == "resized" and n - state["at"] == 20:
            state["screen"], state["index"], state["count"] = grab(), shown[-1], len(shown)
            return ["q"]
        return []

    install(script)
    run(speed=2)
    bgr = state["screen"]
    assert state["count"] == 3  # still paused: nothing new was shown
    assert bgr.shape == (300, 800, 3)
    width = round(300 * DEMO[0] / DEMO[1])  # 533: the frame's aspect ratio kept
    left = (800 - width) // 2
    assert not bgr[:, : left - 1].any() and not bgr[:, left + width + 1 :].any()  # black bars
    frame = bgr[:, left : left + width]
    assert frame.mean() > 20 and frame[:, :10].any() and frame[:, -10:].any()
    assert read_frame_number(frame) == state["index"]


def test_f_fills_the_screen_and_back_with_nothing_on_stderr(scripted, capfd):
    import pygame

    shown, install = scripted
    state = {"sizes": []}

    def script(shown, n):
        size = pygame.display.get_surface().get_size()
        if len(shown) == 3 and not state["sizes"]:
            state["sizes"].append(size)
            return ["f"]
        if len(state["sizes"]) == 1 and len(shown) >= 6:
            state["sizes"].append(size)
            state["full"], state["screen"], state["index"] = (
                pygame.display.is_fullscreen(),
                grab(),
                shown[-1],
            )
            return ["f"]
        if len(state["sizes"]) == 2 and len(shown) >= 9:
            state["sizes"].append(size)
            return ["q"]
        return []

    install(script)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(speed=2)
    err = capfd.readouterr().err
    windowed, full, back = state["sizes"]
    assert full == DUMMY_DESKTOP and state["full"]
    assert back == windowed
    # letterboxed in the full screen: 1024x576 between black bars of 96 px
    bgr = state["screen"]
    assert not bgr[:95].any() and not bgr[-95:].any()
    assert read_frame_number(bgr[96:-96]) == state["index"]
    assert [line for line in err.splitlines() if not line.startswith("frame-engine:")] == []
    assert [str(w.message) for w in caught] == []


XVFB_CHILD = r"""
import json, sys
import pygame
import engine
from engine import display

real, sizes, shown = display.WindowView.events, [], []

def events(self):
    shown.append(1)
    n = len(shown)
    if n in (30, 60, 90):
        sizes.append(pygame.display.get_surface().get_size())
        key = "q" if n == 90 else "f"
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.key.key_code(key)))
    return real(self)

display.WindowView.events = events
engine.play("demo", analyze="none", workers=1, headless=False, quiet=True, speed=2)
print(json.dumps(sizes))
"""


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (a real X server)")
def test_f_under_a_real_x_server_keeps_stderr_clean(tmp_path):
    """pygame's toggle_fullscreen() warns on stderr under X11 (and re-creates the
    window); the dummy driver cannot show that, an X server can."""
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as f:
            number = f.readline().strip()  # Xvfb writes its display number when ready
        assert number, "Xvfb did not start"
        env = {k: v for k, v in os.environ.items() if k != "SDL_VIDEODRIVER"}
        env["DISPLAY"] = f":{number}"
        child = subprocess.run(
            [sys.executable, "-c", XVFB_CHILD], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    assert child.returncode == 0, child.stderr
    ours = [line for line in child.stderr.splitlines() if line.startswith("frame-engine:")]
    assert child.stderr.splitlines() == ours
    windowed, full, back = json.loads(child.stdout)
    assert windowed == [1152, 648]  # the demo fitted into 90% of 1280x800
    assert full == [1280, 800] and back == windowed


def caption_recorder(monkeypatch):
    import pygame

    captions = []
    real = pygame.display.set_caption

    def set_caption(title, *a):
        captions.append((time.monotonic(), title))
        return real(title, *a)

    monkeypatch.setattr(pygame.display, "set_caption", set_caption)
    return captions


def test_the_title_shows_the_position_and_follows_a_step_while_paused(scripted, monkeypatch):
    import pygame

    captions = caption_recorder(monkeypatch)
    shown, install = scripted
    state = {"phase": "play", "t0": time.monotonic()}

    def caption_says(text):
        if text in pygame.display.get_caption()[0]:
            return True
        if time.monotonic() - state["t0"] > 10:  # a generous bound: fail, not hang
            state["phase"] = "timed out"
        return False

    def script(shown, n):
        phase = state["phase"]
        if phase == "play" and len(shown) == 40:
            state["phase"], state["t_pause"] = "pause", time.monotonic()
            return ["space"]
        if phase == "pause" and caption_says(f"frame {shown[-1]}]"):
            state["phase"], state["paused"], state["t0"] = "step", shown[-1], time.monotonic()
            state["title paused"] = pygame.display.get_caption()[0]
            return ["."]
        if phase == "step" and caption_says(f"frame {state['paused'] + 1}]"):
            state["phase"] = "done"
            state["title stepped"] = pygame.display.get_caption()[0]
            return ["q"]
        return ["q"] if phase == "timed out" else []

    install(script)
    run(speed=2)
    assert state["phase"] == "done", state
    k = state["paused"]
    assert (
        state["title paused"]
        == f"frame-engine: demo [paused 00:01.{k % 30 // 3} / 00:10.0, frame {k}]"
    )
    k += 1
    assert (
        state["title stepped"]
        == f"frame-engine: demo [paused 00:01.{k % 30 // 3} / 00:10.0, frame {k}]"
    )
    # While playing, the title followed the frames, at most 4 times a second.
    playing = [(t, c) for t, c in captions if "[playing " in c and t < state["t_pause"]]
    assert len(playing) >= 3
    span = playing[-1][0] - playing[0][0]
    assert len(playing) <= span / display.CAPTION_EVERY_S + 2


def test_the_overlay_shows_the_position(scripted, monkeypatch):
    shown, install = scripted
    huds = []
    real_redraw = display.WindowView.redraw

    def redraw(self, hud, title):
        if hud and shown:
            huds.append((shown[-1], hud[0]))
        return real_redraw(self, hud, title)

    monkeypatch.setattr(display.WindowView, "redraw", redraw)
    state = {"phase": "play"}

    def script(shown, n):
        if state["phase"] == "play" and len(shown) == 3:
            state["phase"] = "hud"
            return ["i"]
        if state["phase"] == "hud" and len(shown) == 8:
            state["phase"], state["at"], state["index"] = "paused", n, shown[-1]
            return ["space", "."]
        if state["phase"] == "paused" and n - state["at"] == 30:
            return ["q"]
        return []

    install(script)
    run(speed=2)
    playing = [(i, line) for i, line in huds if line.startswith("playing")]
    paused = [(i, line) for i, line in huds if line.startswith("paused")]
    assert len(playing) >= 4 and paused
    for i, line in playing + paused:
        word = line.split()[0]
        assert line == f"{word} 00:00.{i // 3} / 00:10.0, frame {i}"
    # the step, drawn with its position while paused
    assert paused[-1][0] == shown[-1] > state["index"]
