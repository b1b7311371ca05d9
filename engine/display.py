"""Where frames go in the main process: a pygame window with a HUD and mpv's keys,
or, headless, a progress bar and nothing on screen."""

from __future__ import annotations

import os
import sys

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
    """A pygame window that blits frames straight from their slot."""

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
        self.size = (width, height)
        self.screen = pygame.display.set_mode(self.size, pygame.RESIZABLE)
        pygame.display.set_caption(title)
        self.title = title
        self.font = pygame.font.Font(None, 22)
        self.last: object = None  # the shown frame's surface, for redraws (HUD, pause)
        self.fullscreen = False

    def events(self) -> list[str]:
        out = []
        for ev in self.pg.event.get():
            if ev.type == self.pg.QUIT:
                out.append(QUIT)
            elif ev.type == self.pg.KEYDOWN:
                name = self.pg.key.name(ev.key)
                if name in self.KEYS:
                    out.append(self.KEYS[name])
        if FULLSCREEN in out:
            try:
                self.pg.display.toggle_fullscreen()
                self.fullscreen = not self.fullscreen
            except self.pg.error:  # some drivers (dummy, some Wayland) cannot
                pass
        return out

    def show(self, image: np.ndarray, title: str) -> None:
        """Blit a BGR frame (a view into its slot: no copy here) to the window."""
        h, w = image.shape[:2]
        surf = self.pg.image.frombuffer(image, (w, h), "BGR")
        target = self.screen.get_size()
        if target != (w, h):
            surf = self.pg.transform.scale(surf, target)
        self.screen.blit(surf, (0, 0))
        self.last = surf  # over the slot: valid while the run holds it (see keep_copy)
        self._caption(title)

    def keep_copy(self) -> None:
        """The slot of the frame on screen is about to be released: copy it."""
        if self.last is not None:
            self.last = self.last.copy()

    def _caption(self, title: str) -> None:
        if title != self.title:  # a round trip to the window manager: only on change
            self.title = title
            self.pg.display.set_caption(title)

    def redraw(self, hud: list[str] | None, title: str) -> None:
        """Draw the HUD over the current frame and flip."""
        if hud:
            if self.last is not None:
                self.screen.blit(self.last, (0, 0))
            y = 8
            for line in hud:
                text = self.font.render(line, True, (255, 255, 255))
                box = self.pg.Surface((text.get_width() + 8, text.get_height() + 4))
                box.set_alpha(160)
                box.fill((0, 0, 0))
                self.screen.blit(box, (6, y - 2))
                self.screen.blit(text, (10, y))
                y += text.get_height() + 6
        self._caption(title)
        self.pg.display.flip()

    def progress(self, frames: int, postfix: str) -> None:
        pass

    def close(self) -> None:
        self.pg.display.quit()
