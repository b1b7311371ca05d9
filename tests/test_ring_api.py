"""The Python contract of engine.Ring: operations, views, errors, timeouts, waits."""

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from helpers import wait_until

from engine import Ring, RingAborted


def put(r, n=1, base=0):
    """Claim n items, write each one's sequence as its first 8 bytes, publish."""
    seq = r.claim(n, timeout=1)
    r.views(seq, n, shape=(1,), dtype=np.uint64)[:, 0] = np.arange(seq, seq + n) + base
    r.publish(seq, n)
    return seq


def test_create_open_geometry(make_ring):
    r = make_ring(slots=8, slot_bytes=100, stages=("pool", "ordered"), lookback=2)
    assert r.name.startswith(f"fe-{os.getpid()}-")
    assert (r.slots, r.slot_bytes, r.lookback, r.stages) == (8, 100, 2, ("pool", "ordered"))
    assert r.stride % 64 == 0 and r.stride >= 100
    assert r.creator == os.getpid()
    o = Ring.open(r.name)
    assert (o.slots, o.slot_bytes, o.lookback, o.stages) == (8, 100, 2, ("pool", "ordered"))
    o.close()


def test_small_items_are_packed(make_ring):
    # 8-byte items at an 8-byte stride: a run of 64 is 512 contiguous bytes
    r = make_ring(slots=1024, slot_bytes=8, stages=("ordered",))
    assert r.stride == 8
    seq = r.claim(64)
    r.views(seq, 64, dtype=np.uint64)[:, 0] = np.arange(64)
    r.publish(seq, 64)
    seq, n = r.take(1, max_n=64)
    run = r.views(seq, n, dtype=np.uint64)
    assert n == 64 and run.strides == (8, 8) and list(run[:, 0]) == list(range(64))
    r.done(1, seq, n)


def test_large_slots_are_page_aligned(make_ring):
    r = make_ring(slots=4, slot_bytes=1920 * 1080 * 3, stages=("ordered",))
    assert r.stride % 4096 == 0
    seq = r.claim()
    frame = r.view(seq, shape=(1080, 1920, 3))
    assert frame.shape == (1080, 1920, 3) and frame.ctypes.data % 4096 == 0


def test_items_flow_through_pool_then_ordered(make_ring):
    r = make_ring(slots=8, slot_bytes=8, stages=("pool", "ordered"))
    put(r, 3)
    assert r.ready(1) == 3 and r.ready(2) == 0
    assert r.take(1, max_n=2, timeout=0) == (0, 2)
    assert r.take(1, max_n=8, timeout=0) == (2, 1)
    r.done(1, 2)  # pool members may finish out of order...
    with pytest.raises(TimeoutError):
        r.take(2, timeout=0)  # ...but the ordered stage still receives item 0 first
    r.done(1, 0, 2)
    seq, n = r.take(2, max_n=8, timeout=0)
    assert (seq, n) == (0, 3)
    assert list(r.views(seq, n, shape=(1,), dtype=np.uint64)[:, 0]) == [0, 1, 2]
    r.done(2, 0, 3)
    st = r.stats()
    assert [s["items"] for s in st] == [3, 3, 3]
    assert st[1]["stalls"] == 0 and st[2]["stalls"] == 1


def test_runs_cross_the_end_of_the_ring(make_ring):
    r = make_ring(slots=4, slot_bytes=8, stages=("ordered",))
    for _ in range(3):  # move the cursors so the next run wraps
        put(r)
        seq, n = r.take(1, timeout=0)
        r.done(1, seq, n)
    seq = put(r, 4)
    assert seq == 3  # slots 3, 0, 1, 2
    seq, n = r.take(1, max_n=4, timeout=0)
    v = r.views(seq, n, shape=(1,), dtype=np.uint64)
    assert list(v[:, 0]) == [3, 4, 5, 6]
    v[1, 0] = 99  # the mirrored mapping and the slot are the same memory
    assert r.view(4, shape=(1,), dtype=np.uint64)[0] == 99


