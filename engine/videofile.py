"""A video file written with PyAV: the container and codec chosen by the file's
extension (H.264 in yuv420p with the index first for .mp4 and .mov, so browsers
and phones play it and it streams before it is fully downloaded), frames stamped
with their own times, and the source's audio copied over the same span.

Used by the writer process (engine/writer.py) and by the benchmarks."""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from engine.errors import RunError

# Extension -> (FFmpeg's muxer, the default codec): what --output writes.
FORMATS = {
    ".mp4": ("mp4", "h264"),
    ".m4v": ("mp4", "h264"),
    ".mov": ("mov", "h264"),
    ".mkv": ("matroska", "h264"),
    ".webm": ("webm", "vp9"),
    ".avi": ("avi", "mjpeg"),
}
VIDEO_EXTENSIONS = tuple(FORMATS)
# --output-codec names -> the encoders that make them, the first one present used.
ENCODERS = {
    "h264": ("libx264",),
    "hevc": ("libx265",),
    "h265": ("libx265",),
    "vp9": ("libvpx-vp9",),
    "vp8": ("libvpx",),
    "av1": ("libsvtav1", "libaom-av1"),
    "mjpeg": ("mjpeg",),
}
# Each encoder's settings: fast enough to keep up with playback on a core or two
# (x264's veryfast gives most of medium's compression at about twice its speed),
# and the option that --output-crf sets, with its range and default.
SETTINGS = {
    "libx264": ({"preset": "veryfast"}, "crf", (0, 51), 23),
    "libx265": ({"preset": "veryfast"}, "crf", (0, 51), 28),
    "libvpx-vp9": (
        {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "b": "0"},
        "crf",
        (0, 63),
        32,
    ),
    "libvpx": ({"deadline": "realtime", "cpu-used": "8", "b": "1G"}, "crf", (4, 63), 10),
    "libsvtav1": ({"preset": "10"}, "crf", (1, 63), 35),
    "libaom-av1": ({"usage": "realtime", "cpu-used": "8"}, "crf", (0, 63), 32),
    # MJPEG has no CRF: the JPEG quantizer (qscale) plays its part, 2 best
    "mjpeg": ({"flags": "+qscale"}, "qscale", (2, 31), 3),
}
FINE_TIME_BASE = Fraction(1, 90000)  # MPEG's clock: variable frame rates keep their timing
AUDIO_FOR = {"webm": "libopus"}  # audio that cannot be copied is encoded: AAC, or this


def _av():
    import av  # FFmpeg's libraries; imported where a video is written

    return av


@dataclass(frozen=True)
class VideoSpec:
    """How a file is written: checked in the parent before anything starts."""

    path: str
    muxer: str
    encoder: str
    options: dict
    pix_fmt: str


def video_spec(path: str, codec: str | None = None, crf: float | None = None) -> VideoSpec:
    """The container, encoder and options for `path`; RunError (one line, exit
    code 2) for an extension, codec or CRF that cannot be written."""
    av = _av()
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise RunError(
            f"--output {path}: frame-engine writes {', '.join(VIDEO_EXTENSIONS)} files",
            exit_code=2,
        )
    muxer, default = FORMATS[ext]
    name = (codec or default).lower()
    candidates = ENCODERS.get(name, (name,))
    if ext == ".webm" and codec is None:
        candidates = ENCODERS["vp9"] + ENCODERS["av1"]  # VP9, or AV1 where the wheel has it
    encoder = None
    for candidate in candidates:
        try:
            found = av.codec.Codec(candidate, "w")
        except Exception:  # not in this build of FFmpeg
            continue
        if found.type == "video":
            encoder = found.name
            break
    if encoder is None:
        raise RunError(
            f"--output-codec {name}: no such video encoder here "
            f"(try {', '.join(n for n in ENCODERS if n != 'h265')})",
            exit_code=2,
        )
    probe = av.open(io.BytesIO(), "w", format=muxer)
    try:
        probe.add_stream(encoder)
    except ValueError:
        raise RunError(
            f"--output {path}: a {ext} file cannot hold {name} video "
            f"(it takes {', '.join(n for n, (m, d) in FORMATS.items() if m == muxer)} "
            f"with {default})",
            exit_code=2,
        ) from None
    finally:
        probe.close()
    extra, quality, (low, high), level = SETTINGS.get(encoder, ({}, "crf", (0, 63), None))
    if crf is not None:
        if not (math.isfinite(crf) and low <= crf <= high):
            raise RunError(
                f"--output-crf {crf:g}: {encoder} takes {low} to {high} (lower is better)",
                exit_code=2,
            )
        level = crf
    options = dict(extra)
    if level is not None:
        if quality == "qscale":  # FFmpeg's -q:v: global_quality in lambda units
            options["global_quality"] = str(round(level * 118))
        else:
            options[quality] = f"{level:g}"
    formats = {f.name for f in av.codec.Codec(encoder, "w").video_formats or ()}
    # 4:2:0, which every player takes (JPEG's full-range flavour for MJPEG)
    pix_fmt = "yuvj420p" if encoder == "mjpeg" or "yuv420p" not in formats else "yuv420p"
    return VideoSpec(path, muxer, encoder, options, pix_fmt)


