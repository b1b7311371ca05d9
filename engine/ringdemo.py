"""A short demo of the ring: frames from a producer process, through a pool of
analyzer processes, to the main process in order.  Stands in for the player."""

from __future__ import annotations

import multiprocessing as mp
import time

from engine._ring import Ring

H, W = 720, 1280


def _produce(name: str, frames: int) -> None:
    ring = Ring.open(name)
    for i in range(frames):
        seq = ring.claim(timeout=10)
        frame = ring.view(seq, shape=(H, W, 3))
        frame[:] = i % 256  # a frame whose content says which it is
        ring.publish(seq)
    ring.end()


def _analyze(name: str) -> None:
    ring = Ring.open(name)
    while True:
        try:
            seq, n = ring.take(1, timeout=10)
        except EOFError:
            return
        frame = ring.view(seq, shape=(H, W, 3))
        frame[0, 0, 0] = int(frame[::16, ::16].mean())  # a cheap "analysis" in place
        ring.done(1, seq, n)


def run(frames: int = 300, workers: int = 2) -> dict:
    """Push `frames` 720p frames through producer -> pool -> ordered; return stats."""
    ctx = mp.get_context("spawn")
    with Ring.create(slots=16, slot_bytes=H * W * 3, stages=("pool", "ordered")) as ring:
        procs = [ctx.Process(target=_produce, args=(ring.name, frames), name="fe-reader")]
        procs += [
            ctx.Process(target=_analyze, args=(ring.name,), name=f"fe-analyze-{i + 1}")
            for i in range(workers)
        ]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        expected = 0
        try:
            while True:
                try:
                    seq, n = ring.take(2, max_n=8, timeout=10)
                except EOFError:
                    break
                for s in range(seq, seq + n):
                    frame = ring.view(s, shape=(H, W, 3), readonly=True)
                    assert s == expected and frame[1, 1, 0] == s % 256, "out of order"
                    expected += 1
                ring.done(2, seq, n)
        finally:
            for p in procs:
                p.join(5)
                if p.is_alive():
                    p.kill()
        wall = time.perf_counter() - t0
        return {"frames": expected, "wall_s": wall, "fps": expected / wall, "stages": ring.stats()}