def test_full_ring_and_timeouts(make_ring):
    r = make_ring(slots=2, slot_bytes=8, stages=("ordered",))
    put(r, 2)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="claim"):
        r.claim(timeout=0.05)
    assert time.monotonic() - t0 >= 0.05
    seq, n = r.take(1, max_n=2)
    r.done(1, seq, n)
    with pytest.raises(TimeoutError, match="take at stage 1"):
        r.take(1, timeout=0.02)
    assert r.claim(timeout=0) == 2


def test_end_of_stream_drains_then_eof(make_ring):
    r = make_ring(slots=4, slot_bytes=8, stages=("pool",))
    put(r, 2)
    r.end()
    assert r.end_seq == 2
    assert r.take(1, max_n=4) == (0, 2)
    with pytest.raises(EOFError, match="end of stream"):
        r.take(1)
    with pytest.raises(RuntimeError, match="ended"):
        r.claim()


def test_misuse_names_the_problem(make_ring):
    r = make_ring(slots=4, slot_bytes=16, stages=("pool", "ordered"), lookback=1)
    with pytest.raises(ValueError, match="stage 3 does not exist"):
        r.take(3)
    with pytest.raises(ValueError, match="stage 0 does not exist"):
        r.done(0, 0)
    with pytest.raises(ValueError, match="claim of 4 items"):
        r.claim(4)  # more than slots - lookback
    seq = r.claim(2)
    with pytest.raises(ValueError, match="publish 1..1"):
        r.publish(1)  # out of order
    r.publish(seq, 2)
    with pytest.raises(ValueError, match="not held"):
        r.done(1, 0)  # published, but not taken
    r.take(1)
    r.done(1, 0)
    with pytest.raises(ValueError, match="not held"):
        r.done(1, 0)  # twice
    with pytest.raises(ValueError, match="larger than a slot"):
        r.view(0, shape=(17,))
    with pytest.raises(ValueError, match="larger than a slot"):
        r.write(0, b"x" * 17)
    with pytest.raises(ValueError, match="not in the ring"):
        r.view(5)
    with pytest.raises(ValueError, match="timeout"):
        r.take(1, timeout=-1)
    for bad in [
        dict(slots=3),
        dict(slots=4, lookback=4),
        dict(stages=()),
        dict(stages=("fifo",)),
        dict(stages=("pool",) * 6),
        dict(slot_bytes=0),
    ]:
        with pytest.raises(ValueError):
            Ring.create(**{"slots": 4, "slot_bytes": 8, **bad})


def test_closed_ring_refuses_and_live_views_survive(make_ring):
    r = make_ring(slots=4, slot_bytes=4096, stages=("ordered",))
    seq = r.claim()
    v = r.view(seq)
    v[:] = 7
    r.close()
    with pytest.raises(ValueError, match="closed"):
        r.claim()
    with pytest.raises(ValueError, match="closed"):
        r.view(0)
    gc.collect()
    v[:] += 1  # the mapping lives as long as a view does
    assert int(v.sum()) == 8 * 4096


def test_open_missing_and_foreign_segments():
    with pytest.raises(FileNotFoundError, match="fe-0-nothing"):
        Ring.open("fe-0-nothing")
    path = f"/dev/shm/fe-{os.getpid()}-foreign"
    try:
        for content in [b"", b"junk", b"x" * 100_000]:
            with open(path, "wb") as f:
                f.write(content)
            with pytest.raises(ValueError, match="not a frame-engine ring"):
                Ring.open(os.path.basename(path))
    finally:
        os.unlink(path)


def test_readonly_views(make_ring):
    r = make_ring(slots=2, slot_bytes=8, stages=("ordered",))
    seq = r.claim()
    with pytest.raises(ValueError):
        r.view(seq, readonly=True)[0] = 1


def test_wait_releases_the_gil(make_ring):
    """A thread blocked in take() lets the main thread run and publish to it."""
    r = make_ring(slots=4, slot_bytes=8, stages=("ordered",))
    got = []

    def consumer():
        try:
            got.append(r.take(1, timeout=20))
        except Exception as e:  # reported below
            got.append(e)

    t = threading.Thread(target=consumer)
    t.start()
    # If the wait held the GIL, this loop could not run before the take timed out.
    wait_until(lambda: r.stats(1)["waits"] >= 1, what="the consumer to sleep")
    put(r)
    t.join(20)
    assert got == [(0, 1)]


