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
import socket
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
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
    "connect",
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
# The probe reads this many frames of a file or URL and compares the rate their
# timestamps give with the header's; more than RATE_TOLERANCE apart, the header is
# taken to be wrong and the timestamps' rate is played.
RATE_FRAMES = 10
RATE_TOLERANCE = 0.10
# A network source (a URL) may take this long to open, and to give each frame, before
# it counts as stalled (--source-timeout): a live one is then reopened.
SOURCE_TIMEOUT_S = 5.0
# FFmpeg's options for opening a network source, unless OPENCV_FFMPEG_CAPTURE_OPTIONS
# is set (OpenCV's "key;value|key;value" form): RTSP over TCP (no lost packets, no
# smeared frames; many cameras need it through NAT), and no input buffering, so a
# frame is handed over the moment it is decoded. Options a protocol does not know
# are ignored.
LOW_LATENCY_OPTIONS = "rtsp_transport;tcp|fflags;nobuffer|flags;low_delay"
FILE_OPTIONS = "rtsp_transport;tcp"
RETRY_S = 0.01  # between reads of a stream's first frame that fail
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
    # > 0: the rate played. The header's, or the rate of the timestamps when they
    # disagree with it, or FALLBACK_FPS when neither gives one (each with a note);
    # --fps when given.
    fps: float
    declared_frames: int | None  # None when unknown or live
    # Cameras, and URLs that report no frame count (streams), are live; files, the
    # demo and URLs of a file (a frame count) are not.
    live: bool
    notes: tuple[str, ...] = ()
    # The source can go back to an earlier frame: files and the demo, a URL whose
    # server lets it (byte ranges); cameras and streams cannot.
    seekable: bool = True


class Source(ABC):
    """An open source, read in the reader process. Use as a context manager or call
    `close()`."""

    info: SourceInfo
    frames_read: int  # frames returned by read_into() so far
    frames_skipped: int  # frames of a file passed over by read_into() as undecodable
    # The container's timestamp of the frame read last, in seconds from the start of
    # the stream; None where the source has none (the demo, cameras) or it is not
    # usable (not finite, negative).
    pts: float | None = None
    # When the frame read last was got from the source (time.monotonic(), the same
    # clock in every process): a live frame's age is counted from it.
    read_at: float = 0.0

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
        """Make `frame_index` the next frame read (positions before the start go to
        frame 0). A source that is not seekable only goes forward, by reading.
        SourceError for a live source, or going back in one that is not seekable."""

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
        self.read_at = time.monotonic()
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


def quiet_opencv() -> None:
    """Keep OpenCV's warnings off stderr in this process (a reader: "Stream timeout
    triggered" on every stall of a stream), unless OPENCV_LOG_LEVEL says otherwise."""
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


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


def _open_capture(
    kind: str, spec: str, timeout_s: float = SOURCE_TIMEOUT_S, live: bool = True
) -> cv2.VideoCapture | None:
    """An opened VideoCapture for a file, URL or camera, or None. A URL gets
    `timeout_s` to open and for each read after (FFmpeg's own only: the timeouts
    apply with CAP_FFMPEG), and, unless the user set theirs, the low-latency options
    (`live`) or RTSP over TCP only (a file served over the network: without input
    buffering, the first frame can be passed over)."""
    with _quiet_opencv():
        if kind == "camera":
            cap = cv2.VideoCapture(int(spec))
        elif kind == "url":
            ms = round(timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            if live:
                # one decoding thread: FFmpeg's frame threads hold each frame back
                # one frame interval per thread (33 ms at 30 fps, measured)
                params += [cv2.CAP_PROP_N_THREADS, 1]
            with _capture_options(LOW_LATENCY_OPTIONS if live else FILE_OPTIONS):
                cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)
        elif cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
            # FFmpeg only: OpenCV's other file backends print their complaints
            # about a file that is not video straight to stderr
            cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG)
        else:
            cap = cv2.VideoCapture(spec)
    return cap if cap.isOpened() else None


@contextlib.contextmanager
def _capture_options(options: str) -> Iterator[None]:
    """OpenCV reads FFmpeg's options from the environment at each open: `options`
    for one open, unless the user set OPENCV_FFMPEG_CAPTURE_OPTIONS."""
    if CAPTURE_OPTIONS in os.environ:
        yield
        return
    os.environ[CAPTURE_OPTIONS] = options
    try:
        yield
    finally:
        os.environ.pop(CAPTURE_OPTIONS, None)