def encoder_threads(workers: int, cores: int | None = None) -> int:
    """Threads for the encoder: what the machine has beyond the analyzers, the
    reader and the display (at least one, at most 8: x264 gains little past that
    at these sizes, and each adds a frame of delay)."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, min(8, cores - workers - 1))


class WriteError(OSError):
    """Writing the file failed (a full disk, a vanished folder): the message is
    one line naming the file."""


def _os_error(path: str, e: Exception) -> WriteError:
    errno = getattr(e, "errno", None)
    why = os.strerror(errno) if errno else str(e)
    return WriteError(errno or 0, f"{path}: {why}")


class VideoFile:
    """One output video: `add(image, t)` for each frame (BGR, t in seconds from the
    file's start, increasing), then `close()`, which finishes the file (its index,
    and for .mp4 and .mov the move of the index to the front).

    An odd width or height loses its last column or row (4:2:0 needs even sizes).
    The frames' times are kept to 1/90000 s (AVI: to the frame); a frame lasts
    until the next one starts, the last one a frame period."""

    def __init__(
        self,
        spec: VideoSpec,
        width: int,
        height: int,
        fps: float,
        threads: int = 1,
        audio_from: str | None = None,
        audio_start: float = 0.0,
    ) -> None:
        av = _av()
        self.spec = spec
        self.path = spec.path
        self.width, self.height = width & ~1, height & ~1
        self.rate = Fraction(fps).limit_denominator(1001)
        self.frames = 0
        self.end = 0.0  # seconds: the end of the last frame written
        self.last_pts = -1
        self.until = 0  # ticks: the file lasts at least to here (frames dropped at its end)
        self.closed = False
        self.held = None  # the encoder's last packet, not yet muxed
        container_options = {"movflags": "+faststart"} if spec.muxer in ("mp4", "mov") else {}
        try:
            self.out = av.open(
                spec.path, "w", format=spec.muxer, container_options=container_options
            )
        except Exception as e:
            raise _os_error(spec.path, e) from None
        try:
            stream = self.out.add_stream(spec.encoder, rate=self.rate, options=dict(spec.options))
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, spec.pix_fmt
            # AVI has no timestamps, only a frame rate: its clock is the frame period
            # (a frame not written leaves a repeated one).  Others keep each frame's time.
            self.time_base = 1 / self.rate if spec.muxer == "avi" else FINE_TIME_BASE
            stream.time_base = self.time_base
            stream.codec_context.time_base = self.time_base
            stream.codec_context.thread_count = threads
            # 4:2:0 from BGR by OpenCV (SIMD; 3-4x faster than swscale here), in
            # BT.601 limited range, and said so in the file: a player otherwise
            # guesses BT.709 for HD and shifts the colours
            self.convert = spec.pix_fmt == "yuv420p"
            if self.convert:
                stream.codec_context.colorspace = 5  # BT.601 (AVCOL_SPC_BT470BG)
                stream.codec_context.color_range = 1  # limited (AVCOL_RANGE_MPEG)
            self.stream = stream
            self.period = max(1, round(1 / (self.rate * self.time_base)))  # a frame, in ticks
            self.audio = (
                AudioCopy(self.out, audio_from, audio_start) if audio_from is not None else None
            )
        except BaseException:
            self.out.close()
            raise

    def add(self, image: np.ndarray, t: float) -> None:
        """Encode `image` (H x W x 3, BGR, uint8; copied) to be shown at `t` s."""
        av = _av()
        if image.shape[0] != self.height or image.shape[1] != self.width:
            image = np.ascontiguousarray(image[: self.height, : self.width])
        if self.convert:
            yuv = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        pts = max(round(t / self.time_base), self.last_pts + 1)  # strictly increasing
        frame.pts, frame.time_base, frame.duration = pts, self.time_base, self.period
        self.last_pts = pts
        self.end = float((pts + self.period) * self.time_base)
        try:
            if self.audio is not None:
                self.audio.until(float(pts * self.time_base))
            self._mux(self.stream.encode(frame))
        except Exception as e:
            raise _os_error(self.path, e) from None
        self.frames += 1

    def lasts_until(self, t: float) -> None:
        """A frame played but not written (dropped late) ends at `t` s: the last
        frame written lasts until then, so the file lasts as long as what was played."""
        self.until = max(self.until, round(t / self.time_base))
        self.end = max(self.end, float(self.until * self.time_base))

    def _mux(self, packets, last: bool = False) -> None:
        """Mux the encoder's packets, each held back until the next one comes: the
        last one's time plus its duration is where muxers end the file, so it lasts
        to the end of the last frame.  A frame left out (dropped late) leaves a gap
        in the timestamps, which the frame before it fills."""
        for packet in packets:
            if self.held is not None:
                self.held.duration = self.period
                self.out.mux(self.held)
            self.held = packet
        if last and self.held is not None:
            packet, self.held = self.held, None
            end = max(self.last_pts + self.period, self.until)
            packet.duration = max(self.period, end - packet.pts)
            self.out.mux(packet)

    def stop_audio(self) -> None:
        """No more audio after what was written (a seek broke the source's span)."""
        if self.audio is not None:
            self.audio.cut(float((self.last_pts + 1) * self.time_base))

    def close(self) -> None:
        """Flush the encoder, write the audio up to the end of the video and finish
        the file; closing twice does nothing.  WriteError says what failed."""
        if self.closed:
            return
        self.closed = True
        try:
            self._mux(self.stream.encode(None), last=True)
            if self.audio is not None:
                self.audio.until(self.end, flush=True)
        except Exception as e:
            raise _os_error(self.path, e) from None
        finally:
            try:
                if self.audio is not None:
                    self.audio.close()
                self.out.close()  # the trailer; for .mp4, the index moved to the front
            except Exception as e:
                raise _os_error(self.path, e) from None


class AudioCopy:
    """The first audio stream of `source`, from `start` (seconds of the source's
    video clock, on which frame times are given) on, into `out`: the packets
    copied where the container takes the codec, else decoded and encoded (AAC, or
    Opus for WebM).  Written as the video goes, so the file stays interleaved."""

    def __init__(self, out, source: str, start: float) -> None:
        av = _av()
        self.out = out
        self.input = None
        self.stream = None
        self.stop = math.inf  # output seconds: nothing after this (cut())
        try:
            self.input = av.open(source)
        except Exception:
            return  # opened fine by the reader; no audio is the lesser loss
        inputs = self.input.streams.audio
        if not inputs:
            self.close()
            return
        ain = inputs[0]
        video = self.input.streams.video
        # The reader's times count from the video's start (OpenCV's POS_MSEC): the
        # audio's are moved onto that clock, then to the file's (0 at `start`).
        video_start = 0.0
        if video and video[0].start_time is not None:
            video_start = float(video[0].start_time * video[0].time_base)
        self.offset = video_start + start
        self.encoder = None
        try:
            self.stream = out.add_stream_from_template(ain)
        except ValueError:  # the container does not take this codec: encode it
            name = AUDIO_FOR.get(out.format.name.split(",")[0], "aac")
            rate = ain.codec_context.sample_rate or 48000
            self.stream = out.add_stream(name, rate=rate, time_base=Fraction(1, rate))
            self.stream.layout = ain.codec_context.layout
            self.encoder = self.stream
        if start > 0:
            try:
                self.input.seek(math.floor((start + video_start) * 1e6), backward=True)
            except Exception:
                pass  # demuxed from the start instead, and cut
        self.ain = ain
        self.packets = self.input.demux(ain)
        self.pending = None  # a packet read past the time asked for

    def cut(self, at: float) -> None:
        self.stop = min(self.stop, at)

    def _next(self):
        if self.pending is not None:
            packet, self.pending = self.pending, None
            return packet
        for packet in self.packets:
            if packet.pts is not None and packet.size:
                return packet
        return None

    def until(self, t: float, flush: bool = False) -> None:
        """Write the audio that starts before `t` (output seconds)."""
        if self.stream is None:
            return
        end = min(t, self.stop)
        while True:
            packet = self._next()
            if packet is None:
                break
            start = float(packet.pts * packet.time_base) - self.offset
            if start >= end:
                self.pending = packet
                break
            if start < 0:
                continue  # before the span played
            if self.encoder is None:
                shift = round(self.offset / packet.time_base)
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = self.stream
                self.out.mux(packet)
            else:
                self._encode(packet)
        if flush and self.encoder is not None:
            self.out.mux(self.encoder.encode(None))

    def _encode(self, packet) -> None:
        for frame in packet.decode():
            rate = frame.sample_rate
            start = float(frame.pts * frame.time_base) - self.offset
            frame.pts, frame.time_base = round(start * rate), Fraction(1, rate)
            self.out.mux(self.encoder.encode(frame))

    def close(self) -> None:
        if self.input is not None:
            self.input.close()
            self.input = None
