"""Damaged input trials: valid clips in a few containers and codecs, damaged (cut
short, byte ranges overwritten, the header zeroed) and played with the real command.

Whatever the damage, a run ends within TIME_BOUND_S by itself, with no traceback and
no signal; it either plays every frame that still decodes (exit 0, any shortfall in
its stats) or says in one line what is wrong with the file (exit 1, and then nothing
of it decodes); and it leaves no process or segment behind.

"Every frame that still decodes" is counted independently, by reading the damaged
file with OpenCV on past the frames that fail (decodable_frames).

Hypothesis draws the damage with a fixed seed (derandomize), so CI runs the same
examples every time: FE_DAMAGE_EXAMPLES per container (default 16, the whole file
then takes about 40 s on 2 cores); FE_DAMAGE_EXAMPLES=300 for a long run (each
example is one run, about half a second)."""

import json
import os
import random
import struct
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field

import cv2
import pytest
from helpers import tool, wait_until
from hypothesis import given, note, settings
from hypothesis import strategies as st

from engine.sources import write_demo_clip

FRAMES = 60
SIZE = (320, 240)
FPS = 30.0
TIME_BOUND_S = 30  # a run still going after this is a hang
EXAMPLES = int(os.environ.get("FE_DAMAGE_EXAMPLES", "16"))  # per container
# Reading a damaged file on: a run of this many failed reads is its end. Far more
# than the clips have frames, so the count below is every frame that decodes.
ORACLE_FAILED_RUN = 1000

CONTAINERS = {  # name: (fourcc, extension)
    "avi-mjpg": ("MJPG", ".avi"),
    "avi-xvid": ("XVID", ".avi"),
    "mp4-mp4v": ("mp4v", ".mp4"),
}


def unwritable(fourcc: str, ext: str) -> str | None:
    """Why this OpenCV cannot write `fourcc` in `ext`, or None when it can."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            write_demo_clip(os.path.join(folder, f"probe{ext}"), frames=1, size=SIZE, fourcc=fourcc)
        except OSError as e:
            return f"OpenCV {cv2.__version__} cannot write it here: {e}"
    return None


WHY_NOT = {name: unwritable(*spec) for name, spec in CONTAINERS.items()}
WRITABLE = [name for name, why in WHY_NOT.items() if why is None]


def each_container():
    """The containers as pytest parameters, those that cannot be written skipped."""
    return [
        pytest.param(name, marks=pytest.mark.skipif(why is not None, reason=f"{name}: {why}"))
        for name, why in WHY_NOT.items()
    ]


@dataclass(frozen=True)
class Clip:
    """A valid clip and where things are in it."""

    name: str
    ext: str
    data: bytes = field(repr=False)
    header_end: int  # where the first frame's data begins
    last_frame_at: int  # where the last frame's data begins: cut before it, a frame is lost
    structure: tuple[tuple[int, int], ...]  # [start, end) of the header and the index


def avi_layout(data: bytes) -> tuple[int, int, tuple[tuple[int, int], ...]]:
    """An AVI: the frames follow the 'movi' list's type; the idx1 index after them
    gives each frame's chunk, at an offset from that type."""
    movi = data.index(b"movi")
    idx1 = data.rindex(b"idx1")
    count = struct.unpack_from("<I", data, idx1 + 4)[0] // 16
    entries = [struct.unpack_from("<4sIII", data, idx1 + 8 + 16 * i) for i in range(count)]
    frames = [offset for chunk, _, offset, _ in entries if chunk == b"00dc"]
    assert len(frames) == FRAMES and data[movi + frames[-1] : movi + frames[-1] + 4] == b"00dc"
    return movi + 4, movi + frames[-1], ((0, movi + 4), (idx1, len(data)))


