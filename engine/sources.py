"""Where frames come from: video files, URLs, cameras and the built-in demo.

`probe()` checks a source and describes it (a `SourceInfo`); `open_source()` opens
it for reading, in the reader process. Every problem a user can cause is a
`SourceError` whose message is one line naming the input.

The demo is a synthetic clip that needs no file: a scrolling pattern, a moving disc,
the frame number drawn large, and the frame number in binary as a row of 16
black/white blocks along the top edge, which `read_frame_number()` decodes, so tests
can check order and loss from the pixels, even after resizing or lossy compression.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

# FFmpeg's own complaints about inputs it cannot open or decode ("moov atom not
# found", ...) go straight to stderr; a SourceError says it in one line instead.
# OpenCV reads this when it first uses FFmpeg, so it is set before cv2 is imported
# (and child processes inherit it). Set it yourself to see FFmpeg's messages.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from engine.errors import FrameEngineError  # noqa: E402

__all__ = [
    "DEMO_FPS",
    "DEMO_FRAMES",
    "DEMO_SIZE",
    "DemoSource",
    "Source",
    "SourceError",
    "SourceInfo",
    "open_source",
    "probe",
    "read_frame_number",
    "write_demo_clip",
]

DEMO_FRAMES = 300
DEMO_SIZE = (1280, 720)  # width, height
DEMO_FPS = 30.0

FALLBACK_FPS = 30.0
PLAUSIBLE_FPS = (0.1, 1000.0)  # a rate outside this is a broken header: FALLBACK_FPS
OPEN_TIMEOUT_MS = 5000  # for URLs: how long opening and each read may wait
# In a file, a frame that does not decode (damaged) is passed over: the frames after
# it may. A read fails at the end of the file too (at once, each time), so this many
# failed reads in a row are taken for the end.
UNDECODABLE_RUN = 100

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class SourceError(FrameEngineError):
    """A source that cannot be used. The message is one line naming the input and
    the problem, e.g. "video.mp4: no such file"."""


@dataclass(frozen=True)
class SourceInfo:
    """What `probe()` found out about a source."""

    spec: str  # as the user gave it ("demo", a path, a URL, "0")
    kind: str  # "demo" | "file" | "url" | "camera"
    width: int
    height: int
    fps: float  # > 0; FALLBACK_FPS (with a note) when the source does not say
    declared_frames: int | None  # None when unknown or live
    live: bool  # cameras and URLs are live; files and the demo are not
    notes: tuple[str, ...] = ()


class Source(ABC):
    """An open source, read in the reader process. Use as a context manager or call
    `close()`."""

    info: SourceInfo
    frames_read: int  # frames returned by read_into() so far
    frames_skipped: int  # frames of a file passed over by read_into() as undecodable

    @abstractmethod
    def read_into(self, out: np.ndarray) -> bool:
        """Decode the next frame into `out` (uint8, height x width x 3), resizing it
        when its size differs from out's. False at the end of the stream or when
        decoding stops. In a file, frames that do not decode are passed over and
        counted in frames_skipped."""

    @abstractmethod
    def skip(self) -> bool:
        """Read and discard the next frame (a live source dropping at the source).
        False at the end of the stream."""

    @abstractmethod
    def seek(self, frame_index: int) -> None:
        """Make `frame_index` the next frame read (files and the demo; positions
        before the start go to frame 0). SourceError for a live source."""

    @abstractmethod
    def close(self) -> None:
        """Release the source; closing twice is harmless."""

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- the demo ----------------------------------------------------------------

_CODE_BITS = 16
# The code strip, as fractions of the frame: 16 blocks, each 1/32 of the width and
# 1/18 of the height (40x40 px at 1280x720), from a quarter of the width, half a
# block below the top edge, on a mid-grey panel half a block wide all round.
_BLOCK_W, _BLOCK_H = 1 / 32, 1 / 18
_CODE_X0, _CODE_Y0 = 1 / 4, _BLOCK_H / 2


def _code_blocks(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of each code block, most significant bit first."""
    y0, y1 = round(_CODE_Y0 * height), round((_CODE_Y0 + _BLOCK_H) * height)
    xs = [round((_CODE_X0 + i * _BLOCK_W) * width) for i in range(_CODE_BITS + 1)]
    return [(xs[i], y0, xs[i + 1], y1) for i in range(_CODE_BITS)]


