"""Process bodies for the multi-process ring tests (importable by spawned children)."""

import random

import numpy as np

from engine import Ring

# Item layout in a slot: [seq, pool member id + 1, checksum] as uint64.


def producer(name, count, max_batch, seed):
    r = Ring.open(name)
    rng = random.Random(seed)
    seq = 0
    while seq < count:
        n = min(rng.randint(1, max_batch), count - seq)
        s = r.claim(n, timeout=60)
        assert s == seq
        v = r.views(s, n, shape=(3,), dtype=np.uint64)
        v[:, 0] = np.arange(s, s + n)
        v[:, 1] = 0
        v[:, 2] = np.arange(s, s + n) * 2654435761 % (1 << 32)
        r.publish(s, n)
        seq += n
    r.end()
    r.close()


def pool_member(name, member, max_batch, seed, out_q, lookback=0):
    """Take runs, check each item, stamp it with our id, report what we finished."""
    r = Ring.open(name)
    rng = random.Random(seed)
    seen = []
    bad = []
    try:
        while True:
            try:
                s, n = r.take(1, max_n=rng.randint(1, max_batch), timeout=60)
            except EOFError:
                break
            v = r.views(s, n, shape=(3,), dtype=np.uint64)
            expect = np.arange(s, s + n, dtype=np.uint64)
            if not (
                np.array_equal(v[:, 0], expect)
                and np.array_equal(v[:, 2], expect * 2654435761 % (1 << 32))
            ):
                bad.append(int(s))
            for j in range(1, lookback + 1):  # the items before ours are intact
                if s >= j and int(r.view(s - j, shape=(1,), dtype=np.uint64)[0]) != s - j:
                    bad.append(int(s - j))
            v[:, 1] = member + 1
            seen.extend(range(s, s + n))
            r.done(1, s, n)
    finally:
        out_q.put((member, seen, bad))
        r.close()


def ordered_consumer(name, stage, out_q):
    """See every item once, in order; record failed items and who analyzed each."""
    r = Ring.open(name)
    expected = 0
    errors = []
    failed = []
    members = {}
    try:
        while True:
            try:
                s, n = r.take(stage, max_n=64, timeout=60)
            except EOFError:
                break
            if s != expected:
                errors.append(f"got {s}, expected {expected}")
            v = r.views(s, n, shape=(3,), dtype=np.uint64)
            if not np.array_equal(v[:, 0], np.arange(s, s + n, dtype=np.uint64)):
                errors.append(f"bad payload in {s}..{s + n - 1}")
            for i in range(n):
                if r.failed(s + i):
                    failed.append(s + i)
                else:
                    m = int(v[i, 1])
                    members[m] = members.get(m, 0) + 1
                    if m == 0:
                        errors.append(f"item {s + i} reached the ordered stage unanalyzed")
            expected = s + n
            r.done(stage, s, n)
    finally:
        out_q.put(("ordered", expected, errors, failed, members))
        r.close()


def hold_one_and_wait(name, out_q, never):
    """Take one item from the pool and hold it until killed."""
    r = Ring.open(name)
    s, n = r.take(1, max_n=1, timeout=60)
    out_q.put(("holding", s))
    never.wait()


def create_and_wait(out_q, never):
    """Create a ring, say its name, and wait to be killed."""
    r = Ring.create(slots=4, slot_bytes=64, stages=("ordered",))
    out_q.put(r.name)
    never.wait()


def block_in_take(name, out_q):
    r = Ring.open(name)
    try:
        r.take(1)
    except Exception as e:
        out_q.put(type(e).__name__)
