"""engine.sources: probing, the demo, reading files into given arrays, bad inputs."""

import dataclasses
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest

from engine.sources import (
    DemoSource,
    SourceError,
    SourceInfo,
    open_source,
    probe,
    read_frame_number,
    write_demo_clip,
)

CLIP_FRAMES = 40
CLIP_SIZE = (640, 360)
CLIP_FPS = 25.0


@pytest.fixture(scope="module", params=[("MJPG", ".avi"), ("mp4v", ".mp4")], ids=["avi", "mp4"])
def clip(request, tmp_path_factory):
    """A demo clip written with cv2.VideoWriter, in each container the tests use."""
    fourcc, ext = request.param
    path = tmp_path_factory.mktemp("clips") / f"demo{ext}"
    write_demo_clip(path, frames=CLIP_FRAMES, size=CLIP_SIZE, fps=CLIP_FPS, fourcc=fourcc)
    return str(path)


def read_all(source, out):
    """The frame numbers of every frame read into `out`, in order."""
    numbers = []
    while source.read_into(out):
        numbers.append(read_frame_number(out))
    return numbers


def test_probe_demo():
    for spec in (None, "demo"):
        info = probe(spec)
        assert info == SourceInfo(
            spec="demo",
            kind="demo",
            width=1280,
            height=720,
            fps=30.0,
            declared_frames=300,
            live=False,
        )


def test_demo_frames_number_themselves_and_move():
    with open_source(probe("demo")) as demo:
        out = np.empty((720, 1280, 3), np.uint8)
        previous = None
        numbers = []
        while demo.read_into(out):
            numbers.append(read_frame_number(out))
            if previous is not None:
                assert not np.array_equal(out, previous), "the demo stands still"
            previous = out.copy()
        assert numbers == list(range(300))
        assert demo.frames_read == 300
        assert not demo.read_into(out), "the demo is finite"


@pytest.mark.parametrize("size", [(768, 576), (640, 360), (320, 180)])
@pytest.mark.parametrize("interpolation", [cv2.INTER_AREA, cv2.INTER_LINEAR])
def test_frame_number_survives_resizing_and_jpeg(size, interpolation):
    demo = DemoSource(frames=70000)
    frame = np.empty((720, 1280, 3), np.uint8)
    for number in (0, 1, 2, 255, 256, 299, 12345, 65535):
        demo.seek(number)
        assert demo.read_into(frame)
        small = cv2.resize(frame, size, interpolation=interpolation)
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 50])
        assert ok
        assert read_frame_number(small) == number
        assert read_frame_number(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)) == number


def test_frame_number_refuses_other_images():
    with pytest.raises(ValueError, match="not a demo frame"):
        read_frame_number(np.full((720, 1280, 3), 128, np.uint8))


def test_demo_seek_and_skip():
    demo = DemoSource(frames=50, size=(320, 180))
    out = np.empty((180, 320, 3), np.uint8)
    demo.seek(37)
    assert demo.read_into(out) and read_frame_number(out) == 37
    assert demo.skip()
    assert demo.read_into(out) and read_frame_number(out) == 39
    demo.seek(-5)
    assert demo.read_into(out) and read_frame_number(out) == 0
    demo.seek(49)
    assert demo.read_into(out) and not demo.read_into(out) and not demo.skip()


def test_clip_probes_and_reads_back_every_frame_in_order(clip):
    info = probe(clip)
    assert (info.kind, info.width, info.height) == ("file", *CLIP_SIZE)
    assert info.fps == pytest.approx(CLIP_FPS)
    assert info.declared_frames == CLIP_FRAMES
    assert not info.live and info.notes == ()
    with open_source(info) as source:
        out = np.empty((info.height, info.width, 3), np.uint8)
        assert read_all(source, out) == list(range(CLIP_FRAMES))
        assert source.frames_read == CLIP_FRAMES


def test_read_into_writes_into_the_given_array(clip):
    info = probe(clip)
    h, w = info.height, info.width
    ring = np.zeros((3, h, w, 3), np.uint8)  # like the ring: frames are views of one buffer
    with open_source(info) as source:
        slot = ring[1]
        address = slot.ctypes.data
        assert source.read_into(slot)
        assert slot.ctypes.data == address
        assert ring[1].any(), "nothing was written into the slot"
        assert not ring[0].any() and not ring[2].any(), "something else was written"
        assert read_frame_number(ring[1]) == 0


def test_read_into_resizes_to_the_given_geometry(clip):
    info = probe(clip)
    ring = np.zeros((2, 720, 1280, 3), np.uint8)  # the ring is bigger than the clip
    with open_source(info) as source:
        assert read_all(source, ring[1]) == list(range(CLIP_FRAMES))
    assert not ring[0].any()
    # and the demo into a smaller ring
    with DemoSource(frames=3) as demo:
        assert read_all(demo, ring[1, :360, :640]) == [0, 1, 2]


def test_seek_and_skip_in_a_clip(clip):
    with open_source(probe(clip)) as source:
        out = np.empty((CLIP_SIZE[1], CLIP_SIZE[0], 3), np.uint8)
        for target in (25, 3, 0, 39):
            source.seek(target)
            assert source.read_into(out) and read_frame_number(out) == target
        source.seek(10)
        assert source.skip()
        assert source.read_into(out) and read_frame_number(out) == 11


