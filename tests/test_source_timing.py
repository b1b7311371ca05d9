"""Where a source's timing comes from: frame timestamps from the container, a header
rate checked against them, --fps over both; and which sources are live: an http
URL of a plain file is not (--live and --no-live decide otherwise).

Clips with wrong headers or gaps in their timestamps are made with the ffmpeg of
imageio-ffmpeg (a test dependency); URLs are served from 127.0.0.1 by a server
in a thread of the test."""

import contextlib
import functools
import io
import json
import os
import re
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from helpers import tool

from engine import cli
from engine.reader import Timestamps
from engine.sources import SourceError, open_source, probe, read_frame_number, write_demo_clip

HERE = os.path.dirname(os.path.abspath(__file__))
FRAMES = 40
SIZE = (320, 180)
RATE = 24.0  # the clips' real rate
GAP_AT, GAP = 10, 40  # the gap clip: frame GAP_AT and after come GAP frame periods late


def ffmpeg(*args):
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    p = subprocess.run(
        [exe, "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """base.avi: FRAMES demo frames at RATE. wrong.mkv: the same frames, their
    timestamps at RATE, the header saying 30 fps (plays 25% fast by the header).
    gap.mkv: timestamps at RATE with a gap of GAP frame periods before frame GAP_AT."""
    folder = tmp_path_factory.mktemp("timing")
    base = str(folder / "base.avi")
    write_demo_clip(base, frames=FRAMES, size=SIZE, fps=RATE)
    ffmpeg("-i", base, "-c", "copy", "-r", "30", str(folder / "wrong.mkv"))
    # setts counts in the input's time base, 1/RATE: N is the frame number
    gap = f"setts=ts='if(lt(N,{GAP_AT}),N,N+{GAP})'"
    ffmpeg("-i", base, "-c", "copy", "-bsf:v", gap, str(folder / "gap.mkv"))
    return folder


def play(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=HERE, SDL_VIDEODRIVER="dummy")
    return subprocess.run(
        [tool("frame-engine"), "play", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def play_stats(tmp_path, *args):
    """Run play headless with --stats-json; it must succeed; (process, stats)."""
    path = tmp_path / "stats.json"
    p = play(*args, "--headless", "--stats-json", str(path))
    assert p.returncode == 0, p.stderr
    return p, json.loads(path.read_text())


# ---- timestamps from the container ---------------------------------------------


def test_pts_come_from_the_container(clips, tmp_path):
    """ctx.pts is the frame's timestamp in the file, gap included, not index / fps."""
    results = tmp_path / "r.jsonl"
    p = play(
        str(clips / "gap.mkv"),
        "--headless",
        "--untimed",
        "--analyze",
        "player_funcs:number",
        "--results",
        str(results),
    )
    assert p.returncode == 0, p.stderr
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [x["result"]["pixels"] for x in lines] == list(range(FRAMES))
    expected = [(i if i < GAP_AT else i + GAP) / RATE for i in range(FRAMES)]
    # Matroska keeps milliseconds
    assert [x["result"]["pts"] for x in lines] == pytest.approx(expected, abs=0.0015)


def test_pts_without_usable_timestamps_follow_the_frames_at_the_rate():
    stamps = Timestamps(fps=25.0)
    # none from the container: index / fps, from wherever the run starts
    assert [stamps.pts(i, None) for i in (5, 6)] == pytest.approx([0.2, 0.24])
    stamps.restart()  # a seek
    assert stamps.pts(0, 0.0) == 0.0
    assert stamps.pts(1, 0.04) == 0.04  # the container's
    assert stamps.pts(2, 0.04) == pytest.approx(0.08)  # not after the last: extrapolated
    assert stamps.pts(4, 0.01) == pytest.approx(0.16)  # back in time: extrapolated
    assert stamps.pts(5, None) == pytest.approx(0.20)
    assert stamps.pts(6, 3.0) == 3.0  # a gap in the file is kept
    stamps.restart()
    assert stamps.pts(2, 0.08) == 0.08  # after a seek, earlier times are fine


def test_the_demo_keeps_index_over_fps(tmp_path):
    results = tmp_path / "r.jsonl"
    p = play(
        "--headless",
        "--untimed",
        "--frames",
        "5",
        "--analyze",
        "player_funcs:number",
        "--results",
        str(results),
    )
    assert p.returncode == 0, p.stderr
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [x["result"]["pts"] for x in lines] == pytest.approx([i / 30 for i in range(5)])


# ---- the frame rate ---------------------------------------------------------------


def test_a_header_rate_the_timestamps_contradict_is_not_played(clips):
    info = probe(str(clips / "wrong.mkv"))
    assert info.fps == pytest.approx(RATE, rel=0.01)
    assert len(info.notes) == 1
    assert "header says 30 fps, its timestamps 24" in info.notes[0] and "--fps" in info.notes[0]
    # the count OpenCV gives (duration x the header's rate) is as wrong: none
    assert info.declared_frames is None
    # a header that agrees with its timestamps: as it was
    info = probe(str(clips / "base.avi"))
    assert (info.fps, info.declared_frames, info.notes) == (RATE, FRAMES, ())


def test_a_gap_in_the_timestamps_does_not_change_the_rate(clips):
    info = probe(str(clips / "gap.mkv"))
    assert info.fps == RATE and info.notes == ()


def test_a_wrong_header_plays_at_the_timestamps_rate_unless_fps_says(clips, tmp_path):
    p, s = play_stats(tmp_path, str(clips / "wrong.mkv"), "--speed", "4")
    assert s["source_fps"] == pytest.approx(RATE, rel=0.01)
    assert s["frames_shown"] + s["dropped_late"] == FRAMES
    assert "header says 30 fps" in p.stderr
    assert "declared frames" not in p.stderr  # no false "the file ends early"

    p, s = play_stats(tmp_path, str(clips / "wrong.mkv"), "--speed", "4", "--fps", "30")
    assert s["source_fps"] == 30.0
    assert "header says" not in p.stderr  # --fps said it: no note


def test_fps_sets_the_clock(clips, tmp_path):
    """15 frames at --fps 10 take at least 1.4 s from the first shown to the last
    (at the clip's 24 fps they would take 0.58 s). A loaded machine can only make
    that longer."""
    p, s = play_stats(tmp_path, str(clips / "base.avi"), "--fps", "10", "--frames", "15")
    assert s["source_fps"] == 10.0
    assert s["frames_shown"] + s["dropped_late"] == 15
    assert s["fps"]["display_steady"] <= 10.5


# ---- http URLs of files -------------------------------------------------------------


class QuietHandler(SimpleHTTPRequestHandler):
    """Python's file server: no byte ranges (a Range header is ignored), no log."""

    def log_message(self, format, *args):
        pass


class RangeHandler(QuietHandler):
    """The same, answering `Range: bytes=a-b` with 206, as most web servers do."""

    def send_head(self):
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if not m or not os.path.isfile(path):
            return super().send_head()
        with open(path, "rb") as f:
            data = f.read()
        start = int(m[1])
        end = min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
        if start >= len(data):
            self.send_error(416)
            return None
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return io.BytesIO(data[start : end + 1])


@contextlib.contextmanager
def serving(folder, handler):
    """The URL of `folder` served from 127.0.0.1 by `handler`; the server is
    stopped at the end."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=folder))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-http"
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(params=[QuietHandler, RangeHandler], ids=["plain", "ranges"])
def served(request, clips):
    """The clips' URL, from each server, and whether it serves byte ranges."""
    with serving(str(clips), request.param) as base:
        yield base, request.param is RangeHandler


def test_an_http_url_of_a_file_is_a_file(served):
    base, ranges = served
    info = probe(base + "base.avi")
    assert (info.kind, info.live, info.declared_frames) == ("url", False, FRAMES)
    assert info.fps == RATE
    # OpenCV says it seeks either way; only a server with byte ranges lets it back
    assert info.seekable is ranges
    out = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
    with open_source(info) as source:
        numbers = []
        while source.read_into(out):
            numbers.append(read_frame_number(out))
        assert numbers == list(range(FRAMES))
    with open_source(info) as source:
        source.seek(12)  # forward: by reading, where the server cannot seek
        assert source.read_into(out) and read_frame_number(out) == 12
        if ranges:
            source.seek(3)
            assert source.read_into(out) and read_frame_number(out) == 3
        else:
            with pytest.raises(SourceError, match="cannot seek back"):
                source.seek(3)


def test_an_http_file_plays_every_frame_without_dropping_at_the_source(clips, tmp_path):
    """Was: live, so a reader ahead of the display dropped frames at the source.
    Served by Python's own server, as in the report."""
    with serving(str(clips), QuietHandler) as base:
        url = base + "base.avi"
        p, s = play_stats(tmp_path, url, "--speed", "4", "--buffer", "4")
        assert s["dropped_source"] == 0
        assert s["frames_read"] == s["decoded_frames"] == FRAMES
        assert s["frames_shown"] + s["dropped_late"] == FRAMES

        # --live still makes it live: read in real time (x4: 96 fps), a slow
        # analysis (20 fps) makes the reader drop at the source
        p, s = play_stats(
            tmp_path,
            url,
            "--live",
            "--untimed",
            "--speed",
            "4",
            "--buffer",
            "4",
            "--workers",
            "1",
            "--analyze",
            "player_funcs:slow",
        )
        assert s["dropped_source"] > 0
        assert s["frames_read"] + s["dropped_source"] == s["decoded_frames"] == FRAMES


@pytest.mark.parametrize("flags, live", [([], None), (["--live"], True), (["--no-live"], False)])
def test_live_flags_force_either_way_or_leave_it_to_the_source(monkeypatch, flags, live):
    import engine.api

    monkeypatch.setattr(sys, "path", list(sys.path))  # the command adds the cwd to it
    given = {}
    ran = {"analysis_errors": 0, "frames_analyzed": 1, "errors": []}  # a run's stats, briefly
    monkeypatch.setattr(engine.api, "play", lambda source, **kw: given.update(kw) or ran)
    assert cli.main(["play", "demo", "--quiet", *flags]) == 0
    assert given["live"] is live