CAPTURE_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# The ports of the schemes whose servers can be asked whether they answer at all.
_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935}


def _why_not_open(url: str, waited_s: float, timeout_s: float) -> str:
    """Why a URL did not open, as far as it can be told: a connection refused, a
    host that does not answer or does not exist; else what reached us was not video
    (or nothing did, within the timeout)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    waited_out = waited_s >= timeout_s * 0.9
    if scheme in ("udp", "rtp", "srt"):
        return f"nothing received within {timeout_s:g} s" if waited_out else "not a video stream"
    try:
        host, port = parts.hostname, parts.port or _PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        return "not a URL OpenCV can open"
    if host and port:
        try:
            socket.create_connection((host, port), timeout=min(timeout_s, 2.0)).close()
        except socket.gaierror:
            return f"unknown host {host}"
        except ConnectionRefusedError:
            return "connection refused"
        except TimeoutError:
            return f"no answer from {host}:{port}"
        except OSError as e:
            return e.strerror or str(e)
    if waited_out:
        return f"connected, but no video came within {timeout_s:g} s"
    return "not a video stream OpenCV can decode"


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


def source_kind(spec: str | int | None) -> str:
    """What a source is, from how it is given: "demo", "file", "url" or "camera"."""
    return _classify(spec)[1]


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


def _first_frame(cap: cv2.VideoCapture, kind: str, timeout_s: float) -> np.ndarray | None:
    """The first frame that decodes. A stream joined mid-way has none before its
    next keyframe, and a read can fail meanwhile: a URL's is waited for, up to
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        image, _ = _read(cap, kind)
        if image is not None or kind != "url" or time.monotonic() >= deadline:
            return image
        time.sleep(RETRY_S)  # a read that fails at once (the end) must not spin


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


def _container_pts(cap: cv2.VideoCapture) -> float | None:
    """The timestamp of the frame just read (FFmpeg: its pts, in seconds from the
    stream's start time), or None when it is not usable."""
    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
    return ms / 1000 if math.isfinite(ms) and ms >= 0 else None


def _plausible(fps: float | None) -> bool:
    return fps is not None and math.isfinite(fps) and PLAUSIBLE_FPS[0] <= fps <= PLAUSIBLE_FPS[1]


def _timestamp_rate(stamps: list[float | None]) -> float | None:
    """Frames per second by the timestamps of consecutive frames; None when they
    are too few or do not increase. Intervals far from the median (a gap where
    frames are missing) are left out; the others are averaged, so that timestamps
    rounded to the millisecond still give the rate."""
    if len(stamps) < 3 or None in stamps:
        return None
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    if min(steps) <= 0:
        return None
    median = statistics.median(steps)
    usual = [d for d in steps if abs(d - median) <= median / 2]
    return len(usual) / sum(usual)


def _goes_back(cap: cv2.VideoCapture, first: np.ndarray) -> bool:
    """Whether a capture some frames in can seek back to its first frame. OpenCV's
    set() says yes even where it cannot (an HTTP server without byte ranges: the
    capture carries on from where it is), so the frame read there is compared with
    the first."""
    if not cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
        return False
    ok, image = cap.read()
    return bool(ok) and image is not None and np.array_equal(image, first)


def _connect(kind: str, text: str, timeout_s: float, live: bool = True) -> cv2.VideoCapture:
    """The source opened, or a SourceError that says why not."""
    name = _name(kind, text)
    began = time.monotonic()
    cap = _open_capture(kind, text, timeout_s, live)
    if cap is not None:
        return cap
    if kind == "file":
        raise SourceError(f"{name}: not a video OpenCV can decode")
    if kind == "camera":
        raise SourceError(f"{name}: cannot open")
    why = _why_not_open(text, time.monotonic() - began, timeout_s)
    raise SourceError(f"{name}: cannot open: {why}")


@dataclass
class _Kept:
    """A frame the probe of a live source read, handed on as its first frames."""

    image: np.ndarray
    pts: float | None
    read_at: float


