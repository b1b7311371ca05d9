"""The stream servers of tests/streams.py, through a plain cv2.VideoCapture (OpenCV's
FFmpeg backend, as frame-engine opens URLs): each kind delivers the demo's frames in
increasing order and live (never a frame before it is due); a killed server stops
the stream; a restarted one goes on, on the same port, from where the stream is; a
silent server makes the open time out. These are what the live-stream tests of the
player stand on."""

import time

import cv2
import pytest
from helpers import wait_until
from streams import FFMPEG_KINDS

from engine.sources import read_frame_number

TIMEOUT_MS = 3000  # open and read timeouts of the captures here
READ_FRAMES = 20
# Generous bounds for a loaded 2-core machine: an H.264 stream is opened in about
# 0.7 s here (a keyframe and FFmpeg's probe), MJPEG in about 0.2 s.
FIRST_FRAME_S = 6.0


def capture(url: str, timeout_ms: int = TIMEOUT_MS) -> cv2.VideoCapture:
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms]
    params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


def read_numbers(cap: cv2.VideoCapture, n: int, server) -> list[int]:
    """The barcodes of the next n frames; each checked not to be from the future."""
    numbers = []
    for _ in range(n):
        ok, frame = cap.read()
        assert ok, f"read failed after {len(numbers)} frames: {numbers}"
        k = read_frame_number(frame)
        assert k <= server.due_frame() + 1, f"frame {k} before it was due"
        numbers.append(k)
    return numbers


def increasing(numbers: list[int]) -> bool:
    return all(b > a for a, b in zip(numbers, numbers[1:], strict=False))


@pytest.mark.parametrize("kind", ["udp", "http", "tcp", "rtsp", "mjpeg"])
def test_each_kind_delivers_the_frames_in_order(stream_server, kind):
    server = stream_server(kind)
    t = time.monotonic()
    cap = capture(server.url)
    try:
        assert cap.isOpened(), f"{server.url}: cannot open"
        numbers = read_numbers(cap, READ_FRAMES, server)
        assert time.monotonic() - t < FIRST_FRAME_S + READ_FRAMES / server.fps * 3
    finally:
        cap.release()
    assert increasing(numbers), numbers
    # live: what it sends is the stream as it is now, not its start
    assert numbers[-1] >= server.due_frame() - 2 * server.fps, (numbers, server.due_frame())


@pytest.mark.parametrize("kind", ["udp", "tcp", "rtsp", "mjpeg"])
def test_a_killed_server_ends_the_stream_and_a_restarted_one_goes_on(stream_server, kind):
    server = stream_server(kind)
    cap = capture(server.url, timeout_ms=1000)
    try:
        before = read_numbers(cap, 5, server)
        pids = server.pids
        server.kill()
        assert not server.alive and not any(_running(p) for p in pids)
        # what was on its way still comes; then the reads fail: at once where the
        # connection closes, after the read timeout on UDP (nobody says it ended)
        t, left = time.monotonic(), 0
        while cap.read()[0]:
            left += 1
            assert left < server.fps, "frames keep coming from a killed server"
        assert time.monotonic() - t < 1.0 + 3.0
    finally:
        cap.release()
    server.restart()
    assert server.alive and server.starts == 2
    cap = capture(server.url)
    try:
        after = read_numbers(cap, 5, server)
    finally:
        cap.release()
    assert increasing(after) and after[0] > before[-1], (before, after)


def test_a_tcp_server_takes_one_client(stream_server):
    """As many cameras do: a second connection is refused while the first holds it
    (frame-engine must open such a source once)."""
    server = stream_server("tcp")
    first = capture(server.url)
    try:
        assert first.isOpened()
        read_numbers(first, 3, server)
        second = capture(server.url)
        assert not second.isOpened()
        second.release()
    finally:
        first.release()
    # and it ends with its one client
    wait_until(lambda: not server.alive, "the tcp server to end after its client", timeout=10)


@pytest.mark.parametrize("scheme", ["tcp", "http", "rtsp"])
def test_a_silent_server_makes_the_open_time_out(stream_server, scheme):
    server = stream_server("silent", scheme=scheme)
    t = time.monotonic()
    cap = capture(server.url, timeout_ms=1000)
    took = time.monotonic() - t
    opened = cap.isOpened()
    cap.release()
    assert not opened
    assert 0.9 < took < 1.0 + 3.0, took  # the timeout, not a refusal


def test_an_mjpeg_server_that_stalls_makes_the_read_time_out(stream_server):
    server = stream_server("mjpeg", stall_after=5)
    cap = capture(server.url, timeout_ms=1000)
    try:
        assert read_numbers(cap, 5, server)
        t = time.monotonic()
        ok, _ = cap.read()
        took = time.monotonic() - t
    finally:
        cap.release()
    assert not ok
    assert 0.9 < took < 1.0 + 3.0, took


@pytest.mark.parametrize("kind", FFMPEG_KINDS)
def test_the_stream_ends_after_its_frames(stream_server, kind):
    """`frames` bounds a stream: the server (feeder and ffmpeg) ends by itself."""
    server = stream_server(kind, frames=10)
    if kind in ("http", "tcp"):  # waiting for its client: give it one, to the end
        cap = capture(server.url)
        numbers = []
        while (got := cap.read())[0]:
            numbers.append(read_frame_number(got[1]))
        cap.release()
        assert numbers and numbers[-1] == 9, numbers
    wait_until(lambda: not server.alive, f"the {kind} server to end", timeout=10)


def _running(pid: int) -> bool:
    import os

    return os.path.exists(f"/proc/{pid}")
