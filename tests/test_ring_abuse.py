"""The ring under abuse, from Python: segments that are not rings (or no longer
are), two processes that both want to produce, stages that do not exist, and
`frame-engine clean` among foreign files.  Each is a clear refusal (an exception
naming the segment and the problem), never a crash: the opens run in a child,
where a SIGBUS or SIGSEGV shows as a negative return code.  (The same refusals in
C: tests/c/test_open_foreign.c, test_single_owner.c, test_misuse.c.)"""

import errno
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import tool

from engine import Ring

SHM = "/dev/shm"
# struct fe_hdr (csrc/ring.c) starts with uint64_t magic, then uint32_t version.
VERSION_AT = 8
SLOT_HDR_BYTES = 64  # struct fe_slot_hdr: one cache line (a _Static_assert in ring.c)
# What Ring.open says of each kind of damage (RingNotARing, a ValueError), after
# "not a frame-engine ring: ".
BAD_MAGIC = "bad magic: not a frame-engine ring, or one still being created"
OTHER_VERSION = "a ring of another layout version (made by another build)"
TOO_SMALL = "bad size: too small to hold a ring header"
WRONG_SIZE = "bad size: the segment's size is not the header's total (truncated or grown)"
BAD_SLOTS = "bad geometry: the slot count is not a power of two from 2 to 2^30"
BAD_KIND = "bad geometry: a stage is neither a pool nor ordered"
# The configuration is the header's last two cache lines: slots first, kinds a line on.
SLOTS_FROM_END, KINDS_FROM_END = 128, 64

OPEN_EACH = textwrap.dedent(
    """
    import json, sys
    from engine import Ring
    for name in sys.argv[1:]:
        print("opening", name, file=sys.stderr, flush=True)  # the last one, if we crash
        try:
            Ring.open(name).close()
            said = "opened"
        except Exception as e:
            said = f"{type(e).__name__}: {e}"
        print(json.dumps([name, said]), flush=True)
    """
)


def open_each_in_a_child(names: list[str]) -> dict[str, str]:
    """name -> "opened" or "ExceptionType: message", from a child process."""
    p = subprocess.run(
        [sys.executable, "-c", OPEN_EACH, *names], capture_output=True, text=True, timeout=60
    )
    if p.returncode < 0:
        last = p.stderr.strip().splitlines()[-1]
        pytest.fail(f"Ring.open crashed the process ({signal.Signals(-p.returncode).name}): {last}")
    assert p.returncode == 0, p.stderr
    return dict(json.loads(line) for line in p.stdout.splitlines())


def header_bytes(ring: Ring) -> int:
    """sizeof(struct fe_hdr), from a real ring through its public API: the user area
    starts right after the header and one slot header per slot."""
    seq = ring.claim()
    slot = ring.view(seq).ctypes.data
    ring.abandon()
    data_off = os.path.getsize(f"{SHM}/{ring.name}") - ring.slots * ring.stride
    base = slot - (seq % ring.slots) * ring.stride - data_off
    return ring.user().ctypes.data - base - ring.slots * SLOT_HDR_BYTES


@pytest.fixture
def shm_files():
    """make(tag, content) -> a file /dev/shm/fe-<this pid>-<tag>, removed at the end.
    Named after this (live) process, so no `clean` anywhere removes it meanwhile."""
    made = []

    def make(tag: str, content: bytes | None = None, copy_of: str | None = None) -> str:
        name = f"fe-{os.getpid()}-{tag}"
        path = f"{SHM}/{name}"
        made.append(path)
        if copy_of is not None:
            shutil.copyfile(f"{SHM}/{copy_of}", path)
        elif content is None:
            os.mkdir(path)
        else:
            with open(path, "wb") as f:
                f.write(content)
        return name

    yield make
    for path in made:
        if os.path.isdir(path):
            os.rmdir(path)
        elif os.path.exists(path):
            os.unlink(path)