def probe(
    spec: str | int | None, fps: float | None = None, timeout_s: float = SOURCE_TIMEOUT_S
) -> SourceInfo:
    """Check a source and describe it: None or "demo" is the demo, a camera index
    (0 or "0") a camera, "scheme://..." a URL, anything else a path. The first
    frame is decoded, so a SourceError here means the source cannot be played.
    `fps` (--fps) is the rate to play at, whatever the source says. A live source
    is better opened once, with `connect()`, in the process that reads it."""
    text, kind = _classify(spec)
    if kind == "demo":
        info = _demo_info(DEMO_FRAMES, DEMO_SIZE, DEMO_FPS)
        return info if fps is None else replace(info, fps=float(fps))
    if kind == "file":
        _check_file(text)
    cap = _connect(kind, text, timeout_s, live=False)
    try:
        return _describe(cap, kind, text, fps, keep=False)[0]
    finally:
        cap.release()


def connect(
    spec: str | int, fps: float | None = None, timeout_s: float = SOURCE_TIMEOUT_S
) -> Source:
    """Open a URL or a camera once, describe it (`.info`) and keep it open for
    reading: a server or camera that takes one client at a time is never asked
    twice, and the frames the probe read are the first ones read. A URL that turns
    out to be a file served over the network is read from its start."""
    text, kind = _classify(spec)
    if kind not in ("url", "camera"):
        raise ValueError(f"connect() is for URLs and cameras, not {kind}")
    cap = _connect(kind, text, timeout_s)
    try:
        info, kept = _describe(cap, kind, text, fps, keep=True, timeout_s=timeout_s)
    except BaseException:
        cap.release()
        raise
    if not info.live:
        # A file served over the network: the live options may have passed over its
        # first frame. Described, and read from its start, without them.
        cap.release()
        return _CaptureSource(probe(text, fps, timeout_s), timeout_s=timeout_s)
    return _CaptureSource(info, timeout_s=timeout_s, cap=cap, kept=kept)


def _describe(
    cap: cv2.VideoCapture,
    kind: str,
    text: str,
    fps: float | None,
    keep: bool,
    timeout_s: float = SOURCE_TIMEOUT_S,
) -> tuple[SourceInfo, list[_Kept]]:
    """What an opened source is (see probe()), and, with `keep`, the frames of a
    live source read to find it out."""
    name = _name(kind, text)
    first = _first_frame(cap, kind, timeout_s)
    if first is None:
        if kind == "file":
            raise SourceError(f"{name}: not a video OpenCV can decode")
        hint = ""
        if kind == "url" and urlsplit(text).path.lower().endswith((".mp4", ".m4v", ".mov")):
            # its index (moov) is at the end, out of reach of a server without ranges
            hint = (
                " (an mp4 served over http needs its index first: remux it with "
                "ffmpeg -i IN -c copy -movflags +faststart OUT, or serve it with ranges)"
            )
        raise SourceError(f"{name}: opened but gives no frames{hint}")
    first = first.copy()  # the capture may decode the next frame into the same buffer
    kept = [_Kept(first, None if kind == "camera" else _container_pts(cap), time.monotonic())]
    header = cap.get(cv2.CAP_PROP_FPS)
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    frame_count = int(count) if math.isfinite(count) and count > 0 else None
    # A URL that reports a frame count is a file served over the network: read at
    # the player's pace, never dropped at the source. Without one it is a stream,
    # live like a camera.
    live = kind == "camera" or (kind == "url" and frame_count is None)
    rate = None
    if kind != "camera":  # a camera's timestamps are its clock's, not a container's
        stamps = [kept[0].pts]
        while len(stamps) < RATE_FRAMES:
            if keep and live:  # these frames are played: decode them
                ok, image = cap.read()
                if not ok or image is None:
                    break
                kept.append(_Kept(image.copy(), _container_pts(cap), time.monotonic()))
            elif not cap.grab():
                break
            stamps.append(_container_pts(cap))
        rate = _timestamp_rate(stamps)
    seekable = kind == "file" or (kind == "url" and not live and _goes_back(cap, first))
    header_wrong = (
        _plausible(header) and _plausible(rate) and abs(rate / header - 1) > RATE_TOLERANCE
    )
    # A header whose rate is wrong gives a frame count as doubtful: Matroska, for
    # one, stores none, and OpenCV makes one from the duration and that rate.
    declared = None if live or header_wrong else frame_count

    note = None
    if _plausible(header) and not header_wrong:
        played = header
    elif _plausible(rate):
        played = rate
        note = (
            f"the header says {header:g} fps, its timestamps {rate:.4g}"
            if header_wrong
            else f"the source gives no usable frame rate ({header:g}), its timestamps {rate:.4g}"
        )
        note += f": playing at {rate:.4g} fps"
    else:
        played = FALLBACK_FPS
        note = f"the source gives no usable frame rate ({header:g}); playing at {FALLBACK_FPS:g}"
    notes = []
    if fps is not None:
        played = fps
    elif note:
        notes.append(f"{note} (--fps sets the rate)")
    info = SourceInfo(
        spec=text,
        kind=kind,
        width=int(first.shape[1]),
        height=int(first.shape[0]),
        fps=float(played),
        declared_frames=declared,
        live=live,
        notes=tuple(notes),
        seekable=seekable,
    )
    return info, kept if keep and live else []


