"""Where frames go in the main process: a pygame window with a HUD and mpv's keys,
or, headless, a progress bar and nothing on screen."""

from __future__ import annotations

import math
import os
import sys
import time

import cv2
import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

# Events the run reacts to, whatever view produced them.
QUIT, PAUSE, SEEK_BACK, SEEK_FORWARD, STEP, STATS, FULLSCREEN = (
    "quit",
    "pause",
    "seek-back",
    "seek-forward",
    "step",
    "stats",
    "fullscreen",
)


AUTOFIT = 0.9  # a window opens at most this share of the desktop: room for decorations
CAPTION_EVERY_S = 0.25  # the window's title changes at most this often


def fit(size: tuple[int, int], box: tuple[int, int], upscale: bool = False) -> tuple[int, int]:
    """`size` scaled to fit in `box` with its aspect ratio kept; never larger than
    it was unless `upscale`."""
    (w, h), (bw, bh) = size, box
    s = min(bw / w, bh / h)
    if not upscale:
        s = min(s, 1.0)
    return max(1, min(bw, round(w * s))), max(1, min(bh, round(h * s)))


def autofit_box(desktops: list[tuple[int, int]]) -> tuple[int, int]:
    """The most a new window may take: AUTOFIT of the smallest desktop, where it
    fits whichever screen it opens on."""
    w, h = min(desktops, key=lambda d: d[0] * d[1])
    return max(1, int(w * AUTOFIT)), max(1, int(h * AUTOFIT))


def clock_text(seconds: float, hours: bool = False) -> str:
    """00:12.4, or 1:02:03.4 past an hour (or with `hours`); floored, as mpv does."""
    if not math.isfinite(seconds):
        return "--:--.-"
    tenths = math.floor(max(seconds, 0.0) * 10 + 1e-6)
    minutes, tenths = divmod(tenths, 600)
    h, m = divmod(minutes, 60)
    if h or hours:
        return f"{h}:{m:02d}:{tenths // 10:02d}.{tenths % 10}"
    return f"{m:02d}:{tenths // 10:02d}.{tenths % 10}"


def position_text(pts: float, index: int, duration: float | None) -> str:
    """Where playback is, for the title and the overlay: the frame's time, the
    duration where known, and the frame number ("00:12.4 / 01:05.0, frame 372")."""
    if duration is None:
        return f"{clock_text(pts)}, frame {index}"
    hours = duration >= 3600
    return f"{clock_text(pts, hours)} / {clock_text(duration, hours)}, frame {index}"


def display_available() -> bool:
    """True where a window can be opened: an X or Wayland display, or an SDL video
    driver chosen explicitly (SDL_VIDEODRIVER=dummy in tests)."""
    return bool(
        os.environ.get("SDL_VIDEODRIVER")
        or os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
    )


