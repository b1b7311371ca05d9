"""engine.Ring across processes, against what multiprocessing offers for the same job.

Three cases, each run --repeat times, every process started with the 'spawn' context:

1. 1080p BGR frames from a producer process to a consumer process, the producer
   copying a prepared frame into its slot and the consumer copying it out into its
   own buffer: the ring (one ordered stage, 16 slots) against 16
   multiprocessing.shared_memory slots whose indices travel through two
   multiprocessing.Queue's (free and full).  Two processes making the same copies
   with no handoff at all show the ceiling that memory bandwidth sets.
2. 8-byte items: the ring in batches of 64 and of 1, against multiprocessing.Pipe
   and multiprocessing.Queue sending the same items one by one.
3. A consumer asleep in take() for a while: the CPU it uses while blocked, and the
   latency from the producer's publish to its return from take(); a Pipe.recv_bytes()
   woken the same way is the reference.

The machinery (child processes, the throughput run, the frame transports, the
report) is in bench/_harness.py.  Tables show the median and the spread of the runs;
the JSON rows (suite, method, case, value, unit) hold the medians.

    python bench/ring_ipc.py [--quick] [--repeat N] [--json PATH]
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from contextlib import closing
from dataclasses import dataclass

import numpy as np
from _harness import (
    CTX,
    WAIT_S,
    Children,
    Endpoint,
    Metric,
    RingEndpoint,
    Target,
    arg_parser,
    frames_copy_only,
    frames_ring,
    frames_shm_queues,
    run,
    throughput,
)

from engine import Ring

SUITE = "ring_ipc"

FRAME_SHAPE = (1080, 1920, 3)
FRAME_SLOTS = 16  # for the frame case, the same for the ring and the baseline
ITEM_BYTES = 8
ITEM_SLOTS = 1024
BATCH = 64


@dataclass(frozen=True)
class Sizes:
    frames: int  # per run; items and messages are multiples of BATCH
    items_batched: int
    items_single: int
    messages: int
    wakeups: int
    block_s: float


FULL = Sizes(600, 8_192_000, 409_600, 204_800, wakeups=50, block_s=0.5)
QUICK = Sizes(150, 2_048_000, 102_400, 51_200, wakeups=20, block_s=0.25)


# Medians are checked against these.
TARGETS = {
    ("ring / baseline", "1080p frame, copy in + copy out"): Target(2.0),
    ("ring, batches of 64", "8-byte items"): Target(5_000_000),
}


# ---- case 1: 1080p frames -----------------------------------------------------


def case_frames(sizes: Sizes) -> list[Metric]:
    case = "1080p frame, copy in + copy out"
    ring = frames_ring(FRAME_SHAPE, FRAME_SLOTS, sizes.frames)
    base = frames_shm_queues(FRAME_SHAPE, FRAME_SLOTS, sizes.frames)
    ceiling = frames_copy_only(FRAME_SHAPE, FRAME_SLOTS, sizes.frames)
    return [
        Metric(f"ring, {FRAME_SLOTS} slots", case, ring, "frames/s"),
        Metric(f"shared_memory + 2 Queues, {FRAME_SLOTS} slots", case, base, "frames/s"),
        Metric("ring / baseline", case, ring / base, "x"),
        Metric("copy only, no handoff (ceiling)", case, ceiling, "frames/s"),
    ]


# ---- case 2: 8-byte items ----------------------------------------------------


class RingItems(RingEndpoint):
    """8-byte items through the ring, `batch` per claim and at most `batch` per take."""

    def __init__(self, name: str, batch: int) -> None:
        super().__init__(name)
        self.batch = batch
        self.block = np.arange(batch * ITEM_BYTES, dtype=np.uint8).reshape(batch, ITEM_BYTES)
        self.out = np.empty_like(self.block)

    def put(self) -> int:
        seq = self.ring.claim(self.batch, timeout=WAIT_S)
        np.copyto(self.ring.views(seq, self.batch)[:, :ITEM_BYTES], self.block)
        self.ring.publish(seq, self.batch)
        return self.batch

    def get(self) -> int:
        seq, n = self.ring.take(1, max_n=self.batch, timeout=WAIT_S)
        np.copyto(self.out[:n], self.ring.views(seq, n)[:, :ITEM_BYTES])
        self.ring.done(1, seq, n)
        return n


class PipeItems(Endpoint):
    """8-byte items through one end of a one-way Pipe, one message each."""

    def __init__(self, conn: mp.connection.Connection) -> None:
        self.conn = conn
        self.item = bytes(range(ITEM_BYTES))
        self.out = bytearray(ITEM_BYTES)

    def put(self) -> int:
        self.conn.send_bytes(self.item)
        return 1

    def get(self) -> int:
        self.conn.recv_bytes_into(self.out)
        return 1

    def close(self) -> None:
        self.conn.close()


class QueueItems(Endpoint):
    """8-byte items through a multiprocessing.Queue, one message each."""

    def __init__(self, q: mp.Queue) -> None:
        self.q = q
        self.item = bytes(range(ITEM_BYTES))

    def put(self) -> int:
        self.q.put(self.item)
        return 1

    def get(self) -> int:
        self.q.get()
        return 1

    def close(self) -> None:
        self.q.close()


def items_ring(batch: int, items: int) -> float:
    with Ring.create(slots=ITEM_SLOTS, slot_bytes=ITEM_BYTES, stages=("ordered",)) as ring:
        args = (ring.name, batch)
        return throughput(RingItems, args, args, 100 * batch, items)


def items_pipe(messages: int) -> float:
    recv, send = CTX.Pipe(duplex=False)
    with closing(recv), closing(send):
        return throughput(PipeItems, (send,), (recv,), 10 * BATCH, messages)


def items_queue(messages: int) -> float:
    q = CTX.Queue()
    try:
        return throughput(QueueItems, (q,), (q,), 10 * BATCH, messages)
    finally:
        q.close()
        q.join_thread()


def case_items(sizes: Sizes) -> list[Metric]:
    case = "8-byte items"
    return [
        Metric(
            f"ring, batches of {BATCH}", case, items_ring(BATCH, sizes.items_batched), "items/s"
        ),
        Metric("ring, batches of 1", case, items_ring(1, sizes.items_single), "items/s"),
        Metric("Pipe.send_bytes, one by one", case, items_pipe(sizes.messages), "messages/s"),
        Metric("Queue.put, one by one", case, items_queue(sizes.messages // 2), "messages/s"),
    ]


# ---- case 3: wake-up latency and idle CPU -----------------------------------


class RingStamps:
    """perf_counter_ns stamps through the ring, one item each."""

    def __init__(self, name: str) -> None:
        self.ring = Ring.open(name)

    def send(self, stamp: int) -> None:
        seq = self.ring.claim(1, timeout=WAIT_S)
        self.ring.view(seq, shape=1, dtype=np.int64)[0] = stamp
        self.ring.publish(seq)

    def recv(self) -> tuple[int, int]:
        """The next stamp, and the time the wait for it returned."""
        seq, n = self.ring.take(1, timeout=WAIT_S)
        woke = time.perf_counter_ns()
        stamp = int(self.ring.view(seq, shape=1, dtype=np.int64)[0])
        self.ring.done(1, seq, n)
        return stamp, woke

    def close(self) -> None:
        self.ring.close()


class PipeStamps:
    """perf_counter_ns stamps through one end of a one-way Pipe, one message each."""

    def __init__(self, conn: mp.connection.Connection) -> None:
        self.conn = conn

    def send(self, stamp: int) -> None:
        self.conn.send_bytes(stamp.to_bytes(8, "little"))

    def recv(self) -> tuple[int, int]:
        data = self.conn.recv_bytes()
        woke = time.perf_counter_ns()
        return int.from_bytes(data, "little"), woke

    def close(self) -> None:
        self.conn.close()


Stamps = type[RingStamps] | type[PipeStamps]


def sleeper(endpoint: Stamps, args: tuple, wakeups: int, ready: mp.connection.Connection) -> dict:
    """Sleeper process: say it is ready, block in recv() until woken, time that; repeat.
    The first wake-up is a warm-up."""
    ep = endpoint(*args)
    latency, cpu = [], []
    try:
        for _ in range(wakeups + 1):
            ready.send_bytes(b"")
            c0 = time.process_time_ns()
            stamp, woke = ep.recv()
            cpu.append(time.process_time_ns() - c0)
            latency.append(woke - stamp)
    finally:
        ep.close()
    return {"latency_ns": latency[1:], "cpu_ns": cpu[1:]}


def wake_up(endpoint: Stamps, p_args: tuple, c_args: tuple, wakeups: int, block_s: float) -> dict:
    """Send a stamp each time the sleeper has been blocked for `block_s`."""
    ready, ready_w = CTX.Pipe(duplex=False)
    ep = endpoint(*p_args)
    with closing(ready), closing(ep), Children() as kids:
        kids.start("sleeper", sleeper, endpoint, c_args, wakeups, ready_w)
        ready_w.close()  # so that a dead sleeper reads as end of file here
        for _ in range(wakeups + 1):
            if not ready.poll(WAIT_S):
                raise TimeoutError("the sleeper process does not get ready")
            ready.recv_bytes()
            time.sleep(block_s)
            ep.send(time.perf_counter_ns())
        return kids.results(timeout=WAIT_S)["sleeper"]


def wake_ring(wakeups: int, block_s: float) -> dict:
    with Ring.create(slots=64, slot_bytes=ITEM_BYTES, stages=("ordered",)) as ring:
        return wake_up(RingStamps, (ring.name,), (ring.name,), wakeups, block_s)


def wake_pipe(wakeups: int, block_s: float) -> dict:
    recv, send = CTX.Pipe(duplex=False)
    with closing(recv), closing(send):
        return wake_up(PipeStamps, (send,), (recv,), wakeups, block_s)


def case_wake(sizes: Sizes) -> list[Metric]:
    case = f"woken after {sizes.block_s:g} s blocked"
    metrics = []
    for method, wake in (("ring take()", wake_ring), ("Pipe.recv_bytes()", wake_pipe)):
        res = wake(sizes.wakeups, sizes.block_s)
        lat_us = np.array(res["latency_ns"]) / 1e3
        cpu_ms = np.array(res["cpu_ns"]) / 1e6
        metrics += [
            Metric(f"{method}, latency p50", case, float(np.percentile(lat_us, 50)), "us"),
            Metric(f"{method}, latency p99", case, float(np.percentile(lat_us, 99)), "us"),
            Metric(f"{method}, CPU while blocked p50", case, float(np.median(cpu_ms)), "ms"),
            Metric(f"{method}, CPU while blocked max", case, float(cpu_ms.max()), "ms"),
        ]
    return metrics


CASES = (case_frames, case_items, case_wake)


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__, CASES)
    parser.add_argument("--frame-slots", type=int, help="slots for the frame case (default 16)")
    args = parser.parse_args(argv)
    if args.frame_slots:
        global FRAME_SLOTS
        FRAME_SLOTS = args.frame_slots
    return run(SUITE, CASES, args, QUICK if args.quick else FULL, TARGETS)


if __name__ == "__main__":
    sys.exit(main())
