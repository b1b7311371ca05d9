"""What the Python IPC benchmarks share: child processes started with the 'spawn'
context, a producer-to-consumer throughput run over any transport (an Endpoint), the
frame transports that more than one benchmark measures, and the report (a table of
medians and spreads over --repeat runs, JSON rows suite/method/case/value/unit).

Throughput runs start with a warm-up that both sides finish before a barrier; the
clock runs from the producer leaving the barrier to the consumer's last item, so the
pipeline is empty when it starts.  The clocks are time.perf_counter_ns
(CLOCK_MONOTONIC), comparable across processes.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import shared_memory
from multiprocessing.synchronize import Barrier

import numpy as np

import engine
from engine import Ring

CTX = mp.get_context("spawn")
WAIT_S = 30.0  # bound on every single wait in a child; the parent bounds whole runs

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Metric:
    method: str
    case: str
    value: float
    unit: str


@dataclass(frozen=True)
class Target:
    """A bound on the median of one (method, case): at least or below `value`."""

    value: float
    below: bool = False

    def verdict(self, median: float) -> str:
        met = median < self.value if self.below else median >= self.value
        return f"{'<' if self.below else '>='} {_num(self.value)} " + ("ok" if met else "MISSED")


Targets = dict[tuple[str, str], Target]


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


# ---- frames, copied in by the producer and out by the consumer ----------------


def frame_pattern(shape: Shape) -> np.ndarray:
    """A frame of `shape` whose bytes are not all alike."""
    return np.arange(np.prod(shape), dtype=np.uint32).astype(np.uint8).reshape(shape)


def copy_buffers(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """The frame a producer copies in, and the buffer a consumer copies out into."""
    return frame_pattern(shape), np.empty(shape, np.uint8)


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

    def __init__(self, name: str, shape: Shape) -> None:
        super().__init__(name)
        self.shape = shape
        self.frame, self.out = copy_buffers(shape)

    def put(self) -> int:
        seq = self.ring.claim(1, timeout=WAIT_S)
        np.copyto(self.ring.view(seq, shape=self.shape), self.frame)
        self.ring.publish(seq)
        return 1

    def get(self) -> int:
        seq, n = self.ring.take(1, timeout=WAIT_S)
        np.copyto(self.out, self.ring.view(seq, shape=self.shape))
        self.ring.done(1, seq, n)
        return n


class ShmFrames(Endpoint):
    """Frames through shared_memory slots; the producer gets a slot index from the
    `free` queue and puts it on `full`, the consumer the other way round."""

    def __init__(self, name: str, shape: Shape, slots: int, free: mp.Queue, full: mp.Queue):
        self.frame, self.out = copy_buffers(shape)
        self.shm = shared_memory.SharedMemory(name=name)
        self.slots = np.ndarray((slots, *shape), np.uint8, self.shm.buf)
        self.free, self.full = free, full

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
    anonymous memory, like /dev/shm) with no handoff at all: the ceiling of the others."""

    def __init__(self, shape: Shape, slots: int) -> None:
        self.frame, self.out = copy_buffers(shape)
        self.mem = mmap.mmap(-1, slots * self.frame.nbytes)
        self.slots = np.frombuffer(self.mem, np.uint8).reshape(slots, *shape)
        self.slots[:] = 1  # fault every page in before the clock
        self.i = 0

    def put(self) -> int:
        np.copyto(self.slots[self.i % len(self.slots)], self.frame)
        self.i += 1
        return 1

    def get(self) -> int:
        np.copyto(self.out, self.slots[self.i % len(self.slots)])
        self.i += 1
        return 1

    def close(self) -> None:
        del self.slots
        self.mem.close()


def frames_ring(shape: Shape, slots: int, frames: int) -> float:
    """Frames per second through a ring of `slots` slots, one ordered stage; every
    slot is touched twice by both sides before the clock, here and below."""
    nbytes = int(np.prod(shape))
    with Ring.create(slots=slots, slot_bytes=nbytes, stages=("ordered",)) as ring:
        args = (ring.name, shape)
        return throughput(RingFrames, args, args, 2 * slots, frames)