class _CaptureSource(Source):
    """A file, URL or camera read through cv2.VideoCapture; a live one (`cap` and
    the frames its probe read given by connect()) can be opened again."""

    def __init__(
        self,
        info: SourceInfo,
        timeout_s: float = SOURCE_TIMEOUT_S,
        cap: cv2.VideoCapture | None = None,
        kept: list[_Kept] | None = None,
    ) -> None:
        self.info = info
        self.frames_read = self.frames_skipped = 0
        self._name = _name(info.kind, info.spec)
        self._position = 0  # the index of the next frame
        self._timeout_s = timeout_s
        self._kept = list(kept or ())
        if cap is None:
            if info.kind == "file":
                _check_file(info.spec)  # it may have changed since the probe: say how
            cap = _open_capture(info.kind, info.spec, timeout_s, live=info.live)
            if cap is None:
                raise SourceError(f"{self._name}: cannot open")
        self._cap: cv2.VideoCapture | None = cap

    def _capture(self) -> cv2.VideoCapture:
        if self._cap is None:
            raise SourceError(f"{self._name}: already closed")
        return self._cap

    def read_into(self, out: np.ndarray) -> bool:
        if self._kept:  # read by the probe: first
            kept = self._kept.pop(0)
            _fit_into(kept.image, out)
            self.pts, self.read_at = kept.pts, kept.read_at
            self.frames_read += 1
            self._position += 1
            return True
        # read(image=out) decodes into out when it has the frame's size; otherwise
        # OpenCV allocates a new array and returns it instead
        cap = self._capture()
        image, skipped = _read(cap, self.info.kind, out)
        if image is None:
            return False
        self.read_at = time.monotonic()
        if image is not out:
            _fit_into(image, out)
        self.frames_read += 1
        self.frames_skipped += skipped
        self._position += 1 + skipped
        self.pts = None if self.info.kind == "camera" else _container_pts(cap)
        return True

    def skip(self) -> bool:
        if self._kept:
            self._kept.pop(0)
        elif not self._capture().grab():
            return False
        self._position += 1
        return True

    def reopen(self) -> bool:
        """A live source that stopped: open it again; False if it does not open or
        gives no frame. Its frames go on from where they stopped."""
        self.close()
        cap = _open_capture(self.info.kind, self.info.spec, self._timeout_s)
        if cap is None:
            return False
        first = _first_frame(cap, self.info.kind, self._timeout_s)
        if first is None:
            cap.release()
            return False
        pts = None if self.info.kind == "camera" else _container_pts(cap)
        self._kept.append(_Kept(first.copy(), pts, time.monotonic()))
        self._cap = cap
        return True

    def seek(self, frame_index: int) -> None:
        if self.info.live:
            raise SourceError(f"{self._name}: a live source cannot seek")
        target = max(0, frame_index)
        if not self.info.seekable:
            # served without byte ranges: forward only, by reading
            if target < self._position:
                raise SourceError(f"{self._name}: cannot seek back (the server does not let it)")
            while self._position < target and self.skip():
                pass
            return
        if not self._capture().set(cv2.CAP_PROP_POS_FRAMES, target):
            raise SourceError(f"{self._name}: cannot seek to frame {frame_index}")
        self._position = target

    def close(self) -> None:
        self._kept.clear()
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def open_source(info: SourceInfo) -> Source:
    """Open a probed source for reading, at its first frame."""
    if info.kind == "demo":
        frames = DEMO_FRAMES if info.declared_frames is None else info.declared_frames
        return DemoSource(frames=frames, size=(info.width, info.height), fps=info.fps)
    return _CaptureSource(info)