def test_close_from_another_thread_does_not_unmap_under_a_waiter(make_ring):
    """The waiter's take ends (closed) at the end of a slice instead of being cut
    short under it, and then the ordered stage is free for another handle."""
    r = make_ring(slots=4, slot_bytes=8, stages=("ordered",))
    producer = Ring.open(r.name)
    got = []

    def waiter():
        try:
            got.append(r.take(1, timeout=20))
        except ValueError as e:
            got.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: producer.stats(1)["waits"] >= 1, what="the consumer to sleep")
    r.close()
    gc.collect()
    t.join(20)
    assert len(got) == 1 and "closed" in str(got[0])
    put(producer)
    other = Ring.open(r.name)
    assert other.take(1, timeout=0) == (0, 1)
    other.close()
    producer.close()


def test_close_lets_go_while_views_live(make_ring):
    """close() frees the handle's roles and moves the items it holds on, flagged
    failed, at once; only the unmapping waits for the views."""
    r = make_ring(slots=8, slot_bytes=8, stages=("pool", "ordered"))
    producer, member, ordered = (Ring.open(r.name) for _ in range(3))
    seq = producer.claim(3)
    producer.publish(seq, 2)  # item 2 stays claimed, unpublished
    assert member.take(1, max_n=2, timeout=0) == (0, 2)
    views = [member.view(0), producer.view(2)]
    views[0][:] = 5
    member.close()
    # The pool member's items moved on flagged failed at once.
    assert ordered.take(2, max_n=4, timeout=0) == (0, 2)
    assert ordered.failed(0) and ordered.failed(1)
    views.append(ordered.view(1))
    ordered.close()
    # Its ordered role is free, and what it held went on to the producer.
    other = Ring.open(r.name)
    with pytest.raises(TimeoutError):
        other.take(2, timeout=0)
    # The producer role is free, and the unpublished item is abandoned.
    producer.close()
    again = Ring.open(r.name)
    assert again.claim(1, timeout=0) == 2
    assert [int(v[0]) for v in views[:1]] == [5]  # the mapping lives on
    for h in (other, again):
        h.close()


def test_abort_wakes_every_waiter(make_ring):
    r = make_ring(slots=4, slot_bytes=8, stages=("pool",))
    errors = []

    def waiter():
        try:
            Ring.open(r.name).take(1)  # no timeout: only the abort can end it
        except RingAborted as e:
            errors.append(e)

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: r.stats(1)["waits"] >= 3, what="three waiters asleep")
    r.abort()
    for t in threads:
        t.join(10)
    assert len(errors) == 3 and r.aborted
    with pytest.raises(RingAborted):
        r.claim()


CHILD_WAITS = textwrap.dedent(
    """
    import sys
    from engine import Ring
    r = Ring.create(slots=4, slot_bytes=8, stages=("ordered",))
    print(r.name, flush=True)
    r.take(1)
    """
)


def spawn_waiter():
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD_WAITS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    name = p.stdout.readline().strip()
    r = Ring.open(name)
    wait_until(lambda: r.stats(1)["waits"] >= 1, what="the child to sleep in take()")
    return p, r, name


def test_ctrl_c_interrupts_a_wait_and_unlinks():
    p, r, name = spawn_waiter()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=10)
    assert p.returncode != 0 and "KeyboardInterrupt" in err
    r.close()
    assert not os.path.exists(f"/dev/shm/{name}")


def test_abort_from_another_process_wakes_the_waiter():
    p, r, name = spawn_waiter()
    r.abort()
    _, err = p.communicate(timeout=10)
    assert p.returncode == 1 and "RingAborted" in err
    r.close()
    assert not os.path.exists(f"/dev/shm/{name}")


def test_context_manager_unlinks_on_exception():
    with pytest.raises(ZeroDivisionError):
        with Ring.create(slots=2, slot_bytes=8, stages=("ordered",)) as r:
            name = r.name
            assert os.path.exists(f"/dev/shm/{name}")
            raise ZeroDivisionError
    assert not os.path.exists(f"/dev/shm/{name}")


