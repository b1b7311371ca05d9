"""The ring across real processes over real shared memory."""

import multiprocessing as mp
import os
import signal

import pytest
import ring_workers as w
from helpers import wait_until

from engine import Ring, clean_stale

ctx = mp.get_context("spawn")


def finish(procs, q, nresults, started=(), timeout=120, while_running=None):
    """Start procs, run while_running(), read nresults from q (before joining: a
    child that put a large result cannot exit until it is read), join all; return
    (the ordered consumer's result, the pool members' results)."""
    for p in procs:
        p.start()
    try:
        if while_running:
            while_running()
        results = [q.get(timeout=timeout) for _ in range(nresults)]
        for p in [*started, *procs]:
            p.join(timeout)
    finally:
        for p in [*started, *procs]:
            if p.is_alive():
                p.kill()
                p.join()
    assert [p.exitcode for p in [*started, *procs]] == [0] * (len(started) + len(procs))
    ordered = next(r for r in results if r[0] == "ordered")
    pools = [r for r in results if r[0] != "ordered"]
    return ordered, pools


@pytest.mark.parametrize("max_batch", [1, 8])
def test_pool_and_ordered_exactly_once_in_order(max_batch):
    """1 producer, 3 pool members, 1 ordered consumer, 100,000 items."""
    count = 100_000
    with Ring.create(slots=64, slot_bytes=24, stages=("pool", "ordered")) as r:
        q = ctx.Queue()
        procs = [ctx.Process(target=w.producer, args=(r.name, count, max_batch, 1))]
        procs += [
            ctx.Process(target=w.pool_member, args=(r.name, m, max_batch, 10 + m, q))
            for m in range(3)
        ]
        procs.append(ctx.Process(target=w.ordered_consumer, args=(r.name, 2, q)))
        (_, last, errors, failed, members), pools = finish(procs, q, 4)
        assert errors == [] and failed == [] and last == count
        seen = sorted(s for _, items, _ in pools for s in items)
        assert seen == list(range(count)), "an item was lost or finished twice by the pool"
        assert all(bad == [] for _, _, bad in pools)
        per_member = {m + 1: len(items) for m, items, _ in pools}
        assert members == {k: v for k, v in per_member.items() if v}
        st = r.stats()
        assert [s["items"] for s in st] == [count] * 3


def test_lookback_keeps_earlier_items_intact_across_processes():
    count = 20_000
    with Ring.create(slots=16, slot_bytes=24, stages=("pool", "ordered"), lookback=3) as r:
        q = ctx.Queue()
        procs = [ctx.Process(target=w.producer, args=(r.name, count, 4, 2))]
        procs += [
            ctx.Process(target=w.pool_member, args=(r.name, m, 4, 20 + m, q, 3)) for m in range(2)
        ]
        procs.append(ctx.Process(target=w.ordered_consumer, args=(r.name, 2, q)))
        (_, last, errors, _, _), pools = finish(procs, q, 3)
        assert errors == [] and last == count
        assert all(bad == [] for _, _, bad in pools)


def test_killed_pool_member_is_reclaimed_and_its_item_flagged():
    count = 5_000
    with Ring.create(slots=32, slot_bytes=24, stages=("pool", "ordered")) as r:
        q = ctx.Queue()
        never = ctx.Event()
        prod = ctx.Process(target=w.producer, args=(r.name, count, 4, 3))
        prod.start()
        victim = ctx.Process(target=w.hold_one_and_wait, args=(r.name, q, never))
        victim.start()
        tag, held = q.get(timeout=60)
        assert tag == "holding"
        others = [
            ctx.Process(target=w.pool_member, args=(r.name, m, 4, 30 + m, q)) for m in range(2)
        ]
        ordered = ctx.Process(target=w.ordered_consumer, args=(r.name, 2, q))

        def kill_and_reclaim():
            # The pool works on, but the ordered stage is stuck behind the held item
            # (and, the ring full, so is the producer) until the supervisor acts.
            wait_until(
                lambda: r.stats(2)["items"] == held and r.stats(1)["items"] > held,
                what="the ordered stage to stop at the held item",
            )
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(10)
            assert r.reclaim(victim.pid) == 1

        (_, last, errors, failed, _), pools = finish(
            [*others, ordered], q, 3, started=[prod], while_running=kill_and_reclaim
        )
        assert errors == [] and last == count
        assert failed == [held]
        seen = sorted(s for _, items, _ in pools for s in items)
        assert seen == sorted(set(range(count)) - {held})
        assert r.stats(1)["failed"] == 1


def test_abort_wakes_waiters_in_other_processes():
    with Ring.create(slots=4, slot_bytes=8, stages=("pool",)) as r:
        q = ctx.Queue()
        procs = [ctx.Process(target=w.block_in_take, args=(r.name, q)) for _ in range(3)]
        for p in procs:
            p.start()
        wait_until(lambda: r.stats(1)["waits"] >= 3, what="three processes asleep in take()")
        r.abort()
        for p in procs:
            p.join(10)
        assert sorted(q.get(timeout=10) for _ in procs) == ["RingAborted"] * 3


def test_sigkilled_creator_leaves_a_segment_that_clean_stale_removes():
    q = ctx.Queue()
    never = ctx.Event()
    p = ctx.Process(target=w.create_and_wait, args=(q, never))
    p.start()
    name = q.get(timeout=60)
    assert name.startswith(f"fe-{p.pid}-")
    mine = Ring.create(slots=2, slot_bytes=8, stages=("ordered",))  # alive: must stay
    try:
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert os.path.exists(f"/dev/shm/{name}")  # a SIGKILL runs no cleanup
        removed = clean_stale()
        # Any frame-engine run starting meanwhile cleans stale segments too: outside
        # CI (where nothing else runs), another program's may have got there first.
        assert name in removed or not os.environ.get("CI")
        assert mine.name not in removed
        assert not os.path.exists(f"/dev/shm/{name}")
        assert os.path.exists(f"/dev/shm/{mine.name}")
    finally:
        mine.close()
        mine.unlink()