def test_a_live_source_cannot_seek(clip):
    live = dataclasses.replace(probe(clip), live=True)
    with open_source(live) as source, pytest.raises(SourceError, match="live source cannot seek"):
        source.seek(5)


def test_probing_releases_the_capture(clip):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        probe(clip)
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("scale, rate", [(1, 100_000), (1000, 1)], ids=["1e5", "1e-3"])
def test_absurd_fps_falls_back_with_a_note(tmp_path, scale, rate):
    """An .avi whose stream header says `rate / scale` frames per second."""
    path = tmp_path / "odd.avi"
    write_demo_clip(path, frames=5, size=(320, 180))
    data = bytearray(path.read_bytes())
    strh = data.index(b"strh")  # then size, type, handler, flags, priority+language, initial
    struct.pack_into("<II", data, strh + 8 + 20, scale, rate)  # dwScale, dwRate
    path.write_bytes(data)
    info = probe(str(path))
    assert info.fps == 30.0
    assert len(info.notes) == 1 and "frame rate" in info.notes[0]


def test_a_clip_whose_decoding_stops_early_plays_what_decodes(tmp_path):
    """An .avi cut in half: its header still declares every frame."""
    whole = tmp_path / "whole.avi"
    write_demo_clip(whole, frames=60, size=(320, 180))
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    info = probe(str(cut))
    assert info.declared_frames == 60
    with open_source(info) as source:
        numbers = read_all(source, np.empty((180, 320, 3), np.uint8))
    assert 10 < len(numbers) < 60
    assert numbers == list(range(len(numbers)))


def bad_inputs(tmp_path):
    """(spec, expected message) for each kind of input that is not a playable file."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a video\n" * 20)
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(1).bytes(50_000))
    write_demo_clip(tmp_path / "whole.mp4", frames=20, size=(320, 180), fourcc="mp4v")
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])  # loses the index
    (tmp_path / "header.avi").write_bytes(b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(200))
    undecodable = "not a video OpenCV can decode"
    return [
        ("missing.mp4", "no such file"),
        ("folder", "is a directory, not a video file"),
        ("empty.mp4", "empty file"),
        ("notes.txt", undecodable),
        ("noise.mp4", undecodable),
        ("truncated.mp4", undecodable),
        ("header.avi", undecodable),
    ]


def test_bad_files_are_one_clear_error(tmp_path, capfd):
    for name, problem in bad_inputs(tmp_path):
        path = str(tmp_path / name)
        with pytest.raises(SourceError) as e:
            probe(path)
        assert str(e.value) == f"{path}: {problem}"
    assert capfd.readouterr().err == "", "OpenCV or FFmpeg wrote to stderr"


def test_a_file_that_vanished_after_probing(tmp_path):
    path = tmp_path / "gone.avi"
    write_demo_clip(path, frames=3, size=(320, 180))
    info = probe(str(path))
    path.unlink()
    with pytest.raises(SourceError, match=f"^{path}: no such file$"):
        open_source(info)


def test_unreadable_file(tmp_path):
    """As a user who may not read the file (root reads anything, so as root the
    probe runs as nobody, in a child)."""
    path = tmp_path / "secret.avi"
    write_demo_clip(path, frames=3, size=(320, 180))
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(SourceError, match="permission denied"):
            probe(str(path))
        return
    # A folder nobody can reach (pytest's own is private to root), holding the file.
    open_dir = tempfile.mkdtemp(dir="/tmp")
    os.chmod(open_dir, 0o755)
    path = os.path.join(open_dir, "secret.avi")
    write_demo_clip(path, frames=3, size=(320, 180))
    os.chmod(path, 0)
    code = (
        "from engine.sources import probe, SourceError\n"
        f"try:\n    probe({str(path)!r})\nexcept SourceError as e:\n    print(e)\n"
    )
    p = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    shutil.rmtree(open_dir)
    assert p.stdout.strip() == f"{path}: permission denied", p.stderr


def test_cameras_and_urls_that_do_not_open(capfd):
    with pytest.raises(SourceError, match="^camera 99: cannot open$"):
        probe(99)
    with pytest.raises(SourceError, match="^camera 99: cannot open$"):
        probe("99")
    with pytest.raises(SourceError, match="^camera -1: "):
        probe(-1)
    # port 1 on the loopback refuses at once: no network, no waiting
    with pytest.raises(SourceError, match=r"^http://127\.0\.0\.1:1/x\.mp4: cannot open"):
        probe("http://127.0.0.1:1/x.mp4")
    with pytest.raises(SourceError) as e:
        probe("rtsp://admin:hunter2@127.0.0.1:1/stream")
    assert str(e.value).startswith("rtsp://admin:***@127.0.0.1:1/stream: cannot open")
    assert capfd.readouterr().err == "", "OpenCV or FFmpeg wrote to stderr"


def test_what_kind_of_source_a_spec_is(tmp_path, monkeypatch):
    """Camera indexes and URLs are recognised before a path is looked up."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match="^camera 7: "):
        probe("7")
    with pytest.raises(SourceError, match="^udp2://x: cannot open"):
        probe("udp2://x")
    with pytest.raises(SourceError, match="^7.mp4: no such file$"):
        probe("7.mp4")
    with pytest.raises(SourceError, match="not a source"):
        probe(1.5)  # type: ignore[arg-type]