def read_frame_number(image: np.ndarray) -> int:
    """The frame number encoded in a demo frame's code strip, at any size the frame
    was resized to and after lossy compression. ValueError when the strip is not
    there (a block is neither clearly black nor clearly white)."""
    height, width = image.shape[:2]
    value = 0
    for i, (x0, y0, x1, y1) in enumerate(_code_blocks(width, height)):
        # the middle half of the block: away from edges blurred by scaling or JPEG
        dx, dy = (x1 - x0) // 4, (y1 - y0) // 4
        level = float(image[y0 + dy : y1 - dy, x0 + dx : x1 - dx].mean())
        if 80 < level < 176:
            raise ValueError(f"not a demo frame: code block {i} is grey ({level:.0f})")
        value = (value << 1) | (level >= 128)
    return value


class _DemoRenderer:
    """Draws demo frames of one size. Everything that does not depend on the frame
    number is drawn once here; a frame is then a few slice copies."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        square = max(2, round(height / 9))  # checker squares: 80 px at 720p
        self.period = 2 * square  # the background repeats every `period` px
        self.step = max(1, round(width / 320))  # scroll: 4 px per frame at 1280
        self.background = self._background(square)
        self.blocks = _code_blocks(width, height)
        bw, bh = self.blocks[0][2] - self.blocks[0][0], self.blocks[0][3] - self.blocks[0][1]
        x0, y0 = self.blocks[0][0] - bw // 2, self.blocks[0][1] - bh // 2
        self.panel = (x0, max(0, y0), self.blocks[-1][2] + bw // 2, self.blocks[-1][3] + bh // 2)
        self.glyphs = self._glyphs()
        self.radius = max(2, height // 8)

    def _background(self, square: int) -> np.ndarray:
        """A checkerboard tinted by two gradients, `period` px wider than a frame."""
        w, h = self.width + self.period, self.height
        y, x = np.mgrid[0:h, 0:w]
        checker = ((x // square + y // square) % 2).astype(np.float32)
        phase = 2 * np.pi * x / self.period  # periodic in x, so the scroll can wrap
        bg = np.empty((h, w, 3), np.uint8)
        bg[..., 0] = 60 + 120 * y / max(1, h - 1)
        bg[..., 1] = 70 + 110 * checker
        bg[..., 2] = 110 + 60 * np.cos(phase)
        return bg

    def _glyphs(self) -> dict[str, np.ndarray]:
        """The digits 0-9, white on black, drawn with cv2.putText, a quarter of the
        frame high."""
        font, scale = cv2.FONT_HERSHEY_SIMPLEX, self.height / 100
        thickness = max(1, round(scale * 2.5))
        sizes = [cv2.getTextSize(d, font, scale, thickness) for d in "0123456789"]
        tw = max(w for (w, _), _ in sizes)
        th = max(h for (_, h), _ in sizes)
        base = max(b for _, b in sizes)
        pad = thickness
        glyphs = {}
        for d in "0123456789":
            tile = np.zeros((th + base + 2 * pad, tw + 2 * pad, 3), np.uint8)
            org = (pad, pad + th)
            cv2.putText(tile, d, org, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
            glyphs[d] = tile
        return glyphs

    def render(self, index: int, out: np.ndarray) -> None:
        """Draw frame `index` into `out` (height x width x 3 uint8)."""
        w, h = self.width, self.height
        offset = (index * self.step) % self.period
        np.copyto(out, self.background[:, offset : offset + w])

        t = index / DEMO_FPS
        cx = round(w / 2 + 0.35 * w * math.cos(2 * math.pi * t / 5))
        cy = round(h / 2 + 0.3 * h * math.sin(2 * math.pi * t / 3))
        cv2.circle(out, (cx, cy), self.radius, (40, 200, 255), -1, cv2.LINE_AA)

        text = str(index)
        gh, gw = self.glyphs["0"].shape[:2]
        x = (w - gw * len(text)) // 2
        y = (h - gh) // 2
        for ch in text:
            if 0 <= x and x + gw <= w:
                out[y : y + gh, x : x + gw] = self.glyphs[ch]
            x += gw

        px0, py0, px1, py1 = self.panel
        out[py0:py1, px0:px1] = 128
        code = index & ((1 << _CODE_BITS) - 1)
        for i, (x0, y0, x1, y1) in enumerate(self.blocks):
            out[y0:y1, x0:x1] = 255 if code >> (_CODE_BITS - 1 - i) & 1 else 0


def _demo_info(frames: int, size: tuple[int, int], fps: float) -> SourceInfo:
    """The SourceInfo of a demo with these parameters."""
    width, height = size
    if frames < 0 or width < 64 or height < 36 or not fps > 0:
        raise ValueError(f"demo: bad parameters frames={frames} size={size} fps={fps}")
    return SourceInfo("demo", "demo", width, height, float(fps), frames, live=False)


class DemoSource(Source):
    """The built-in demo: `frames` frames of `size` (width, height) at `fps`."""

    def __init__(
        self,
        frames: int = DEMO_FRAMES,
        size: tuple[int, int] = DEMO_SIZE,
        fps: float = DEMO_FPS,
    ) -> None:
        self.info = _demo_info(frames, size, fps)
        self.frames_read = self.frames_skipped = 0
        self._frames = frames
        self._renderer = _DemoRenderer(*size)
        self._next = 0
        self._scratch: np.ndarray | None = None  # for an `out` of another size

    def read_into(self, out: np.ndarray) -> bool:
        if self._next >= self._frames:
            return False
        if out.shape == (self.info.height, self.info.width, 3):
            self._renderer.render(self._next, out)
        else:
            if self._scratch is None:
                self._scratch = np.empty((self.info.height, self.info.width, 3), np.uint8)
            self._renderer.render(self._next, self._scratch)
            _fit_into(self._scratch, out)
        self._next += 1
        self.frames_read += 1
        return True

    def skip(self) -> bool:
        if self._next >= self._frames:
            return False
        self._next += 1
        return True

    def seek(self, frame_index: int) -> None:
        self._next = max(0, frame_index)

    def close(self) -> None:
        pass


def write_demo_clip(
    path: str | os.PathLike[str],
    frames: int = DEMO_FRAMES,
    size: tuple[int, int] = DEMO_SIZE,
    fps: float = DEMO_FPS,
    fourcc: str = "MJPG",
) -> None:
    """Write the demo's first `frames` frames, drawn at `size` (width, height), to a
    video file (e.g. "MJPG" in .avi, "mp4v" in .mp4)."""
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise OSError(f"{os.fspath(path)}: cannot write a {fourcc} video")
    try:
        with DemoSource(frames=frames, size=size, fps=fps) as demo:
            frame = np.empty((size[1], size[0], 3), np.uint8)
            while demo.read_into(frame):
                writer.write(frame)
    finally:
        writer.release()


# --- files, URLs and cameras -------------------------------------------------


def _fit_into(image: np.ndarray, out: np.ndarray) -> None:
    """Copy a decoded image into `out`, converting it to 3 channels and resizing it
    to out's size when they differ."""
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    height, width = out.shape[:2]
    if image.shape[:2] == (height, width):
        np.copyto(out, image)
    else:
        shrink = image.shape[0] > height or image.shape[1] > width
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        resized = cv2.resize(image, (width, height), dst=out, interpolation=interpolation)
        if resized is not out:  # OpenCV could not write into out (never seen, but cheap)
            np.copyto(out, resized)


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Keep OpenCV's warnings and errors about an input it cannot open off stderr
    while opening it ("Could not find decoder for codec_id=0" for a damaged
    header): the SourceError says it in one line. OPENCV_LOG_LEVEL, when set, wins."""
    if "OPENCV_LOG_LEVEL" in os.environ:
        yield
        return
    logging = cv2.utils.logging
    previous = logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _name(kind: str, spec: str) -> str:
    """How messages name a source."""
    if kind == "camera":
        return f"camera {spec}"
    if kind == "url":
        return _redacted(spec)
    return spec


def _open_capture(kind: str, spec: str) -> cv2.VideoCapture | None:
    """An opened VideoCapture for a file, URL or camera, or None."""
    with _quiet_opencv():
        if kind == "camera":
            cap = cv2.VideoCapture(int(spec))
        elif kind == "url":
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                OPEN_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                OPEN_TIMEOUT_MS,
            ]
            cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)
        elif cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
            # FFmpeg only: OpenCV's other file backends print their complaints
            # about a file that is not video straight to stderr
            cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG)
        else:
            cap = cv2.VideoCapture(spec)
    return cap if cap.isOpened() else None


def _classify(spec: str | int | None) -> tuple[str, str]:
    """(spec as text, kind) for what the user gave."""
    if spec is None:
        return "demo", "demo"
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 0:
            raise SourceError(f"camera {spec}: a camera index is 0 or more")
        return str(spec), "camera"
    if not isinstance(spec, str):
        raise SourceError(f"{spec!r}: not a source (give a path, a URL, a camera index or demo)")
    if spec == "demo":
        return spec, "demo"
    if spec.isascii() and spec.isdigit():
        return spec, "camera"
    if _URL.match(spec):
        return spec, "url"
    return spec, "file"


def _read(
    cap: cv2.VideoCapture, kind: str, out: np.ndarray | None = None
) -> tuple[np.ndarray | None, int]:
    """The next frame that decodes (into `out` when it has the frame's size) and how
    many frames before it did not; (None, 0) at the end. Only a file is read on past
    a frame that does not decode: a camera or a URL that fails a read has ended."""
    for failed in range(UNDECODABLE_RUN if kind == "file" else 1):
        ok, image = cap.read(image=out)
        if ok and image is not None and image.size:
            return image, failed
    return None, 0


def _check_file(path: str) -> None:
    """SourceError for a path that cannot be a video file, before OpenCV tries it."""
    if not os.path.lexists(path):
        raise SourceError(f"{path}: no such file")
    if os.path.isdir(path):
        raise SourceError(f"{path}: is a directory, not a video file")
    if not os.path.exists(path):
        raise SourceError(f"{path}: broken symbolic link")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path}: permission denied")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise SourceError(f"{path}: empty file")


def probe(spec: str | int | None) -> SourceInfo:
    """Check a source and describe it: None or "demo" is the demo, a camera index
    (0 or "0") a camera, "scheme://..." a URL, anything else a path. The first
    frame is decoded, so a SourceError here means the source cannot be played."""
    text, kind = _classify(spec)
    if kind == "demo":
        return _demo_info(DEMO_FRAMES, DEMO_SIZE, DEMO_FPS)
    if kind == "file":
        _check_file(text)
    live = kind in ("camera", "url")
    name = _name(kind, text)
    cap = _open_capture(kind, text)
    if cap is None:
        if kind == "file":
            raise SourceError(f"{name}: not a video OpenCV can decode")
        if kind == "camera":
            raise SourceError(f"{name}: cannot open")
        raise SourceError(
            f"{name}: cannot open (refused, no answer within {OPEN_TIMEOUT_MS // 1000} s, "
            "or not a stream OpenCV can decode)"
        )
    try:
        first, _ = _read(cap, kind)
        if first is None:
            if kind == "file":
                raise SourceError(f"{name}: not a video OpenCV can decode")
            raise SourceError(f"{name}: opened but gives no frames")
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        cap.release()

    notes: list[str] = []
    if not (math.isfinite(fps) and PLAUSIBLE_FPS[0] <= fps <= PLAUSIBLE_FPS[1]):
        notes.append(
            f"the source gives no usable frame rate ({fps:g}); playing at {FALLBACK_FPS:g}"
        )
        fps = FALLBACK_FPS
    declared = None
    if not live and math.isfinite(count) and count > 0:
        declared = int(count)
    return SourceInfo(
        spec=text,
        kind=kind,
        width=int(first.shape[1]),
        height=int(first.shape[0]),
        fps=float(fps),
        declared_frames=declared,
        live=live,
        notes=tuple(notes),
    )


class _CaptureSource(Source):
    """A file, URL or camera read through cv2.VideoCapture."""

    def __init__(self, info: SourceInfo) -> None:
        self.info = info
        self.frames_read = self.frames_skipped = 0
        self._name = _name(info.kind, info.spec)
        if info.kind == "file":
            _check_file(info.spec)  # it may have changed since the probe: say how
        cap = _open_capture(info.kind, info.spec)
        if cap is None:
            raise SourceError(f"{self._name}: cannot open")
        self._cap: cv2.VideoCapture | None = cap

    def _capture(self) -> cv2.VideoCapture:
        if self._cap is None:
            raise SourceError(f"{self._name}: already closed")
        return self._cap

    def read_into(self, out: np.ndarray) -> bool:
        # read(image=out) decodes into out when it has the frame's size; otherwise
        # OpenCV allocates a new array and returns it instead
        image, skipped = _read(self._capture(), self.info.kind, out)
        if image is None:
            return False
        if image is not out:
            _fit_into(image, out)
        self.frames_read += 1
        self.frames_skipped += skipped
        return True

    def skip(self) -> bool:
        return bool(self._capture().grab())

    def seek(self, frame_index: int) -> None:
        if self.info.live:
            raise SourceError(f"{self._name}: a live source cannot seek")
        if not self._capture().set(cv2.CAP_PROP_POS_FRAMES, max(0, frame_index)):
            raise SourceError(f"{self._name}: cannot seek to frame {frame_index}")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def open_source(info: SourceInfo) -> Source:
    """Open a probed source for reading, at its first frame."""
    if info.kind == "demo":
        frames = DEMO_FRAMES if info.declared_frames is None else info.declared_frames
        return DemoSource(frames=frames, size=(info.width, info.height), fps=info.fps)
    return _CaptureSource(info)
