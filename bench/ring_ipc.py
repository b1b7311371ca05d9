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

Throughput runs start with a warm-up that both sides finish before a barrier; the
clock runs from the producer leaving the barrier to the consumer's last item, so the
pipeline is empty when it starts.  The clocks are time.perf_counter_ns
(CLOCK_MONOTONIC), comparable across processes.  Tables show the median and the
spread of the runs; the JSON rows (suite, method, case, value, unit) hold the medians.

    python bench/ring_ipc.py [--quick] [--repeat N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import mmap
import multiprocessing as mp
import os
import platform
import queue
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from multiprocessing import shared_memory
from multiprocessing.synchronize import Barrier

import numpy as np

import engine
from engine import Ring

SUITE = "ring_ipc"
CTX = mp.get_context("spawn")
WAIT_S = 30.0  # bound on every single wait in a child; the parent bounds whole runs

FRAME_SHAPE = (1080, 1920, 3)
FRAME_BYTES = 1080 * 1920 * 3  # 6,220,800
# Slots for the frame case, the same for the ring and the baseline; children read it
# from the environment (they re-import this module), --frame-slots sets it.
FRAME_SLOTS = int(os.environ.get("FE_BENCH_FRAME_SLOTS", "16"))
FRAME_WARMUP = 2 * FRAME_SLOTS  # every slot touched twice by both sides before the clock
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


@dataclass(frozen=True)
class Metric:
    method: str
    case: str
    value: float
    unit: str


# Medians are checked against these; (method, case) -> minimum.
TARGETS = {
    ("ring / baseline", "1080p frame, copy in + copy out"): 2.0,
    ("ring, batches of 64", "8-byte items"): 5_000_000,
}


# ---- child processes --------------------------------------------------------


class Children:
    """Processes started with the spawn context, each running a function that returns
    a dict; on any way out of the block, the ones still running are stopped."""

    def __init__(self) -> None:
        self._procs: dict[str, mp.process.BaseProcess] = {}
        self._results = CTX.Queue()

    def start(self, role: str, fn: Callable[..., dict], *args: object) -> None:
        proc = CTX.Process(target=_child_main, args=(self._results, role, fn, args), name=role)
        # Ctrl-C is the parent's to handle (it stops the children): SIGINT is blocked
        # while the child starts, which inherits the mask, and ignored in it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._procs[role] = proc

    def results(self, timeout: float) -> dict[str, dict]:
        """Every child's result by role; raises if one fails, dies or is late."""
        out: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while len(out) < len(self._procs):
            try:
                role, result = self._results.get(timeout=0.1)
            except queue.Empty:
                self._check_alive(out)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no result within {timeout:.0f} s") from None
                continue
            if "error" in result:
                raise RuntimeError(f"{role} process failed:\n{result['error']}")
            out[role] = result
        return out

    def _check_alive(self, done: dict[str, dict]) -> None:
        for role, proc in self._procs.items():
            if role not in done and proc.exitcode not in (None, 0):
                raise RuntimeError(f"{role} process died (exit code {proc.exitcode})")

    def __enter__(self) -> Children:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        procs = self._procs.values()
        if exc_type is None:  # they posted their results and are on their way out
            for proc in procs:
                proc.join(5)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._results.close()
        self._results.join_thread()


def _child_main(results: mp.Queue, role: str, fn: Callable[..., dict], args: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        result = fn(*args)
    except BaseException:
        result = {"error": traceback.format_exc()}
    results.put((role, result))


# ---- throughput: one transport, seen from each side --------------------------


class Endpoint:
    """One side of a transport, built in the child from picklable arguments.  put()
    sends and get() receives a unit of work (a frame, an item or a batch of items)
    and returns how many items it held.  The multiprocessing ones block without a
    timeout; the parent's watchdog (Children.results) bounds them."""

    def put(self) -> int:
        raise NotImplementedError

    def get(self) -> int:
        raise NotImplementedError

    def end(self) -> None:
        """Producer: there is no more."""

    def close(self) -> None:
        """Let go of what __init__ took."""


def _frame() -> np.ndarray:
    return np.arange(FRAME_BYTES, dtype=np.uint32).astype(np.uint8).reshape(FRAME_SHAPE)


class RingEndpoint(Endpoint):
    """Either end of a ring opened by name: the producer ends the stream."""

    def __init__(self, name: str) -> None:
        self.ring = Ring.open(name)

    def end(self) -> None:
        self.ring.end()

    def close(self) -> None:
        self.ring.close()


class RingFrames(RingEndpoint):
    """Frames through the ring, one per slot."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.frame = _frame()
        self.out = np.empty(FRAME_SHAPE, np.uint8)

    def put(self) -> int:
        seq = self.ring.claim(1, timeout=WAIT_S)
        np.copyto(self.ring.view(seq, shape=FRAME_SHAPE), self.frame)
        self.ring.publish(seq)
        return 1

    def get(self) -> int:
        seq, n = self.ring.take(1, timeout=WAIT_S)
        np.copyto(self.out, self.ring.view(seq, shape=FRAME_SHAPE))
        self.ring.done(1, seq, n)
        return n


class ShmFrames(Endpoint):
    """Frames through shared_memory slots; the producer gets a slot index from the
    `free` queue and puts it on `full`, the consumer the other way round."""

    def __init__(self, name: str, slots: int, free: mp.Queue, full: mp.Queue) -> None:
        self.shm = shared_memory.SharedMemory(name=name)
        self.slots = np.ndarray((slots, *FRAME_SHAPE), np.uint8, self.shm.buf)
        self.free, self.full = free, full
        self.frame = _frame()
        self.out = np.empty(FRAME_SHAPE, np.uint8)

    def put(self) -> int:
        i = self.free.get()
        np.copyto(self.slots[i], self.frame)
        self.full.put(i)
        return 1

    def get(self) -> int:
        i = self.full.get()
        np.copyto(self.out, self.slots[i])
        self.free.put(i)
        return 1

    def close(self) -> None:
        del self.slots  # no exported buffer may outlive the mapping
        self.shm.close()


class CopyOnly(Endpoint):
    """Both sides copy as the frame transports do, through slots of their own (shared
    anonymous memory, like /dev/shm) with no handoff at all: the ceiling of case 1."""

    def __init__(self) -> None:
        self.mem = mmap.mmap(-1, FRAME_SLOTS * FRAME_BYTES)
        self.slots = np.frombuffer(self.mem, np.uint8).reshape(FRAME_SLOTS, *FRAME_SHAPE)
        self.slots[:] = 1  # fault every page in before the clock
        self.frame = _frame()
        self.out = np.empty(FRAME_SHAPE, np.uint8)
        self.i = 0

    def put(self) -> int:
        np.copyto(self.slots[self.i % FRAME_SLOTS], self.frame)
        self.i += 1
        return 1

    def get(self) -> int:
        np.copyto(self.out, self.slots[self.i % FRAME_SLOTS])
        self.i += 1
        return 1

    def close(self) -> None:
        del self.slots
        self.mem.close()


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


def produce(
    endpoint: type[Endpoint], args: tuple, warmup: int, count: int, barrier: Barrier
) -> dict:
    """Producer process: warm up, meet the consumer, then send `count` items."""
    ep = endpoint(*args)
    try:
        sent = 0
        while sent < warmup:
            sent += ep.put()
        barrier.wait(WAIT_S)
        t0 = time.perf_counter_ns()
        while sent < warmup + count:
            sent += ep.put()
        t1 = time.perf_counter_ns()
        ep.end()
    finally:
        ep.close()
    return {"t0": t0, "t1": t1}


def consume(
    endpoint: type[Endpoint], args: tuple, warmup: int, count: int, barrier: Barrier
) -> dict:
    """Consumer process: drain the warm-up, meet the producer, then receive `count` items."""
    ep = endpoint(*args)
    try:
        got = 0
        while got < warmup:
            got += ep.get()
        barrier.wait(WAIT_S)
        while got < warmup + count:
            got += ep.get()
        t1 = time.perf_counter_ns()
    finally:
        ep.close()
    return {"t1": t1}


def throughput(
    endpoint: type[Endpoint], p_args: tuple, c_args: tuple, warmup: int, count: int
) -> float:
    """Items per second from a producer process to a consumer process, timed from the
    producer leaving the barrier to the later of the two sides' last item."""
    barrier = CTX.Barrier(2)
    with Children() as kids:
        kids.start("producer", produce, endpoint, p_args, warmup, count, barrier)
        kids.start("consumer", consume, endpoint, c_args, warmup, count, barrier)
        res = kids.results(timeout=300)
    t0, t1 = res["producer"]["t0"], max(res["producer"]["t1"], res["consumer"]["t1"])
    return count * 1e9 / (t1 - t0)


# ---- case 1: 1080p frames -----------------------------------------------------


def frames_ring(frames: int) -> float:
    with Ring.create(slots=FRAME_SLOTS, slot_bytes=FRAME_BYTES, stages=("ordered",)) as ring:
        return throughput(RingFrames, (ring.name,), (ring.name,), FRAME_WARMUP, frames)


def frames_shm_queues(frames: int) -> float:
    shm = shared_memory.SharedMemory(create=True, size=FRAME_SLOTS * FRAME_BYTES)
    free, full = CTX.Queue(), CTX.Queue()
    try:
        for i in range(FRAME_SLOTS):
            free.put(i)
        args = (shm.name, FRAME_SLOTS, free, full)
        return throughput(ShmFrames, args, args, FRAME_WARMUP, frames)
    finally:
        for q in (free, full):
            q.close()
            q.join_thread()
        shm.close()
        shm.unlink()


def frames_copy_only(frames: int) -> float:
    return throughput(CopyOnly, (), (), FRAME_WARMUP, frames)


def case_frames(sizes: Sizes) -> list[Metric]:
    case = "1080p frame, copy in + copy out"
    ring = frames_ring(sizes.frames)
    base = frames_shm_queues(sizes.frames)
    return [
        Metric(f"ring, {FRAME_SLOTS} slots", case, ring, "frames/s"),
        Metric(f"shared_memory + 2 Queues, {FRAME_SLOTS} slots", case, base, "frames/s"),
        Metric("ring / baseline", case, ring / base, "x"),
        Metric("copy only, no handoff (ceiling)", case, frames_copy_only(sizes.frames), "frames/s"),
    ]


# ---- case 2: 8-byte items ----------------------------------------------------


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


# ---- report ---------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "nproc": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "engine": engine.__version__,
        "kernel": platform.release(),
    }


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _verdict(method: str, case: str, median: float) -> str:
    target = TARGETS.get((method, case))
    if target is None:
        return ""
    return f">= {_num(target)} " + ("ok" if median >= target else "MISSED")


def report(runs: dict[tuple[str, str], list[Metric]], repeat: int) -> None:
    head = ("case", "method", "median", f"min..max of {repeat}", "unit", "target")
    rows = []
    for (method, case), ms in runs.items():
        values = [m.value for m in ms]
        median = statistics.median(values)
        spread = f"{_num(min(values))}..{_num(max(values))}"
        rows.append(
            (case, method, _num(median), spread, ms[0].unit, _verdict(method, case, median))
        )
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    for i, row in enumerate((head, *rows)):
        cells = [
            c.rjust(w) if 2 <= j <= 3 else c.ljust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def json_rows(runs: dict[tuple[str, str], list[Metric]]) -> list[dict]:
    return [
        {
            "suite": SUITE,
            "method": method,
            "case": case,
            "value": statistics.median(m.value for m in ms),
            "unit": ms[0].unit,
        }
        for (method, case), ms in runs.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, items and wakeups")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (default 3)")
    parser.add_argument("--json", metavar="PATH", help="write the result rows (medians) here")
    parser.add_argument("--frame-slots", type=int, help="slots for the frame case (default 16)")
    parser.add_argument(
        "--only",
        choices=[c.__name__[5:] for c in CASES],
        action="append",
        help="run only this case (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.frame_slots:
        global FRAME_SLOTS
        FRAME_SLOTS = args.frame_slots
        os.environ["FE_BENCH_FRAME_SLOTS"] = str(args.frame_slots)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    sizes = QUICK if args.quick else FULL
    # SIGTERM unwinds like Ctrl-C, through every cleanup on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    for key, value in machine().items():
        print(f"{key:>7}: {value}")
    print(f"  sizes: {sizes}, {args.repeat} runs\n")
    runs: dict[tuple[str, str], list[Metric]] = {}
    try:
        for i in range(args.repeat):
            for case in CASES:
                if args.only and case.__name__[5:] not in args.only:
                    continue
                t = time.monotonic()
                for m in case(sizes):
                    runs.setdefault((m.method, m.case), []).append(m)
                print(
                    f"run {i + 1}/{args.repeat}: {case.__name__} took {time.monotonic() - t:.1f} s",
                    file=sys.stderr,
                )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print()
    report(runs, args.repeat)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_rows(runs), f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