def test_views_at_an_offset_inside_the_slot(make_ring):
    r = make_ring(slots=4, slot_bytes=64, stages=("ordered",))
    seq = r.claim(2)
    r.views(seq, 2, shape=(2,), dtype=np.int64, offset=48)[:, 1] = [7, 8]
    assert r.view(seq + 1, shape=(1,), dtype=np.int64, offset=56)[0] == 8
    assert r.view(seq, offset=56).shape == (8,)
    with pytest.raises(ValueError, match="larger than a slot"):
        r.view(seq, shape=(3,), dtype=np.int64, offset=48)
    with pytest.raises(ValueError, match="not aligned"):
        r.view(seq, shape=(1,), dtype=np.int64, offset=4)


def test_user_area_is_shared_between_handles(make_ring):
    r = make_ring(slots=2, slot_bytes=8, stages=("ordered",), user_bytes=64)
    other = Ring.open(r.name)
    other.user(shape=(8,), dtype=np.int64)[3] = 42
    assert r.user(shape=(8,), dtype=np.int64)[3] == 42
    assert r.user().shape == (64,)
    other.close()
    with pytest.raises(ValueError, match="larger than"):
        r.user(shape=(9,), dtype=np.int64)
    plain = make_ring(slots=2, slot_bytes=8, stages=("ordered",))
    with pytest.raises(ValueError, match="without a user area"):
        plain.user()
    with pytest.raises(ValueError, match="user_bytes"):
        Ring.create(slots=2, slot_bytes=8, stages=("ordered",), user_bytes=1 << 20)


@pytest.mark.parametrize(
    "tag, pattern",
    [
        ("Tabc", r"fe-\d+-Tabc\d+"),
        ("", r"fe-\d+-\d+"),
        ("bad-tag9", r"fe-\d+-\d+"),
        ("x" * 17, r"fe-\d+-\d+"),
    ],
)
def test_fe_shm_tag_marks_the_names_a_program_makes(tag, pattern):
    """FE_SHM_TAG (letters only, 1 to 16) goes into the names fe_create() makes, so
    a program can tell its segments from others'; anything else is ignored."""
    import re
    import subprocess
    import sys

    code = (
        "from engine import Ring\n"
        "r = Ring.create(slots=2, slot_bytes=64)\n"
        "print(r.name); r.close(); r.unlink()\n"
    )
    env = dict(os.environ, FE_SHM_TAG=tag)
    name = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    assert re.fullmatch(pattern, name), name


def test_errors_are_ring_errors_and_the_builtin_they_mean(make_ring):
    """One hierarchy: each error is a RingError and the builtin it means, and
    carries the errno (positive) or the ring's own code (negative)."""
    import errno

    from engine import RingError
    from engine._ring import RingBusy, RingEOF, RingInvalid, RingNotFound, RingNotHeld, RingTimeout

    r = make_ring(slots=4, slot_bytes=8, stages=("ordered",))
    other = Ring.open(r.name)
    cases = []
    for call, cls, builtin, code in [
        (lambda: r.take(1, timeout=0), RingTimeout, TimeoutError, errno.ETIMEDOUT),
        (lambda: Ring.open("fe-0-nothing"), RingNotFound, FileNotFoundError, errno.ENOENT),
        (lambda: r.done(1, 0), RingNotHeld, ValueError, -10005),
        (lambda: r.take(7), RingInvalid, ValueError, errno.EINVAL),
        (lambda: (r.claim(1), other.claim(1, timeout=0)), RingBusy, RuntimeError, errno.EBUSY),
        (
            lambda: (r.publish(0), r.end(), r.take(1), r.done(1, 0), r.take(1)),
            RingEOF,
            EOFError,
            -10001,
        ),
    ]:
        with pytest.raises(builtin) as info:
            call()
        cases.append((type(info.value), isinstance(info.value, RingError), info.value.errno))
        assert cases[-1] == (cls, True, code), info.value
    other.close()