def test_segments_that_are_not_rings_are_refused_by_name_never_a_crash(make_ring, shm_files):
    ring = make_ring(slots=8, slot_bytes=4096, stages=("pool", "ordered"), user_bytes=64)
    hdr = header_bytes(ring)
    assert hdr >= 64 and hdr % 64 == 0  # 1408 in layouts 2 and 3: 22 cache lines
    with open(f"{SHM}/{ring.name}", "rb") as f:
        image = f.read()
    (version,) = struct.unpack_from("<I", image, VERSION_AT)
    rng = np.random.default_rng(5)

    def not_a_ring(problem):
        return f"RingNotARing: ring {{}}: not a frame-engine ring: {problem}"

    refused = {  # name -> what the refusal must say (the name filled in)
        shm_files("random", rng.bytes(1 << 16)): not_a_ring(BAD_MAGIC),
        shm_files("zeros", bytes(1 << 16)): not_a_ring(BAD_MAGIC),
        shm_files("shortheader", image[: hdr - 1]): not_a_ring(TOO_SMALL),  # right magic
        shm_files("randomheader", rng.bytes(hdr)): not_a_ring(BAD_MAGIC),
        shm_files("headeronly", image[:hdr]): not_a_ring(WRONG_SIZE),  # no slots
        shm_files("grown", image + bytes(4096)): not_a_ring(WRONG_SIZE),
        shm_files("folder"): "RingInvalid: ring {}: not a ring name (1 to 63 characters, "
        "no '/' after the first) or not a segment",
    }
    # A ring of another layout version: a real one, its version field patched.
    for tag, other in (("newer", version + 1), ("older", version - 1), ("unset", 0)):
        patched = bytearray(image)
        struct.pack_into("<I", patched, VERSION_AT, other)
        refused[shm_files(tag, bytes(patched))] = not_a_ring(OTHER_VERSION)
    # Its geometry damaged: 3 slots, a stage of kind 9.
    for tag, at, value, problem in (
        ("slots3", hdr - SLOTS_FROM_END, 3, BAD_SLOTS),
        ("kind9", hdr - KINDS_FROM_END + 1, 9, BAD_KIND),
    ):
        patched = bytearray(image)
        if tag == "slots3":
            assert struct.unpack_from("<I", patched, at)[0] == ring.slots
            struct.pack_into("<I", patched, at, value)
        else:
            assert patched[at] == 1  # FE_POOL
            patched[at] = value
        refused[shm_files(tag, bytes(patched))] = not_a_ring(problem)
    # A real ring's segment, truncated: a byte short, half, the first page (no slots),
    # eight bytes, nothing (and above, to one byte short of its header, and to it).
    for size in (len(image) - 1, len(image) // 2, 4096, 8, 0):
        refused[shm_files(f"truncated{size}", image[:size])] = not_a_ring(
            WRONG_SIZE if size >= hdr else TOO_SMALL
        )
    intact = shm_files("intact", copy_of=ring.name)

    said = open_each_in_a_child([*refused, intact])
    assert said.pop(intact) == "opened"  # the copy as it was: the refusals are not blanket
    for name, problem in refused.items():
        assert said[name] == problem.format(name)
        assert os.path.exists(f"{SHM}/{name}")  # refused, and left alone


PRODUCER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from engine import Ring
    ring = Ring.open(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            if line.strip() == "claim":
                seq = ring.claim(1, timeout=0)
                ring.view(seq, shape=(1,), dtype=np.int64)[0] = os.getpid()
                ring.publish(seq, 1)
                print("produced", seq, flush=True)
            elif line.strip() == "take":
                ring.take(1, timeout=0)
                print("took", flush=True)
        except RuntimeError as e:
            print("refused", e, flush=True)
    """
)


def test_a_second_producer_is_refused_and_the_stream_goes_on(make_ring):
    ring = make_ring(slots=4, slot_bytes=8, stages=("ordered",))  # this process consumes
    children = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, ring.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:

        def ask(child, command: str) -> str:
            child.stdin.write(command + "\n")
            child.stdin.flush()
            return child.stdout.readline().strip()

        assert [c.stdout.readline().strip() for c in children] == ["ready", "ready"]
        for c in children:  # both claim at once: one wins the role
            c.stdin.write("claim\n")
            c.stdin.flush()
        said = [c.stdout.readline().strip() for c in children]
        assert sorted(s.split()[0] for s in said) == ["produced", "refused"], said
        winner, loser = children if said[0].startswith("produced") else children[::-1]
        assert said[children.index(loser)] == (
            f"refused ring {ring.name}: claim of 1: another live process (or another handle) "
            "is the producer: a ring has one, until it closes or dies"
        )
        with pytest.raises(RuntimeError, match="is the producer"):
            ring.claim(timeout=0)  # nor may this process

        def consume() -> int:
            seq, n = ring.take(1, timeout=10)
            pid = int(ring.view(seq, shape=(1,), dtype=np.int64)[0])
            ring.done(1, seq, n)
            return pid

        # The refusals disturbed nothing: the producer goes on, in order.
        assert consume() == winner.pid
        assert ask(winner, "claim") == "produced 1"
        assert consume() == winner.pid
        # The consumer of the ordered stage is this process: a child is refused it.
        assert ask(winner, "take").startswith(f"refused ring {ring.name}: take at stage 1: ")
        # Once the producer is gone, the role is free: the one refused takes over.
        winner.stdin.close()
        assert winner.wait(10) == 0
        assert ask(loser, "claim") == "produced 2"
        assert consume() == loser.pid
    finally:
        for c in children:
            c.kill()
            c.wait()


def test_stages_that_do_not_exist_are_refused_and_change_nothing(make_ring):
    ring = make_ring(slots=4, slot_bytes=8, stages=("pool", "ordered"))
    consumer = Ring.open(ring.name)
    seq = ring.claim(2)
    ring.publish(seq, 2)
    before = ring.stats()
    for bad in (0, 3, -1, 2**40, 1.5, "1", None):
        problem = re.escape(
            f"ring {ring.name}: stage {bad!r} does not exist: the consumer stages are 1..2"
        )
        with pytest.raises(ValueError, match=problem):
            consumer.take(stage=bad, timeout=0)
        with pytest.raises(ValueError, match=problem):
            consumer.done(bad, 0)
        with pytest.raises(ValueError, match=problem):
            consumer.ready(bad)
        if bad not in (0, None):  # stats(0): the producer's; stats(None): every stage's
            with pytest.raises(ValueError, match=problem):
                consumer.stats(bad)
    assert ring.stats() == before  # nothing taken, waited for or counted
    # A stage that exists, but not the one the items are held at.
    assert consumer.take(stage=1, max_n=2, timeout=0) == (0, 2)
    with pytest.raises(ValueError, match="done 0..1 at stage 2: not held by this caller"):
        consumer.done(2, 0, 2)
    consumer.done(1, 0, 2)
    assert consumer.take(stage=np.int64(2), max_n=2, timeout=0) == (0, 2)  # numpy ints are fine
    consumer.done(2, 0, 2)
    assert [s["items"] for s in ring.stats()] == [2, 2, 2]
    consumer.close()


CLEAN_AMONG_FOREIGN = textwrap.dedent(
    """
    import json, os, subprocess, sys
    exe, dead = sys.argv[1], int(sys.argv[2])
    me = os.getpid()
    ours_of_the_dead = {  # fe-<pid>-<n> of a process that is gone: what a clean removes
        f"fe-{dead}-7": os.urandom(4096),
        f"fe-{dead}-8": bytes(1 << 16),  # a creator killed before its ring was complete
        f"fe-{dead}-t3": b"",  # as the C tests name theirs
    }
    not_ours = {
        f"fe-{me}-91": os.urandom(4096),  # a live process's: not ours to judge
        "fe-foreign": b"x" * 100,
        f"fe-{dead}-not.ours": b"",
        "fe-0-1": b"",  # no process has pid 0
        f"fe-0{dead}-1": b"",  # no pid is written with a leading zero
        "fe-99999999-1": b"",  # above any pid Linux gives
    }
    odd = {f"fe-{dead}-9": "folder", f"fe-{dead}-10": "link"}  # not segments at all
    made = [*ours_of_the_dead, *not_ours, *odd]
    try:
        for name, content in {**ours_of_the_dead, **not_ours}.items():
            with open(f"/dev/shm/{name}", "wb") as f:
                f.write(content)
        os.mkdir(f"/dev/shm/fe-{dead}-9")
        os.symlink(f"/dev/shm/fe-{me}-91", f"/dev/shm/fe-{dead}-10")
        clean = subprocess.run([exe, "clean"], capture_output=True, text=True, timeout=60)
        left = sorted(n for n in os.listdir("/dev/shm") if n in made)
        # a run starts with the same clean: the foreign files must not stop it
        play = subprocess.run(
            [exe, "play", "--headless", "--untimed", "--frames", "3", "--buffer", "4", "--quiet"],
            capture_output=True, text=True, timeout=120,
        )
        print(json.dumps({
            "removed": sorted(ours_of_the_dead), "kept": sorted([*not_ours, *odd]),
            "clean": [clean.returncode, clean.stdout, clean.stderr], "left": left,
            "play": [play.returncode, play.stderr],
            "left_after_play": sorted(n for n in os.listdir("/dev/shm") if n in made),
        }))
    finally:
        for name in made:
            path = f"/dev/shm/{name}"
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            elif os.path.lexists(path):
                os.unlink(path)
    """
)


def dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def test_clean_among_foreign_files_removes_only_dead_runs_segments():
    """Decided: a regular file named as frame-engine names its segments (fe-<pid>-<n>)
    whose pid is gone is removed, whatever it holds: a creator killed inside
    fe_create() leaves just such a file that is not (yet) a ring.  Other fe- names,
    a live process's files and whatever is not a regular file are left alone."""
    command = [sys.executable, "-c", CLEAN_AMONG_FOREIGN, tool("frame-engine"), str(dead_pid())]
    # In a private /dev/shm where the test may make one (root): no other run on the
    # machine sees these files meanwhile, or cleans them first.
    private = subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0
    if private:
        mount = 'mount -t tmpfs -o size=512m tmpfs /dev/shm && exec "$@"'
        command = ["unshare", "-m", "sh", "-c", mount, "sh", *command]
    p = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    code, stdout, stderr = out["clean"]
    assert code == 0 and stderr == "", stderr
    assert stdout.splitlines() == [
        *(f"removed /dev/shm/{name}" for name in out["removed"]),
        f"{len(out['removed'])} stale segment(s) removed",
    ]
    assert out["left"] == out["kept"] == out["left_after_play"]
    assert out["play"] == [0, ""]


def test_clean_says_which_segment_it_may_not_remove_and_goes_on(tmp_path, monkeypatch, capsys):
    """Another user's segment in the sticky /dev/shm cannot be removed (EPERM): the
    clean says so and removes the rest.  In a folder of its own here, with the
    refusal made up: root may remove anything."""
    from engine import cli, segments

    dead = dead_pid()
    monkeypatch.setattr(segments, "SHM_DIR", str(tmp_path))
    for n in (1, 2):
        (tmp_path / f"fe-{dead}-{n}").write_bytes(b"")
    theirs = str(tmp_path / f"fe-{dead}-1")
    unlink = os.unlink

    def refuse_theirs(path, *args, **kw):
        if path == theirs:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), path)
        unlink(path, *args, **kw)

    monkeypatch.setattr(os, "unlink", refuse_theirs)
    assert cli.main(["clean"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"removed {tmp_path}/fe-{dead}-2", "1 stale segment(s) removed"]
    assert err == f"frame-engine: cannot remove {theirs}: Operation not permitted\n"
    assert os.listdir(tmp_path) == [f"fe-{dead}-1"]