def mp4_layout(data: bytes) -> tuple[int, int, tuple[tuple[int, int], ...]]:
    """An MP4 as OpenCV writes it: ftyp, free, one mdat holding the frames in order,
    then the moov box (the index: stsz has each frame's size)."""
    mdat = data.index(b"mdat") - 4
    mdat_end = mdat + struct.unpack_from(">I", data, mdat)[0]
    assert data[mdat_end + 4 : mdat_end + 8] == b"moov"
    stsz = data.rindex(b"stsz")
    count = struct.unpack_from(">I", data, stsz + 12)[0]
    last_size = struct.unpack_from(">I", data, stsz + 16 + 4 * (count - 1))[0]
    assert count == FRAMES
    return mdat + 8, mdat_end - last_size, ((0, mdat + 8), (mdat_end, len(data)))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Clip]:
    """Each writable container's clip: FRAMES demo frames at SIZE, written once."""
    folder = tmp_path_factory.mktemp("valid")
    made = {}
    for name in WRITABLE:
        fourcc, ext = CONTAINERS[name]
        path = folder / f"{name}{ext}"
        write_demo_clip(path, frames=FRAMES, size=SIZE, fps=FPS, fourcc=fourcc)
        data = path.read_bytes()
        layout = avi_layout(data) if ext == ".avi" else mp4_layout(data)
        made[name] = Clip(name, ext, data, *layout)
    return made


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("damaged")


def decodable_frames(path: str) -> int:
    """How many frames OpenCV decodes from the file, reading on past frames that do
    not decode (bounded, in case a damaged file seems to go on forever)."""
    logging = cv2.utils.logging
    previous = logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        frames = failed = 0
        while cap.isOpened() and failed < ORACLE_FAILED_RUN and frames <= 10 * FRAMES:
            ok, image = cap.read()
            if ok and image is not None and image.size:
                frames, failed = frames + 1, 0
            else:
                failed += 1
        return frames
    finally:
        cap.release()
        logging.setLogLevel(previous)


def processes_marked(marker: str) -> dict[int, str]:
    """Live processes whose environment holds FE_DAMAGE_RUN=marker (a run and every
    process it starts inherit it), as pid: name (comm)."""
    needle = f"FE_DAMAGE_RUN={marker}".encode()
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/comm") as f:
                found[int(pid)] = f.read().strip()
        except OSError:  # gone meanwhile
            continue
    return found


@dataclass
class Played:
    path: str
    returncode: int
    stderr: str
    stats_path: str
    left: dict[int, str]  # processes of the run still alive after it ended
    segments: list[str]  # its segments still in /dev/shm


