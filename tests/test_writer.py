"""--output: the writer process.  The file is read back with PyAV: its codec, the
index before the data, its length against the source's, the demo's frame numbers
in order, the sound in sync; and it is a playable file however the run ends."""

import os
import signal
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from helpers import tool, wait_until

from engine.sources import _DemoRenderer, read_frame_number

av = pytest.importorskip("av")
HERE = os.path.dirname(os.path.abspath(__file__))
FPS = 30


def env():
    return dict(os.environ, PYTHONPATH=HERE, SDL_VIDEODRIVER="dummy")


def play(*args, timeout=120):
    return subprocess.run(
        [tool("frame-engine"), "play", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
    )


def start(*args):
    return subprocess.Popen(
        [tool("frame-engine"), "play", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )


def make_source(path, frames=90, size=(320, 240), flash=None, tone_from=None, rate=48000):
    """Demo frames (their number in a code strip) in H.264, and where asked a
    mono AAC track that is silent, then a 1 kHz tone from `tone_from` seconds;
    frame `flash` all white."""
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=FPS)
    v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
    a = None
    if tone_from is not None:
        a = out.add_stream("aac", rate=rate)
        a.layout = "mono"
    renderer = _DemoRenderer(*size)
    image = np.empty((size[1], size[0], 3), np.uint8)
    for i in range(frames):
        renderer.render(i, image)
        if i == flash:
            image[:] = 255
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = i, Fraction(1, FPS)
        out.mux(v.encode(frame))
    out.mux(v.encode(None))
    if a is not None:
        n = frames * rate // FPS
        t = np.arange(n) / rate
        tone = np.where(t >= tone_from, 0.5 * np.sin(2 * np.pi * 1000 * t), 0).astype(np.float32)
        for k in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(
                tone[None, k : k + 1024], format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, k, Fraction(1, rate)
            out.mux(a.encode(frame))
        out.mux(a.encode(None))
    out.close()
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=90)


def top_atoms(path):
    """The top-level MP4 boxes, in file order."""
    names, data = [], open(path, "rb").read()
    at = 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        names.append(data[at + 4 : at + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[at + 8 : at + 16], "big")
        if size < 8:
            break
        at += size
    return names


def video_of(path):
    """(codec, pix_fmt, duration in s, [(frame number, time)]) of a file's video."""
    with av.open(path) as c:
        s = c.streams.video[0]
        codec, pix_fmt = s.codec_context.name, s.codec_context.pix_fmt
        duration = c.duration / 1e6
        frames = [(read_frame_number(f.to_ndarray(format="bgr24")), f.time) for f in c.decode(s)]
    return codec, pix_fmt, duration, frames


def test_the_output_is_h264_yuv420p_index_first_as_long_as_the_source_every_frame(clip, tmp_path):
    out = str(tmp_path / "out.mp4")
    p = play(clip, "--headless", "--untimed", "--output", out)
    assert p.returncode == 0, p.stderr
    codec, pix_fmt, duration, frames = video_of(out)
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    atoms = top_atoms(out)
    assert atoms.index("moov") < atoms.index("mdat")  # faststart: plays while downloading
    assert abs(duration - 90 / FPS) <= 1 / FPS
    assert [n for n, _ in frames] == list(range(90))
    assert f"frame-engine: wrote {out}: 90 frames, 3.00 s" in p.stderr  # and says where


def test_a_timed_run_that_drops_frames_still_lasts_as_long_as_what_it_played(clip, tmp_path):
    """Analysis slower than real time: the frames dropped late are left out of the
    file, and the frames before them last longer, so the file keeps the source's
    timing: a frame is at its time in the source (less --start's)."""
    out = str(tmp_path / "out.mkv")
    p = play(
        clip, "--headless", "--analyze", "player_funcs:slow", "--workers", "1",
        "--start", "1", "--frames", "45", "--output", out,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "dropped late" in p.stderr and " 0 dropped late" not in p.stderr
    _, _, duration, frames = video_of(out)
    # to the end of the 45th frame, whether it was shown or dropped (the frames
    # dropped at the end are time the last frame shown lasts)
    assert abs(duration - 45 / FPS) <= 0.5 / FPS
    numbers = [n for n, _ in frames]
    assert len(numbers) < 45 and numbers == sorted(set(numbers))
    assert numbers[0] == 30 and numbers[-1] <= 74
    assert all(abs(t - (n - 30) / FPS) < 0.002 for n, t in frames)


def test_the_sound_is_copied_cut_to_the_span_played_and_in_sync(tmp_path):
    """The tone starts with the white frame (1.5 s into the source); played from
    --start 1 for 45 frames, both are 0.5 s into the output, within a frame, and
    the audio lasts as long as the video."""
    src = make_source(tmp_path / "tone.mp4", frames=90, flash=45, tone_from=45 / FPS)
    out = str(tmp_path / "out.mp4")
    p = play(src, "--headless", "--untimed", "--start", "1", "--frames", "45", "--output", out)
    assert p.returncode == 0, p.stderr
    with av.open(out) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        video, audio = c.streams.video[0], c.streams.audio[0]
        v_end = float((video.start_time + video.duration) * video.time_base)
        a_end = float((audio.start_time + audio.duration) * audio.time_base)
        flash = next(f.time for f in c.decode(video) if f.to_ndarray(format="gray").mean() > 240)
    with av.open(out) as c:
        onset = None
        for f in c.decode(audio=0):
            loud = np.abs(f.to_ndarray()[0]) > 0.1
            if loud.any():
                onset = f.time + int(np.argmax(loud)) / f.sample_rate
                break
    assert abs(v_end - 45 / FPS) <= 1 / FPS
    assert abs(a_end - v_end) <= 1 / FPS
    assert abs(flash - 0.5) < 0.002
    assert onset is not None and abs(onset - flash) <= 1 / FPS


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "analyzer", "parent"])
def test_every_way_a_run_ends_leaves_a_playable_file(clip, tmp_path, how):
    """Ctrl-C and SIGTERM mid-run, an analyzer killed mid-run (replaced; the run
    goes on), even the player itself killed: the file is finished, its frames in
    order."""
    out = str(tmp_path / "out.mp4")
    p = start(clip, "--headless", "--speed", "0.5", "--analyze", "gray", "--output", out)
    try:
        wait_until(lambda: os.path.exists(out) or p.poll() is not None, "the file to start")
        if how == "analyzer":
            analyzer = next(
                int(pid)
                for pid in os.listdir("/proc")
                if pid.isdigit()
                and _parent(int(pid)) == p.pid
                and _comm(int(pid)).startswith("fe-analyze")
            )
            os.kill(analyzer, signal.SIGKILL)
        elif how == "parent":
            writer = next(
                int(pid) for pid in os.listdir("/proc")
                if pid.isdigit() and _parent(int(pid)) == p.pid
                and _comm(int(pid)).startswith("fe-writer")
            )  # fmt: skip
            p.kill()
            p.wait()
            # the writer outlives it to finish the file, then exits
            wait_until(lambda: not _comm(writer).startswith("fe-writer"), "the writer to end")
            subprocess.run([tool("frame-engine"), "clean", "--quiet"], check=True, env=env())
        else:
            p.send_signal(getattr(signal, how))
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    expected = {"SIGINT": 130, "SIGTERM": 143, "analyzer": 0, "parent": -signal.SIGKILL}[how]
    assert p.returncode == expected, err
    atoms = top_atoms(out)
    assert atoms.index("moov") < atoms.index("mdat")
    _, _, duration, frames = video_of(out)
    numbers = [n for n, _ in frames]
    assert numbers and numbers == sorted(set(numbers))
    if how == "analyzer":
        assert "died" in err and numbers == list(range(90))


def _parent(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read()
    except OSError:
        return ""


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["--output", "{tmp}/out.gif"], "--output {tmp}/out.gif: frame-engine writes .mp4", 2),
        (["--output", "{tmp}/no/out.mp4"], "--output {tmp}/no/out.mp4: no such folder", 2),
        (["--output", "{tmp}/o.mp4", "--output-codec", "nope"], "--output-codec nope: no such", 2),
        (
            ["--output", "{tmp}/o.webm", "--output-codec", "h264"],
            "--output {tmp}/o.webm: a .webm file cannot hold h264",
            2,
        ),
        (["--output", "{tmp}/o.mp4", "--output-crf", "99"], "--output-crf 99: libx264 takes", 2),
    ],
)
def test_outputs_that_cannot_be_written_are_one_line(tmp_path, args, message, code):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    p = play("--headless", "--untimed", "--frames", "5", *args, timeout=60)
    assert p.returncode == code
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "frame-engine: " + message.replace("{tmp}", str(tmp_path))
    ), p.stderr
    assert os.listdir(tmp_path) == []