def frames_shm_queues(shape: Shape, slots: int, frames: int) -> float:
    """Frames per second through `slots` shared_memory slots and two index queues."""
    shm = shared_memory.SharedMemory(create=True, size=slots * int(np.prod(shape)))
    free, full = CTX.Queue(), CTX.Queue()
    try:
        for i in range(slots):
            free.put(i)
        args = (shm.name, shape, slots, free, full)
        return throughput(ShmFrames, args, args, 2 * slots, frames)
    finally:
        for q in (free, full):
            q.close()
            q.join_thread()
        shm.close()
        shm.unlink()


def frames_copy_only(shape: Shape, slots: int, frames: int) -> float:
    """Frames per second of the same copies with no handoff: the ceiling."""
    return throughput(CopyOnly, (shape, slots), (shape, slots), 2 * slots, frames)


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


Runs = dict[tuple[str, str], list[Metric]]


def report(runs: Runs, repeat: int, targets: Targets) -> None:
    head = ("case", "method", "median", f"min..max of {repeat}", "unit", "target")
    rows = []
    for (method, case), ms in runs.items():
        values = [m.value for m in ms]
        median = statistics.median(values)
        spread = f"{_num(min(values))}..{_num(max(values))}"
        target = targets.get((method, case))
        verdict = target.verdict(median) if target else ""
        rows.append((case, method, _num(median), spread, ms[0].unit, verdict))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    for i, row in enumerate((head, *rows)):
        cells = [
            c.rjust(w) if 2 <= j <= 3 else c.ljust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def json_rows(suite: str, runs: Runs, targets: Targets) -> list[dict]:
    rows = []
    for (method, case), ms in runs.items():
        median = statistics.median(m.value for m in ms)
        target = targets.get((method, case))
        rows.append(
            {
                "suite": suite,
                "method": method,
                "case": case,
                "value": median,
                "unit": ms[0].unit,
                "min": min(m.value for m in ms),
                "max": max(m.value for m in ms),
                "runs": len(ms),
                "target": target.verdict(median) if target else "",
            }
        )
    return rows


# ---- the command line ------------------------------------------------------------

Case = Callable[..., list[Metric]]


def _case_name(case: Case) -> str:
    return case.__name__.removeprefix("case_")


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def arg_parser(doc: str, cases: Sequence[Case]) -> argparse.ArgumentParser:
    """--quick, --repeat, --json and --only, for a script whose docstring is `doc`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run of every case")
    parser.add_argument("--repeat", type=_positive, default=3, help="runs of each case (default 3)")
    parser.add_argument("--json", metavar="PATH", help="write the result rows (medians) here")
    parser.add_argument(
        "--only",
        choices=[_case_name(c) for c in cases],
        action="append",
        help="run only this case (repeatable)",
    )
    return parser


def run(
    suite: str, cases: Sequence[Case], args: argparse.Namespace, sizes: object, targets: Targets
) -> int:
    """Run each case (called with `sizes`) --repeat times, then print the table and
    write the JSON rows; the exit code."""
    # SIGTERM unwinds like Ctrl-C, through every cleanup on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    for key, value in machine().items():
        print(f"{key:>7}: {value}")
    print(f"  sizes: {sizes}, {args.repeat} runs\n")
    runs: Runs = {}
    try:
        for i in range(args.repeat):
            for case in cases:
                if args.only and _case_name(case) not in args.only:
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
    report(runs, args.repeat, targets)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_rows(suite, runs, targets), f, indent=1)
            f.write("\n")
    return 0


def print_rows(rows: list[dict], method_width: int = 40, digits: int = 2) -> None:
    """The rows of a benchmark script (case, method, median, spread, unit, target),
    one a line, for a terminal; bench/run.py makes the README's table of them."""
    head = ("case", "method", "median", "unit", "min..max")
    print(
        f"{head[0]:<28} {head[1]:<{method_width}} {head[2]:>9} {head[3]:<6} {head[4]:>17}  target"
    )
    for r in rows:
        spread = f"{r['min']:.{digits}f}..{r['max']:.{digits}f}"
        print(
            f"{r['case'][:28]:<28} {r['method'][:method_width]:<{method_width}} "
            f"{r['value']:>9.{digits}f} {r['unit']:<6} {spread:>17}  {r['target']}"
        )


def save_rows(rows: list[dict], path: str | None) -> None:
    """The rows as JSON, where bench/run.py reads them (--json PATH)."""
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