def start(path: str, *extra: str, quiet: bool = True) -> tuple[subprocess.Popen, str, str]:
    """Start `frame-engine play` on `path` headless and untimed, analyzing edges with
    two workers; (process, stats path, marker)."""
    stats_path = f"{path}.stats.json"
    if os.path.exists(stats_path):
        os.unlink(stats_path)
    marker = uuid.uuid4().hex
    args = ["--headless", "--analyze", "edges", "--workers", "2", "--stats-json", stats_path]
    p = subprocess.Popen(
        [tool("frame-engine"), "play", path, *args, *extra, *(["--quiet"] if quiet else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, FE_DAMAGE_RUN=marker),
    )
    return p, stats_path, marker


def finish(p: subprocess.Popen, path: str, stats_path: str, marker: str) -> Played:
    try:
        _, err = p.communicate(timeout=TIME_BOUND_S)
    except subprocess.TimeoutExpired:
        p.kill()  # its children die with it (PR_SET_PDEATHSIG)
        p.communicate()
        pytest.fail(f"{path}: the run hangs (still going after {TIME_BOUND_S} s)")
    segments = [n for n in os.listdir("/dev/shm") if n.startswith(f"fe-{p.pid}-")]
    return Played(path, p.returncode, err, stats_path, processes_marked(marker), segments)


def play(path: str, *extra: str, quiet: bool = True) -> Played:
    """The trial's command: `frame-engine play FILE --headless --untimed --analyze
    edges --workers 2 --quiet --stats-json OUT`, within TIME_BOUND_S."""
    p, stats_path, marker = start(path, "--untimed", *extra, quiet=quiet)
    return finish(p, path, stats_path, marker)


def check(run: Played, quiet: bool = True, timed: bool = False) -> dict | None:
    """What every run must do, whatever the damage; its stats when it played. A
    timed run may drop frames late on a loaded machine: each is still counted."""
    assert run.returncode >= 0, f"{run.path}: killed by signal {-run.returncode}: {run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
    assert not run.left, f"{run.path}: processes of the run still alive: {run.left}"
    assert not run.segments, f"{run.path}: segments left in /dev/shm: {run.segments}"
    decodable = decodable_frames(run.path)
    if run.returncode == 1:
        lines = run.stderr.splitlines()
        assert len(lines) == 1, f"not one line:\n{run.stderr}"
        assert lines[0].startswith(f"frame-engine: {run.path}: "), lines[0]
        assert decodable == 0, f"{lines[0]}, but OpenCV decodes {decodable} frames of it"
        return None
    assert run.returncode == 0, run.stderr
    if quiet:
        assert run.stderr == "", "--quiet, yet stderr has:\n" + run.stderr
    with open(run.stats_path) as f:
        stats = json.load(f)
    decoded = stats["decoded_frames"]
    assert 0 < decoded <= FRAMES, stats
    assert decoded == decodable, f"played {decoded} frames, but {decodable} decode"
    if timed:
        assert stats["frames_shown"] + stats["dropped_late"] == stats["frames_read"] == decoded
        assert stats["frames_analyzed"] + stats["not_analyzed_late"] == decoded
    else:
        assert stats["frames_read"] == stats["frames_analyzed"] == stats["frames_shown"] == decoded
        assert stats["dropped_late"] == 0, stats
    assert stats["failed"] == stats["analysis_errors"] == 0, stats
    return stats


def write(workdir, clip: Clip, data: bytes, label: str) -> str:
    path = str(workdir / f"{clip.name}-{label}{clip.ext}")
    with open(path, "wb") as f:
        f.write(data)
    return path


# --- the clips as written ----------------------------------------------------------


@pytest.mark.skipif(not WRITABLE, reason="no container can be written here")
def test_the_children_are_found_and_gone_after_the_run(clips, workdir):
    """The leftover check sees a run's children (so finding none means something):
    a timed run lasts two seconds, long enough to see all three by name."""
    clip = clips[WRITABLE[0]]
    path = write(workdir, clip, clip.data, "whole")
    p, stats_path, marker = start(path)
    seen: set[str] = set()  # over time: the reader may be done before an analyzer starts

    def found() -> set[str]:
        # the reader and an analyzer (on a loaded machine the other one may start
        # too late to get a frame of a short run)
        return {n for n in seen if n == "fe-reader" or n.startswith("fe-analyze-")}

    def both_seen() -> bool:
        seen.update(processes_marked(marker).values())
        return len(found()) >= 2 and "fe-reader" in found() or p.poll() is not None

    try:
        wait_until(both_seen, what="the run's children to start")
        assert "fe-reader" in found() and len(found()) >= 2, f"the run ended first: {seen}"
    finally:
        run = finish(p, path, stats_path, marker)
    assert check(run, timed=True)["decoded_frames"] == FRAMES


@pytest.mark.parametrize("name", each_container())
def test_an_intact_clip_plays_whole(clips, workdir, name):
    clip = clips[name]
    stats = check(play(write(workdir, clip, clip.data, "whole")))
    assert stats["declared_frames"] == stats["decoded_frames"] == FRAMES


# --- three damages, as plain tests -----------------------------------------------------


@pytest.mark.parametrize("name", each_container())
def test_cut_in_half(clips, workdir, name):
    """An AVI cut in half plays the frames before the cut and says how many of the
    declared frames it decoded; an MP4 keeps its index (moov) at the end, so half of
    one has none: nothing of it can be decoded."""
    clip = clips[name]
    path = write(workdir, clip, clip.data[: len(clip.data) // 2], "half")
    run = play(path, quiet=False)
    stats = check(run, quiet=False)
    if clip.ext == ".mp4":
        assert run.stderr == f"frame-engine: {path}: not a video OpenCV can decode\n"
        return
    decoded = stats["decoded_frames"]
    assert stats["declared_frames"] == FRAMES and 10 < decoded < FRAMES, stats
    assert (
        f"frame-engine: {path}: decoded {decoded} of {FRAMES} declared frames "
        "(the file ends early or is damaged)"
    ) in run.stderr.splitlines()


@pytest.mark.parametrize("name", each_container())
def test_first_4_kib_zeroed(clips, workdir, name):
    """The header is gone (and, in an MP4, the first frames' data): FFmpeg may still
    find frames in what follows; either way, the general rules hold."""
    clip = clips[name]
    data = bytes(4096) + clip.data[4096:]
    check(play(write(workdir, clip, data, "zero4k")))


@pytest.mark.parametrize("name", each_container())
def test_nothing_after_the_header(clips, workdir, name):
    """The header alone, declaring frames that are not there."""
    clip = clips[name]
    path = write(workdir, clip, clip.data[: clip.header_end], "header")
    run = play(path)
    check(run)
    assert run.stderr == f"frame-engine: {path}: not a video OpenCV can decode\n"


@pytest.mark.parametrize("name", [p for p in each_container() if p.values[0].startswith("avi")])
def test_a_blanked_format_header_is_one_line(clips, workdir, name):
    """An AVI whose bit depth and codec (BITMAPINFOHEADER) are zeroed: FFmpeg takes it
    for raw video it cannot open, and OpenCV's own ERROR lines about that must not
    reach stderr beside the one line."""
    clip = clips[name]
    data = bytearray(clip.data)
    at = data.index(b"strf") + 8 + 14  # biBitCount, then biCompression
    data[at : at + 6] = bytes(6)
    path = write(workdir, clip, bytes(data), "noformat")
    run = play(path)
    check(run)
    assert run.stderr == f"frame-engine: {path}: not a video OpenCV can decode\n"


def test_an_undecodable_frame_is_passed_over_in_place(clips, workdir):
    """One frame's data zeroed in the middle of an MJPG AVI: the frames after it still
    play, under their own indices (the lost one leaves a gap, not a shift)."""
    if "avi-mjpg" not in clips:
        pytest.skip(f"avi-mjpg: {WHY_NOT['avi-mjpg']}")
    clip = clips["avi-mjpg"]
    data = bytearray(clip.data)
    movi = data.index(b"movi")
    idx1 = data.rindex(b"idx1")
    _, _, offset, size = struct.unpack_from("<4sIII", data, idx1 + 8 + 16 * 30)  # frame 30
    at = movi + offset + 8  # past the chunk's id and size
    data[at : at + size] = bytes(size)
    path = write(workdir, clip, bytes(data), "frame30")
    results = str(workdir / "frame30.jsonl")
    stats = check(play(path, "--results", results))
    assert stats["decoded_frames"] == FRAMES - 1
    with open(results) as f:
        indices = [json.loads(line)["frame"] for line in f]
    assert indices == [i for i in range(FRAMES) if i != 30]


# --- damage drawn by hypothesis -----------------------------------------------------

KINDS = ("truncate", "overwrite", "overwrite_structure", "zero_head")


def damage(clip: Clip, kind: str, data: st.DataObject) -> bytes:
    """The clip with `kind` of damage, its details drawn from `data`."""
    out = bytearray(clip.data)
    if kind == "truncate":  # anywhere, or among the frames (before the last one)
        cuts = st.integers(0, len(out) - 1) | st.integers(clip.header_end, clip.last_frame_at - 1)
        return bytes(out[: data.draw(cuts, label="cut at")])
    if kind == "zero_head":
        n = data.draw(st.integers(1, 16384), label="zeroed bytes")
        out[:n] = bytes(n)
        return bytes(out)
    if kind == "overwrite":  # anywhere, up to 4 KiB at a time
        offsets, longest = st.integers(0, len(out) - 1), 4096
    else:  # a few bytes of the header's or the index's fields
        offsets = st.sampled_from(clip.structure).flatmap(lambda r: st.integers(r[0], r[1] - 1))
        longest = 16
    ranges = data.draw(
        st.lists(st.tuples(offsets, st.integers(1, longest)), min_size=1, max_size=5),
        label="(offset, length) ranges",
    )
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1), label="seed of the bytes"))
    for offset, length in ranges:
        chunk = out[offset : offset + length]
        out[offset : offset + len(chunk)] = rng.randbytes(len(chunk))
    return bytes(out)


# The container is a pytest parameter rather than drawn: Hypothesis explores around
# the examples it has found, so in a run this short whole containers went untried;
# this way each gets its share, and one that cannot be written shows as skipped.
@pytest.mark.parametrize("name", each_container())
@settings(derandomize=True, database=None, max_examples=EXAMPLES, deadline=None)
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_damaged_clips(clips, workdir, name, kind, data):
    """Damage of each kind, drawn at random: the general rules (check) hold."""
    clip = clips[name]
    damaged = damage(clip, kind, data)
    path = write(workdir, clip, damaged, "damaged")
    run = play(path)
    note(f"exit {run.returncode}, stderr: {run.stderr!r}")
    stats = check(run)
    if kind == "truncate" and stats is not None and len(damaged) < clip.last_frame_at:
        # cut before the last frame: at least that one is lost, and the stats say so
        assert stats["declared_frames"] == FRAMES, stats
        assert stats["decoded_frames"] < FRAMES, stats