def test_an_unwritable_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("root writes anywhere")
        p = play("--headless", "--untimed", "--frames", "5", "--output", str(folder / "o.mp4"))
    finally:
        folder.chmod(0o700)
    assert p.returncode == 2
    assert p.stderr.strip() == f"frame-engine: --output {folder / 'o.mp4'}: cannot write there"


def test_a_full_disk_stops_the_run_with_one_line(clip, tmp_path):
    """A 256 KiB tmpfs in a mount namespace fills up while the file is written."""
    probe_ns = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe_ns.returncode != 0:
        pytest.skip("needs a mount namespace (root): " + probe_ns.stderr.decode().strip())
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "out.mkv"
    exe = tool("frame-engine")
    p = subprocess.run(
        [
            "unshare", "-m", "sh", "-c",
            f"mount -t tmpfs -o size=256k tmpfs {disk} && {exe} play {clip} --headless "
            f"--untimed --output-crf 0 --output {out}; echo rc=$?",
        ],
        capture_output=True, text=True, timeout=120, env=env(),
    )  # fmt: skip
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    # what was written is finished where the muxer could still write its index
    assert lines[0] in (
        f"frame-engine: {out}: No space left on device",
        f"frame-engine: {out}: No space left on device (the file is unfinished)",
    )
    assert p.stdout.split() == ["rc=1"]


def test_a_writer_that_dies_is_reported_like_any_child(clip, tmp_path):
    out = str(tmp_path / "out.mp4")
    p = start(clip, "--headless", "--speed", "0.5", "--output", out)
    try:
        wait_until(
            lambda: (
                p.poll() is not None
                or any(
                    _parent(int(pid)) == p.pid and _comm(int(pid)).startswith("fe-writer")
                    for pid in os.listdir("/proc")
                    if pid.isdigit()
                )
            ),
            "the writer",
        )
        writer = next(
            int(pid) for pid in os.listdir("/proc")
            if pid.isdigit() and _parent(int(pid)) == p.pid
            and _comm(int(pid)).startswith("fe-writer")
        )  # fmt: skip
        os.kill(writer, signal.SIGKILL)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 1
    assert err.strip().splitlines()[-1] == (
        f"frame-engine: {out}: the writer died (killed by SIGKILL)"
    )


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