class HeadlessView:
    """No window: a tqdm bar on stderr when it is a terminal, else nothing until the
    summary the run prints at the end."""

    def __init__(self, total: int | None, title: str, quiet: bool) -> None:
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=title, unit="frame", dynamic_ncols=True, leave=True)
        self.count = 0

    def events(self) -> list[str]:
        return []

    def show(self, image: np.ndarray, title: str) -> None:
        pass

    def redraw(self, hud: list[str] | None, title: str) -> None:
        pass

    def progress(self, frames: int, postfix: str) -> None:
        if self.bar is not None and frames != self.count:
            self.bar.update(frames - self.count)
            self.bar.set_postfix_str(postfix, refresh=False)
        self.count = frames

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class WindowView:
    """A pygame window that shows frames straight from their slot, scaled to fit the
    window with their aspect ratio kept (on black), as mpv does."""

    KEYS = {
        "q": QUIT,
        "escape": QUIT,
        "space": PAUSE,
        "left": SEEK_BACK,
        "right": SEEK_FORWARD,
        ".": STEP,
        "i": STATS,
        "f": FULLSCREEN,
    }

    def __init__(self, width: int, height: int, title: str) -> None:
        import pygame

        self.pg = pygame
        pygame.display.init()
        pygame.font.init()
        # mpv's autofit: a clip larger than the screen opens scaled down to fit it,
        # centred (unless the user placed windows with SDL_VIDEO_WINDOW_POS).
        desktops = pygame.display.get_desktop_sizes()
        if not desktops:  # a driver that does not say: what it reports as the current mode
            info = pygame.display.Info()
            desktops = [(info.current_w, info.current_h)]
        self.windowed = fit((width, height), autofit_box(desktops))
        if "SDL_VIDEO_WINDOW_POS" not in os.environ:
            os.environ.setdefault("SDL_VIDEO_CENTERED", "1")
        self.screen = pygame.display.set_mode(self.windowed, pygame.RESIZABLE)
        self.fullscreen = False
        self.title = ""  # the caption the window has
        self.wanted = title  # the caption it should have (see _caption)
        self.caption_at = -math.inf
        self._caption(title)
        self.font = pygame.font.Font(None, 22)
        self.hud: list[str] | None = None
        self.image: np.ndarray | None = None  # the shown frame: over its slot until keep_copy()
        self.layout: tuple | None = None  # (window size, frame size) the rects are for
        self.rect = pygame.Rect(0, 0, 0, 0)  # where the frame goes in the window
        self.bars: list = []  # the rest of the window: black
        self.scaled: np.ndarray | None = None  # the frame at rect's size, when that differs
        self.scaled_surface = None  # a surface over `scaled`, made once per layout
        self.scaled_ok = False  # `scaled` holds the current image
        self.clean = False  # the window shows the frame and nothing over it

    def events(self) -> list[str]:
        out = []
        repaint = False
        for ev in self.pg.event.get():
            if ev.type == self.pg.QUIT:
                out.append(QUIT)
            elif ev.type == self.pg.KEYDOWN:
                name = self.pg.key.name(ev.key)
                if name in self.KEYS:
                    out.append(self.KEYS[name])
            elif ev.type in (self.pg.WINDOWSIZECHANGED, self.pg.WINDOWEXPOSED):
                repaint = True
        if FULLSCREEN in out:
            self._toggle_fullscreen()
            repaint = True
        if repaint:  # resized or uncovered: paint again now, also while paused
            self.clean = False
            self.redraw(self.hud, self.wanted)
        self._flush_caption()
        return out

    def _toggle_fullscreen(self) -> None:
        """Full screen on the desktop's resolution and back to the window's size.
        Not pygame's toggle_fullscreen(): on X11 that re-creates the window (which
        then cannot be resized) and prints a warning to stderr."""
        pg = self.pg
        try:
            if not self.fullscreen:
                self.windowed = self.screen.get_size()
                # (0, 0): the desktop's size, so SDL's borderless full screen, no mode change
                self.screen = pg.display.set_mode((0, 0), pg.FULLSCREEN)
            else:
                self.screen = pg.display.set_mode(self.windowed, pg.RESIZABLE)
                if self.screen.get_size() != self.windowed:  # the dummy driver needs two
                    self.screen = pg.display.set_mode(self.windowed, pg.RESIZABLE)
            self.fullscreen = not self.fullscreen
        except pg.error:  # a driver that cannot: stay as we are
            pass

    def show(self, image: np.ndarray, title: str) -> None:
        """Put a BGR frame (a view into its slot: no copy here) in the window."""
        self.image = image
        self.scaled_ok = False
        self._present()
        self._caption(title)

    def _present(self) -> None:
        """Draw the frame, scaled to fit the window with its aspect ratio kept, and
        black bars around it; nothing over it."""
        pg, screen = self.pg, self.screen
        win = screen.get_size()
        if self.image is None:
            screen.fill((0, 0, 0))
            self.clean = True
            return
        h, w = self.image.shape[:2]
        if self.layout != (win, (w, h)):
            self._lay_out(win, (w, h))
        for bar in self.bars:
            screen.fill((0, 0, 0), bar)
        if self.scaled is None:
            screen.blit(pg.image.frombuffer(self.image, (w, h), "BGR"), self.rect)
        else:
            if not self.scaled_ok:
                # bilinear, into the same buffer every frame: about 1 ms for 1080p
                cv2.resize(self.image, self.rect.size, self.scaled, interpolation=cv2.INTER_LINEAR)
                self.scaled_ok = True
            screen.blit(self.scaled_surface, self.rect)
        self.clean = True

    def _lay_out(self, win: tuple[int, int], frame: tuple[int, int]) -> None:
        self.layout = (win, frame)
        size = fit(frame, win, upscale=True)
        self.rect = self.pg.Rect(((win[0] - size[0]) // 2, (win[1] - size[1]) // 2), size)
        r = self.rect
        self.bars = [
            b
            for b in (
                (0, 0, win[0], r.top),
                (0, r.bottom, win[0], win[1] - r.bottom),
                (0, r.top, r.left, r.height),
                (r.right, r.top, win[0] - r.right, r.height),
            )
            if b[2] > 0 and b[3] > 0
        ]
        if size == frame:
            self.scaled = self.scaled_surface = None
        else:
            self.scaled = np.empty((size[1], size[0], 3), np.uint8)
            self.scaled_surface = self.pg.image.frombuffer(self.scaled, size, "BGR")
        self.scaled_ok = False

    def keep_copy(self) -> None:
        """The slot of the frame on screen is about to be released: copy what is on
        screen (the scaled frame where there is one: smaller, and all a redraw at
        this size needs)."""
        if self.scaled is not None and self.scaled_ok:
            self.image = self.scaled.copy()
        elif self.image is not None:
            self.image = self.image.copy()

    def _caption(self, title: str) -> None:
        self.wanted = title
        self._flush_caption()

    def _flush_caption(self) -> None:
        """Give the window the wanted caption, at most every CAPTION_EVERY_S (each is
        a round trip to the window manager); one held back goes out on a later call
        (events() makes one every turn of the loop)."""
        if self.wanted != self.title:
            now = time.monotonic()
            if now - self.caption_at >= CAPTION_EVERY_S:
                self.title, self.caption_at = self.wanted, now
                self.pg.display.set_caption(self.wanted)

    def redraw(self, hud: list[str] | None, title: str) -> None:
        """Draw the HUD over the current frame and flip."""
        self.hud = hud
        if not self.clean:  # a HUD was drawn over it, or the window changed
            self._present()
        if hud:
            y = 8
            for line in hud:
                text = self.font.render(line, True, (255, 255, 255))
                box = self.pg.Surface((text.get_width() + 8, text.get_height() + 4))
                box.set_alpha(160)
                box.fill((0, 0, 0))
                self.screen.blit(box, (6, y - 2))
                self.screen.blit(text, (10, y))
                y += text.get_height() + 6
            self.clean = False
        self._caption(title)
        self.pg.display.flip()

    def progress(self, frames: int, postfix: str) -> None:
        pass

    def close(self) -> None:
        self.pg.display.quit()
