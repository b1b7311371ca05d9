"""The player against real streams served on the loopback (tests/streams.py, issue
11): each kind plays headless with its frames analyzed in order by their barcodes;
a server killed mid-run and restarted is reconnected to, one that never comes back
ends the run with one line; a server that sends nothing times out; Ctrl-C ends a
run within 2 s while it connects and while it reconnects; an analysis slower than
the stream keeps the age of the frames shown within --max-latency, drops counted by
reason, memory flat.

Every server is started by the test (the stream_server fixture), on 127.0.0.1,
bounded in time, and stopped at its end; every run is a `frame-engine play`
subprocess with a timeout."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import tool
from streams import FPS, _connected, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, PYTHONPATH=HERE, SDL_VIDEODRIVER="dummy")
RUN_TIMEOUT_S = 90  # any run here ends well within this, or it hangs
INTERRUPT_S = 2.0  # Ctrl-C ends a run within this


def start_play(url, tmp_path, *args):
    """`frame-engine play URL` headless, its analysis the barcode reader, in the
    background; its results and stats go to tmp_path."""
    cmd = [tool("frame-engine"), "play", url, "--headless", "--analyze", "player_funcs:number"]
    cmd += ["--results", str(tmp_path / "r.jsonl"), "--stats-json", str(tmp_path / "s.json")]
    return subprocess.Popen(
        cmd + list(args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(p, tmp_path, timeout=RUN_TIMEOUT_S):
    """Wait for a run; (exit code, stderr, stats or None, results)."""
    try:
        _, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    stats_path, results_path = tmp_path / "s.json", tmp_path / "r.jsonl"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else None
    lines = results_path.read_text().splitlines() if results_path.exists() else []
    return p.returncode, err, stats, [json.loads(line) for line in lines]


def wait_for(condition, what, timeout=30.0, p=None):
    """Until condition() holds (polled), failing after `timeout` or when the run `p`
    ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if p is not None and p.poll() is not None:
            pytest.fail(f"the run ended (exit {p.returncode}) before {what}: {p.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.02)


def numbers_so_far(tmp_path) -> list[int]:
    """The barcodes of the frames analyzed so far (whole lines of the results)."""
    path = tmp_path / "r.jsonl"
    text = path.read_text() if path.exists() else ""
    lines = [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
    return barcodes(lines)


def analyzed(tmp_path) -> int:
    return len(numbers_so_far(tmp_path))


def barcodes(results) -> list[int]:
    """Of the frames analyzed (with ordered steps, every frame has a line)."""
    return [r["result"]["pixels"] for r in results if r["result"] is not None]


def increasing(values) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


# ---- each kind plays -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["udp", "http", "tcp", "rtsp", "mjpeg"])
def test_each_kind_of_stream_plays_in_order(stream_server, tmp_path, kind):
    """Every frame read is analyzed (--untimed: none is skipped for time), in the
    stream's order. tcp and http are ffmpeg listening for exactly one client:
    opened twice (a probe, then the reader), the second open was refused."""
    server = stream_server(kind)
    p = start_play(
        server.url,
        tmp_path,
        *("--untimed", "--frames", "60", "--reconnect-for", "0", "--max-latency", "inf"),
    )
    code, err, stats, results = finish(p, tmp_path)
    assert code == 0, err
    # strict JSON: no limit is null, not Infinity
    json.loads((tmp_path / "s.json").read_text(), parse_constant=pytest.fail)
    assert stats["latency_ms"]["max"] is None
    assert stats["frames_read"] == stats["frames_analyzed"] == len(results) == 60
    assert stats["reconnects"] == 0
    numbers, indices = barcodes(results), [r["result"]["index"] for r in results]
    assert increasing(numbers), numbers
    assert increasing(indices), indices
    # a frame the reader dropped (the buffer full) or the server skipped (late to
    # send it) leaves a gap; the reader never makes frames up
    assert indices[-1] - indices[0] <= numbers[-1] - numbers[0] + 1, (indices, numbers)


# ---- reconnecting -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_a_server_killed_and_restarted_is_reconnected_to(stream_server, tmp_path, kind):
    """Killed 2 s into the run, back 3 s later: the run goes on with the stream. A
    tcp server's death is an end of stream at once; a udp one's is silence, noticed
    after --source-timeout."""
    server = stream_server(kind)
    p = start_play(
        server.url,
        tmp_path,
        *("--source-timeout", "1.5", "--reconnect-for", "20", "--then", "player_funcs:gap_seen"),
    )
    wait_for(lambda: analyzed(tmp_path) >= 2 * FPS * 0.5, "frames analyzed", p=p)
    server.kill()
    killed_at = server.due_frame()
    time.sleep(3.0)  # the scenario: the server is down for 3 s
    server.start()
    back_at = server.due_frame()
    wait_for(
        lambda: sum(n >= back_at for n in numbers_so_far(tmp_path)) >= FPS,
        "frames analyzed after the restart",
        p=p,
    )
    assert interrupt(p) < INTERRUPT_S
    code, err, stats, results = finish(p, tmp_path)
    assert code == 130, err
    assert stats["reconnects"] == 1
    # what the window's title and the progress bar say, a headless log says in lines
    assert f"frame-engine: {server.url}: no frames: reconnecting (attempt 1)\n" in err
    assert f"frame-engine: {server.url}: reconnected; " in err
    # the ordered step was told of the gap on the first frame after it, and only there
    told = [(r["frame"], r["steps"]["player_funcs:gap_seen"]) for r in results]
    gaps = [(i, seen) for i, seen in told if seen["gap"] > 0]
    assert len(gaps) == 1 and gaps[0][1]["reset"], gaps
    assert gaps[0][1]["gap"] == pytest.approx(stats["lost_s"], abs=0.002)
    assert [i for i, seen in told if seen["reset"]] == [told[0][0], gaps[0][0]]
    results = [r for r in results if r["result"] is not None]  # analyzed
    numbers, indices = barcodes(results), [r["result"]["index"] for r in results]
    before = [n for n in numbers if n < killed_at + 5]
    after = [n for n in numbers if n >= back_at]
    assert before and after and len(before) + len(after) == len(numbers), (numbers, killed_at)
    assert increasing(numbers) and increasing(indices)
    # The time lost: from the last frame read to the source reopened (less than the
    # 3 s down where the reader was behind the stream and read what was queued).
    assert 0.5 < stats["lost_s"] < 20, stats["lost_s"]
    # the indices jump by it (frames lost at the source aside), as the stream did
    gap = indices[len(before)] - indices[len(before) - 1]
    assert gap >= round(stats["lost_s"] * FPS), (gap, stats["lost_s"], indices)
    assert after[0] - before[-1] >= 3 * FPS - 5


def test_a_server_that_never_comes_back_ends_the_run_with_one_line(stream_server, tmp_path):
    server = stream_server("tcp")
    p = start_play(server.url, tmp_path, "--source-timeout", "1", "--reconnect-for", "2")
    wait_for(lambda: analyzed(tmp_path) >= 10, "frames analyzed", p=p)
    server.kill()
    killed = time.monotonic()
    code, err, stats, results = finish(p, tmp_path)
    took = time.monotonic() - killed
    assert code == 1, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"frame-engine: {server.url}: lost: no frames for "), lines
    assert "(--reconnect-for 2)" in lines[-1]
    assert stats["ended"] == "source lost" and stats["reconnects"] == 0
    assert took < 2 + 1 + 20, took  # --reconnect-for, an open's timeout, and slack
    assert increasing(barcodes(results))


def test_a_stream_that_stalls_is_reopened(stream_server, tmp_path):
    """An MJPEG camera that stops sending (the connection stays open): the read
    times out after --source-timeout and the source is reopened."""
    server = stream_server("mjpeg", stall_after=40)
    p = start_play(server.url, tmp_path, "--source-timeout", "1", "--frames", "100")
    code, err, stats, results = finish(p, tmp_path)
    assert code == 0, err
    assert stats["frames_read"] == 100
    assert stats["reconnects"] >= 2  # 40 frames a connection
    assert increasing(barcodes(results))
    assert increasing([r["result"]["index"] for r in results])


# ---- opening ---------------------------------------------------------------------


def test_a_server_that_sends_nothing_times_out(stream_server, tmp_path):
    server = stream_server("silent", scheme="http")
    began = time.monotonic()
    p = start_play(server.url, tmp_path, "--source-timeout", "1")
    code, err, stats, _ = finish(p, tmp_path)
    assert code == 1
    assert err.strip() == (
        f"frame-engine: {server.url}: cannot open: connected, but no video came within 1 s"
    )
    assert time.monotonic() - began < 20
    assert stats is None  # nothing ran


def test_a_mistake_in_the_analysis_is_told_before_the_source_is_opened(stream_server, tmp_path):
    """Opening a stream can take seconds: a misspelt analysis is said first, and
    the server is never connected to."""
    server = stream_server("silent", scheme="tcp")
    p = subprocess.run(
        [tool("frame-engine"), "play", server.url, "--analyze", "edgse", "--headless"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("frame-engine: analysis 'edgse': no such built-in")
    assert not _connected(server.port)


def test_a_refused_connection_is_one_line(tmp_path):
    url = f"tcp://127.0.0.1:{free_port()}"
    p = start_play(url, tmp_path)
    code, err, _, _ = finish(p, tmp_path)
    assert (code, err.strip()) == (1, f"frame-engine: {url}: cannot open: connection refused")


def test_a_host_that_does_not_answer_is_one_line(tmp_path):
    """A listener whose queue is full: the loopback drops further SYNs, as a host
    that does not answer does."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):  # until a connect is no longer answered
                s = socket.socket()
                s.settimeout(0.3)
                fillers.append(s)
                try:
                    s.connect(("127.0.0.1", port))
                except TimeoutError:
                    break
            else:
                pytest.skip("this kernel answers every SYN: cannot make a host that is silent")
            url = f"http://127.0.0.1:{port}/x"
            p = start_play(url, tmp_path, "--source-timeout", "1")
            code, err, _, _ = finish(p, tmp_path)
        finally:
            for s in fillers:
                s.close()
    assert (code, err.strip()) == (
        1,
        f"frame-engine: {url}: cannot open: no answer from 127.0.0.1:{port}",
    )


@contextmanager
def serving(folder):
    """A plain web server of `folder` on the loopback, in this process."""

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(folder), **kw)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_url_that_is_not_video_is_one_line(tmp_path):
    (tmp_path / "page.html").write_text("<html><body>not video</body></html>\n" * 50)
    with serving(tmp_path) as base:
        url = f"{base}/page.html"
        p = start_play(url, tmp_path, "--source-timeout", "2")
        code, err, _, _ = finish(p, tmp_path)
    assert (code, err.strip()) == (
        1,
        f"frame-engine: {url}: cannot open: not a video stream OpenCV can decode",
    )


# ---- Ctrl-C ----------------------------------------------------------------------


def interrupt(p):
    """Ctrl-C; returns how long the run took to exit after it."""
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if p.poll() is None:
            p.kill()
    return time.monotonic() - sent


def test_ctrl_c_while_connecting_ends_the_run_at_once(stream_server, tmp_path):
    server = stream_server("silent", scheme="http")
    p = start_play(server.url, tmp_path, "--source-timeout", "30")
    wait_for(lambda: _connected(server.port), "connection to the server", p=p)
    took = interrupt(p)
    assert p.returncode == 130, p.stderr.read()
    assert took < INTERRUPT_S, took
    assert p.stderr.read().strip().splitlines()[-1] == "frame-engine: interrupted"


def test_ctrl_c_while_reconnecting_ends_the_run_at_once(stream_server, tmp_path):
    """The server dies; in its place one that accepts and sends nothing: the reader's
    attempt to reopen the source waits in FFmpeg for its timeout (30 s here)."""
    server = stream_server("tcp")
    p = start_play(server.url, tmp_path, "--source-timeout", "30")
    wait_for(lambda: analyzed(tmp_path) >= 10, "frames analyzed", p=p)
    server.kill()
    silent = stream_server("silent", scheme="tcp", port=server.port)
    wait_for(lambda: _connected(silent.port), "the reader's attempt to reconnect", p=p)
    took = interrupt(p)
    err = p.stderr.read()
    assert p.returncode == 130, err
    assert took < INTERRUPT_S, took
    assert err.strip().splitlines()[-1] == "frame-engine: interrupted"


# ---- a slow analysis ---------------------------------------------------------------


def rss_less_shared(pid: int) -> int:
    """The process's own memory (RSS less the ring's shared pages), in bytes."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return (int(fields["VmRSS"][0]) - int(fields["RssShmem"][0])) * 1024


def test_an_analysis_slower_than_the_stream_keeps_frames_young(stream_server, tmp_path):
    """One worker, an analysis of two frame intervals: half the frames cannot be
    analyzed. The frames shown are never older than --max-latency, what was not
    shown is counted by why, and the player's memory does not grow."""
    server = stream_server("udp", frames=round(12 * FPS))
    p = subprocess.Popen(
        [tool("frame-engine"), "play", server.url, "--headless", "--live", "--workers", "1"]
        + ["--analyze", "player_funcs:two_intervals", "--reconnect-for", "0"]
        + ["--source-timeout", "2", "--stats-json", str(tmp_path / "s.json")],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples = []
    while p.poll() is None:
        try:
            samples.append(rss_less_shared(p.pid))
        except (FileNotFoundError, KeyError, ProcessLookupError):
            break
        time.sleep(0.1)  # a sampling period, not a wait for a condition
    _, err = p.communicate(timeout=RUN_TIMEOUT_S)
    assert p.returncode == 0, err
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames_shown"] > 0
    assert stats["latency_ms"]["p99"] < 500, stats["latency_ms"]
    not_shown = stats["frames_read"] - stats["frames_shown"]
    by_reason = stats["dropped_late"] + stats["dropped_latency"]
    assert not_shown > 0 and by_reason + stats["left_unplayed"] == not_shown, stats
    assert stats["not_analyzed_late"] > 0  # the analyzer could not keep up, and skipped
    # memory: from 5 s in (started, the ring's slots all touched once) to the end
    steady = samples[50:]
    assert len(steady) >= 30, len(samples)
    assert max(steady) - steady[0] < 16 * 2**20, (steady[0], max(steady))


# ---- the window ----------------------------------------------------------------


def test_the_window_says_it_is_reconnecting_and_plays_on(stream_server, scripted, monkeypatch):
    """In a window (SDL's dummy driver): the server dies, the title says
    "reconnecting (attempt 1)" while the last frame stays, and once the server is
    back the frames come again and the title says playing."""
    import pygame

    import engine

    captions = []
    real_caption = pygame.display.set_caption
    monkeypatch.setattr(
        pygame.display, "set_caption", lambda t, *a: (captions.append(t), real_caption(t, *a))
    )
    server = stream_server("mjpeg")
    shown, install = scripted
    state = {"phase": "play", "t0": time.monotonic()}

    def script(shown, n):
        if time.monotonic() - state["t0"] > 60:  # a bound: fail, not hang
            state["phase"] = "timed out"
            return ["q"]
        phase = state["phase"]
        if phase == "play" and len(shown) >= 15:
            server.kill()
            state["phase"], state["shown"] = "down", len(shown)
        elif phase == "down" and any("[reconnecting (attempt 1)" in c for c in captions):
            server.start()
            state["phase"], state["shown"] = "back", len(shown)
        elif phase == "back" and len(shown) >= state["shown"] + 15:
            state["phase"] = "done"
            return ["q"]
        return []

    install(script)
    stats = engine.play(
        server.url, analyze="none", workers=1, headless=False, quiet=True, source_timeout=2.0
    )
    assert state["phase"] == "done", state
    assert stats["reconnects"] == 1 and stats["ended"] == "quit"
    title = f"frame-engine: {server.url} [reconnecting (attempt 1)"
    assert any(c.startswith(title) for c in captions), captions
    last = captions[-1]
    assert last.startswith(f"frame-engine: {server.url} [playing "), last
