"""`frame-engine batch`: many files, or time ranges of one, run as jobs, each a
complete ring pipeline (reader, analyzers, steps) on the machine that runs it.

The jobs run here, one after another or N at a time (`jobs`), or as Ray tasks on
a cluster (`ray`): Ray places them, retries those of a node that dies, and brings
their results back.  Results are merged per input in frame order, each frame
once, and written as each input completes: `DIR/<name>.jsonl` (the lines of
`play --results`), `DIR/<name>.stats.json`, and `DIR/summary.json`."""

from __future__ import annotations

import glob
import json
import math
import os
import pickle
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import FrameEngineError, RunError
from engine.options import VIDEO_EXTENSIONS

# What a folder is searched for (recursively): what OpenCV usually reads.
SEARCHED = (*VIDEO_EXTENSIONS, ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp")
STEPS_WARMUP_S = 2.0  # default run-in before a range's first frame, for ordered steps
POLL_S = 0.2  # how often the batch looks at its jobs and updates the bar
CANCEL_GRACE_S = 5.0  # jobs get this long to stop cleanly after Ctrl-C, then are killed
SUMMARY = "summary.json"


class BatchError(RunError):
    """A batch that cannot start: its inputs or options are wrong."""


# ---- what to run -------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One pipeline run: the frames [first, end) of an input (end None: to its end),
    read from frame `start` on (earlier frames warm the ordered steps up and are
    not kept)."""

    input: str
    part: int  # the range's number within its input (0 for a whole file)
    first: int
    end: int | None
    start: int
    fps: float | None  # the rate `start` is given at (None for a whole file)
    options: dict  # PlayOptions fields: analyze, then, workers, on_error, ...
    video: str | None = None  # with output_video: the extension of the video to write


@dataclass
class Input:
    """An input of the batch and the jobs that make up its results."""

    path: str
    name: str
    jobs: list[Job] = field(default_factory=list)
    declared: int | None = None  # frames, where the source says
    results: dict[int, dict] = field(default_factory=dict)  # part -> what its job returned
    rows: list = field(default_factory=list)  # merged, in frame order: (index, pts, status, ...)
    status: str = "pending"  # ok, incomplete, failed, skipped (complete before), interrupted
    reason: str | None = None
    frames: int = 0
    seconds: float = 0.0  # its jobs' time, added up


@dataclass(frozen=True)
class BatchItem:
    """A frame's result as the iterator form gives it; unpacks as
    `input, index, result`."""

    input: str
    index: int
    result: Any
    pts: float
    steps: dict | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.input, self.index, self.result))


def expand_inputs(inputs: list[str] | str) -> list[str]:
    """Files, folders (searched for videos) and globs, in order, each file once.
    BatchError naming an input that gives no file."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[str] = []
    for spec in map(str, inputs):
        if os.path.isdir(spec):
            files = sorted(
                os.path.join(top, name)
                for top, _, names in os.walk(spec)
                for name in names
                if os.path.splitext(name)[1].lower() in SEARCHED
            )
            if not files:
                raise BatchError(f"{spec}: no videos in that folder", exit_code=2)
        elif os.path.exists(spec):
            files = [spec]
        elif glob.has_magic(spec):
            files = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not files:
                raise BatchError(f"{spec}: no file matches", exit_code=2)
        else:
            raise BatchError(f"{spec}: no such file or folder", exit_code=2)
        found.extend(files)
    unique = list(dict.fromkeys(os.path.abspath(p) for p in found))
    if not unique:
        raise BatchError("no inputs", exit_code=2)
    return unique


def output_names(paths: list[str]) -> list[str]:
    """A file name for each input's results: its name without the extension, or
    with it, or its path below the inputs' common folder, whichever is unique."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    bases = [os.path.basename(p) for p in paths]
    common = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
    names = []
    for p, stem, base in zip(paths, stems, bases, strict=True):
        if stems.count(stem) == 1:
            names.append(stem)
        elif bases.count(base) == 1:
            names.append(base)
        else:
            names.append(os.path.relpath(p, common).replace(os.sep, "__"))
    return names


def plan_jobs(
    item: Input, options: dict, split: float | None, warmup: float, video: str | None
) -> None:
    """Cut an input into its jobs: one for the whole file, or one per `split`
    seconds, each read from `warmup` seconds before its range (the lookback frames
    before that are read by the pipeline itself, as context)."""
    if not split:
        item.jobs = [Job(item.path, 0, 0, None, 0, None, options, video)]
        return
    from engine.sources import probe

    info = probe(item.path)
    if not info.declared_frames:
        raise RunError(f"{item.path}: --split needs a file that says how many frames it has")
    item.declared = info.declared_frames
    per = max(1, round(split * info.fps))
    run_in = math.ceil(warmup * info.fps)
    cuts = list(range(0, info.declared_frames, per))
    item.jobs = [
        Job(
            item.path,
            part,
            first,
            None if part == len(cuts) - 1 else first + per,
            max(0, first - run_in),
            info.fps,
            options,
        )
        for part, first in enumerate(cuts)
    ]


# ---- one job, wherever it runs ----------------------------------------------------------


def run_job(job: Job, report: Callable[[int], None] | None = None) -> dict:
    """Run one job here: a complete pipeline over its frames.  Returns its rows
    (index, pts, status, result, steps) in frame order, its run's figures, where
    and how long it ran, and `error`, the one line saying why it failed (None if
    it did not).  `report(frames_so_far)` is called now and then."""
    from engine.api import frames, play
    from engine.segments import clean_stale

    clean_stale()  # what a job killed here before (a cancelled task, a dead node) left
    t0 = time.monotonic()
    out: dict[str, Any] = {
        "part": job.part,
        "rows": [],
        "stats": {},
        "node": _node(),
        "error": None,
        "started_at": None,  # the first frame the pipeline gave
        "ended_early": False,  # a range whose source ended before the range did
        "video": None,
    }
    opts = dict(job.options, untimed=True)
    if job.start:
        opts["start"] = job.start / job.fps  # start_frame = floor(start * fps): exact
    if job.end is not None:
        opts["frames"] = job.end - job.start
    rows = out["rows"]
    try:
        if job.video:
            _play_with_video(job, opts, out, play)
        else:
            last_report = 0.0
            for f in frames(job.input, stats=out["stats"], **opts):
                if out["started_at"] is None:
                    out["started_at"] = f.index
                if f.index < job.first:
                    continue  # run-in for the ordered steps
                if job.end is not None and f.index >= job.end:
                    break
                rows.append((f.index, f.pts, f.status, f.result, f.steps))
                if report is not None and time.monotonic() - last_report > POLL_S:
                    last_report = time.monotonic()
                    report(len(rows))
        _check_range(job, out)
    except FrameEngineError as e:
        out["error"] = str(e)
    except (OSError, ValueError, RuntimeError) as e:  # a file that breaks the pipeline
        out["error"] = f"{job.input}: {type(e).__name__}: {e}"
    out["seconds"] = time.monotonic() - t0
    if report is not None:
        report(len(rows))
    return out


def _play_with_video(job: Job, opts: dict, out: dict, play) -> None:
    """--output-video: the run through play(), which writes the video (and the
    results, read back here) into a folder of this machine; the video comes back
    as bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fe-batch-") as tmp:
        results, video = os.path.join(tmp, "results.jsonl"), os.path.join(tmp, "out" + job.video)
        out["stats"] = play(
            job.input, headless=True, quiet=True, results=results, output=video, **opts
        )
        with open(results) as f:
            for line in f:
                row = json.loads(line)
                ok = row["result"] is not None or "steps" not in row
                out["rows"].append(
                    (row["frame"], None, "ok" if ok else "skipped", row["result"], row.get("steps"))
                )
        out["started_at"] = out["rows"][0][0] if out["rows"] else None
        with open(video, "rb") as f:
            out["video"] = f.read()


def _check_range(job: Job, out: dict) -> None:
    """A range must start where it was asked to (a seek that lands elsewhere would
    shift every result) and say when its source ended before it did."""
    rows, started = out["rows"], out["started_at"]
    if job.end is None and not job.first:
        return  # a whole file: what it decodes
    if started is not None and started > job.first:
        raise RunError(
            f"{job.input}: the range from frame {job.first} started at frame {started} "
            "(the source does not seek exactly there)"
        )
    last = rows[-1][0] if rows else None
    if job.end is not None and (last is None or last < job.end - 1):
        out["ended_early"] = True


def _node() -> str:
    """Where a job runs: its Ray node's id in a task, else the host's name."""
    ray = sys.modules.get("ray")  # imported in a Ray task; never imported here for this
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()[:12]
    return socket.gethostname()


# ---- where the jobs run -------------------------------------------------------------


class LocalRunner:
    """Jobs on this machine: in this process one after another, or N at a time,
    each in a process of its own (so that Ctrl-C reaches every one of them)."""

    def __init__(self, jobs: int, workers: int | None) -> None:
        self.n = jobs
        # its workers and its reader: the machine's cores shared by the jobs at once
        self.workers = workers or max(1, len(os.sched_getaffinity(0)) // jobs - 1)
        self.queue: list[Job] = []
        self.running: dict[subprocess.Popen, tuple[Job, bytearray]] = {}
        self.progress: dict[tuple[str, int], int] = {}
        self.where = "here" if jobs == 1 else f"here, {jobs} at a time"
        self.tick: Callable[[], None] | None = None  # the bar, while a job runs in here

    def submit(self, jobs: list[Job]) -> None:
        self.queue.extend(jobs)

    def done(self, timeout: float) -> Iterator[tuple[Job, dict]]:
        """Jobs finished within `timeout` (with one job at a time: the next one)."""
        if self.n == 1:
            if self.queue:
                job = self.queue.pop(0)
                yield job, run_job(job, lambda n: self._report(job, n))
            return
        while self.queue and len(self.running) < self.n:
            self._start(self.queue.pop(0))
        if not self.running:
            return
        pipes = {p.stdout: p for p in self.running}
        ready, _, _ = select.select(list(pipes), [], [], timeout)
        for pipe in ready:
            p = pipes[pipe]
            job, buf = self.running[p]
            chunk = os.read(pipe.fileno(), 1 << 20)
            if chunk:
                buf.extend(chunk)
                self._progress_lines(job, buf)
                continue
            p.wait()
            del self.running[p]
            pipe.close()
            yield job, self._result(job, p, buf)

    def _report(self, job: Job, n: int) -> None:
        self.progress[(job.input, job.part)] = n
        if self.tick is not None:
            self.tick()

    def _start(self, job: Job) -> None:
        boot = (
            "import sys, pickle\n"
            "sys.path[:] = pickle.load(sys.stdin.buffer)\n"
            "from engine.batchjobs import _job_main\n"
            "_job_main()\n"
        )
        p = subprocess.Popen(
            [sys.executable, "-c", boot], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        p.stdin.write(pickle.dumps(list(sys.path)) + pickle.dumps(job))
        p.stdin.close()
        self.running[p] = (job, bytearray())

    def _progress_lines(self, job: Job, buf: bytearray) -> None:
        # "p N\n" lines, then "r\n" and the pickled result
        while buf.startswith(b"p ") and b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            self.progress[(job.input, job.part)] = int(line[2:])
            buf[:] = rest

    def _result(self, job: Job, p: subprocess.Popen, buf: bytearray) -> dict:
        self._progress_lines(job, buf)
        if buf.startswith(b"r\n"):
            return pickle.loads(bytes(buf[2:]))
        why = f"the job's process ended ({_exit_text(p.returncode)}) without a result"
        return {"part": job.part, "rows": [], "stats": {}, "node": _node(), "error": why}

    def frames_done(self) -> int:
        return sum(self.progress.values())

    def forget(self, job: Job) -> None:
        self.progress.pop((job.input, job.part), None)

    def cancel(self) -> None:
        """Ctrl-C: the job processes got it too (they stop their runs cleanly); wait
        for them a while, then kill those still there."""
        self.queue.clear()
        for p in self.running:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + CANCEL_GRACE_S
        for p in self.running:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.running.clear()

    def close(self) -> None:
        pass


def _job_main() -> None:
    """A job process of the local runner: run the job, progress and the result on
    stdout (the run's own output goes to stderr)."""
    from engine.procs import die_with_parent

    die_with_parent(os.getppid())
    signal.signal(signal.SIGINT, _interrupt_once)
    job = pickle.load(sys.stdin.buffer)
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the result

    def report(n: int) -> None:
        channel.write(b"p %d\n" % n)
        channel.flush()

    try:
        result = run_job(job, report)
    except KeyboardInterrupt:
        sys.exit(130)
    channel.write(b"r\n" + pickle.dumps(result))
    channel.close()


def _interrupt_once(signum, frame) -> None:
    """Ctrl-C stops the job's run; a second one (the terminal's, then the batch's)
    must not cut its clean-up short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _exit_text(code: int | None) -> str:
    from engine.supervisor import exit_text

    return exit_text(code)


class RayRunner:
    """Jobs as Ray tasks, each asking for the CPUs its pipeline uses."""

    def __init__(self, address: str, workers: int | None, modules: dict[str, bytes]) -> None:
        import ray

        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            try:
                # "local": a private instance; ray.init() without an address would
                # join any cluster it finds
                ray.init(
                    address=address,
                    include_dashboard=False,
                    logging_level="WARNING",
                    configure_logging=True,
                )
            except ConnectionError as e:
                raise BatchError(f"--ray {address}: no Ray cluster there ({e})") from None
            self.started = True
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.node_cpus = max(int(n.get("Resources", {}).get("CPU", 0)) for n in nodes)
        if self.node_cpus < 1:
            raise BatchError("the Ray cluster has no CPUs to run on")
        # its workers and its reader; a node of one CPU runs one worker beside it
        self.workers = workers or max(1, self.node_cpus - 1)
        if self.workers > 1 and self.workers + 1 > self.node_cpus:
            raise BatchError(
                f"--workers {self.workers}: a task would need {self.workers + 1} CPUs, and "
                f"the largest node of the cluster has {self.node_cpus}",
                exit_code=2,
            )
        self.cpus = min(self.workers + 1, self.node_cpus)
        self.where = f"on Ray ({len(nodes)} node(s), {self.cpus} CPU(s) a task)"
        self.modules = ray.put(modules)
        self.task = ray.remote(_ray_task).options(
            num_cpus=self.cpus, max_retries=3, retry_exceptions=False
        )
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        self.counter = (
            ray.remote(Progress)
            .options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, False))
            .remote()
        )
        self.pending: dict[Any, Job] = {}
        self.frames = 0
        self.last_poll = 0.0

    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.pending[self.task.remote(job, self.counter, self.modules)] = job

    def done(self, timeout: float) -> Iterator[tuple[Job, dict]]:
        if not self.pending:
            return
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        if ready:  # and any others finished meanwhile
            ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        for ref in ready:
            job = self.pending.pop(ref)
            try:
                yield job, self.ray.get(ref)
            except self.ray.exceptions.RayError as e:  # its retries ran out, or a bug
                first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                why = f"{job.input}: the task failed ({type(e).__name__}: {first})"
                yield job, {"part": job.part, "rows": [], "stats": {}, "node": "", "error": why}

    def frames_done(self) -> int:
        if time.monotonic() - self.last_poll > POLL_S:
            self.last_poll = time.monotonic()
            try:
                self.frames = self.ray.get(self.counter.total.remote(), timeout=5)
            except self.ray.exceptions.RayError:
                pass  # the bar is late, nothing more
        return self.frames

    def forget(self, job: Job) -> None:
        # its frames are counted as done now: ask the actor again (it takes one
        # caller's calls in order, so it has forgotten the job by then)
        self.counter.forget.remote((job.input, job.part))
        self.last_poll = 0.0

    def cancel(self) -> None:
        """Ctrl-C: each task gets a KeyboardInterrupt (its run stops cleanly), then
        those still there are killed (their segments are cleaned by the next job
        on that node)."""
        refs = list(self.pending)
        for ref in refs:
            self.ray.cancel(ref)
        if refs:
            _, left = self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
            for ref in left:
                self.ray.cancel(ref, force=True)
        self.pending.clear()

    def close(self) -> None:
        try:
            self.ray.kill(self.counter)  # a process on the driver's node
        except Exception:  # gone with its node, or with the cluster
            pass
        if self.started:
            self.ray.shutdown()


class Progress:
    """A Ray actor on the driver's node: how many frames each job has done.  A job
    retried elsewhere reports again from zero, so no frame is counted twice."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}

    def set(self, key: tuple[str, int], n: int) -> None:
        self.counts[key] = n

    def forget(self, key: tuple[str, int]) -> None:
        self.counts.pop(key, None)

    def total(self) -> int:
        return sum(self.counts.values())


def _ray_task(job: Job, counter, modules: dict[str, bytes]) -> dict:
    _install_modules(modules)
    key = (job.input, job.part)

    def report(n: int) -> None:
        try:
            counter.set.remote(key, n)
        except Exception:  # the bar is late, nothing more
            pass

    return run_job(job, report)


def user_modules(specs: list) -> dict[str, bytes]:
    """The source of the user's `module:function` analyses that a cluster's nodes
    need (those not installed: found outside site-packages), by path relative to
    the folder they import from."""
    import importlib.util

    found: dict[str, bytes] = {}
    for spec in specs:
        if not isinstance(spec, str) or ":" not in spec:
            continue
        module = spec.split(":", 1)[0].split(".")[0]
        try:
            where = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        origin = where.origin if where else None
        if not origin or "site-packages" in origin or module == "engine":
            continue
        if os.path.basename(origin) == "__init__.py":  # a package: all of its modules
            top = os.path.dirname(origin)
            files = [
                os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs if f.endswith(".py")
            ]
            base = os.path.dirname(top)
        else:
            files, base = [origin], os.path.dirname(origin)
        for path in files:
            with open(path, "rb") as f:
                found[os.path.relpath(path, base)] = f.read()
    return found


def _install_modules(modules: dict[str, bytes]) -> None:
    """On a node: the user's modules in a folder first on sys.path (the analyzer
    processes take this process's path).  A task's runtime_env cannot carry local
    files, and a driver that made its own ray.init() could not give a job's."""
    if not modules:
        return
    import hashlib
    import tempfile

    digest = hashlib.sha256(pickle.dumps(sorted(modules.items()))).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), f"fe-batch-modules-{digest}")
    if not os.path.isdir(folder):
        staging = tempfile.mkdtemp(prefix="fe-batch-modules-")
        for rel, data in modules.items():
            os.makedirs(os.path.join(staging, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(staging, rel), "wb") as f:
                f.write(data)
        try:
            os.rename(staging, folder)
        except OSError:  # another task made it first
            shutil.rmtree(staging, ignore_errors=True)
    sys.path[:] = [folder] + [p for p in sys.path if "fe-batch-modules-" not in p]


def pick_runner(ray: str, jobs: int, workers: int | None, modules: dict[str, bytes]):
    """`ray`: off (here), local (a private Ray instance), auto (a running cluster
    if one is found, else here), or a cluster's address."""
    if ray == "local" and "ray" not in sys.modules:
        # a private instance listens on the loopback only (read as Ray is imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if ray != "off":
        try:
            import ray as _ray  # noqa: F401
        except ImportError:
            if ray != "auto":
                raise BatchError(
                    f'--ray {ray}: Ray is not installed (pip install "frame-engine[ray]")',
                    exit_code=2,
                ) from None
            ray = "off"
    if ray == "auto":
        import ray as _ray

        if not _ray.is_initialized():
            try:
                _ray.init(
                    address="auto",
                    include_dashboard=False,
                    logging_level="WARNING",
                )
            except ConnectionError:
                ray = "off"  # no cluster running: here
        if ray == "auto":
            runner = RayRunner("auto", workers, modules)
            runner.started = True
            return runner
    if ray == "off":
        return LocalRunner(jobs, workers)
    return RayRunner(ray, workers, modules)


# ---- the batch -------------------------------------------------------------------


@dataclass
class BatchConfig:
    inputs: list[str]
    analyze: Any = "none"
    then: Any = ()
    out: str | None = None
    ray: str = "auto"
    jobs: int = 1
    workers: int | None = None
    split: float | None = None
    warmup: float | None = None
    resume: bool = False
    output_video: str | None = None  # an extension: ".mp4"
    on_error: str = "stop"
    progress: bool = True
    options: dict = field(default_factory=dict)  # more PlayOptions: batch, max_memory, ...
    summary: dict = field(default_factory=dict)  # when the batch is over

    def check(self) -> None:
        if self.split is not None and not (math.isfinite(self.split) and self.split > 0):
            raise BatchError(f"--split {self.split}: must be more than 0 seconds", exit_code=2)
        if self.warmup is not None and not (math.isfinite(self.warmup) and self.warmup >= 0):
            raise BatchError(f"--warmup {self.warmup}: must be 0 or more seconds", exit_code=2)
        if not isinstance(self.jobs, int) or not 1 <= self.jobs <= 256:
            raise BatchError(f"--jobs {self.jobs}: must be from 1 to 256", exit_code=2)
        if self.ray not in ("off", "auto", "local") and ":" not in self.ray:
            raise BatchError(
                f"--ray {self.ray}: give off, auto, local or a cluster's address (HOST:PORT)",
                exit_code=2,
            )
        if self.output_video is not None:
            if self.output_video not in VIDEO_EXTENSIONS:
                raise BatchError(
                    f"--output-video {self.output_video}: one of {', '.join(VIDEO_EXTENSIONS)}",
                    exit_code=2,
                )
            if self.split:
                raise BatchError(
                    "--output-video: not with --split (the ranges' videos are not joined)",
                    exit_code=2,
                )
        if self.resume and not self.out:
            raise BatchError("--resume: needs --out", exit_code=2)


def run_batch(cfg: BatchConfig) -> Iterator[Input]:
    """Run a batch; yield each input as it completes (or fails), with its merged
    rows in `input.rows`; at the end the summary is in `cfg.summary`.  Closing the
    generator early (or Ctrl-C) cancels the jobs still running."""
    from engine.analysis import resolve
    from engine.options import PlayOptions

    cfg.check()
    paths = expand_inputs(cfg.inputs)
    then = [cfg.then] if isinstance(cfg.then, str) or callable(cfg.then) else list(cfg.then)
    # the options each run gets, checked once here (a bad one is one line, not N)
    PlayOptions(analyze=cfg.analyze, then=then, on_error=cfg.on_error, **cfg.options).check()
    for spec in [cfg.analyze, *then]:
        resolve(spec)  # a name that is no analysis: one line now, not one per input
    if cfg.out:
        try:
            os.makedirs(cfg.out, exist_ok=True)
        except OSError as e:
            raise BatchError(f"--out {cfg.out}: {e.strerror}", exit_code=2) from None
    warmup = cfg.warmup if cfg.warmup is not None else (STEPS_WARMUP_S if then else 0.0)
    runner = pick_runner(cfg.ray, cfg.jobs, cfg.workers, user_modules([cfg.analyze, *then]))
    items = [Input(p, n) for p, n in zip(paths, output_names(paths), strict=True)]
    signature = {
        "analyze": cfg.analyze if isinstance(cfg.analyze, str) else repr(cfg.analyze),
        "then": [s if isinstance(s, str) else repr(s) for s in then],
        "split": cfg.split,
        "warmup": warmup if cfg.split else None,
        "on_error": cfg.on_error,
    }
    options = dict(
        cfg.options, analyze=cfg.analyze, then=then, on_error=cfg.on_error, workers=runner.workers
    )
    state = _BatchState(cfg, items, runner, signature)
    try:
        for item in items:
            if cfg.resume and _complete(cfg.out, item, signature):
                item.status = "skipped"
                state.finished(item, note="complete before: skipped")
                continue
            try:
                plan_jobs(item, options, cfg.split, warmup, cfg.output_video)
            except FrameEngineError as e:
                item.status, item.reason = "failed", str(e)
                state.finished(item)
                yield item
                continue
            runner.submit(item.jobs)
        state.open_bar()
        while state.left():
            for job, result in runner.done(POLL_S):
                item = state.by_path[job.input]
                item.results[job.part] = result
                runner.forget(job)
                state.bar_base += len(result["rows"])
                if len(item.results) == len(item.jobs):
                    _merge(item)
                    state.finished(item)
                    yield item
            state.tick()
    except BaseException:
        runner.cancel()
        for item in items:
            if item.status == "pending":
                item.status, item.reason = "interrupted", "the batch was stopped"
        state.write_summary("interrupted")
        raise
    finally:
        state.close_bar()
        runner.close()
    state.write_summary("done")
    cfg.summary = state.summary


class _BatchState:
    """What the batch has done so far: the bar, the per-input lines, the files."""

    def __init__(self, cfg: BatchConfig, items: list[Input], runner, signature: dict) -> None:
        self.cfg, self.items, self.runner, self.signature = cfg, items, runner, signature
        self.by_path = {item.path: item for item in items}
        self.bar = None
        self.bar_base = 0  # frames of jobs finished
        self.t0 = time.monotonic()
        self.summary: dict = {}

    def left(self) -> bool:
        return any(item.status == "pending" for item in self.items)

    def open_bar(self) -> None:
        # a bar on a terminal; a log (stderr not a terminal) gets the per-input lines
        if not self.cfg.progress or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        if isinstance(self.runner, LocalRunner):
            self.runner.tick = self.tick
        total = sum(_frame_count(item) or 0 for item in self.items if item.status == "pending")
        self.bar = tqdm(
            total=total or None,
            unit="frame",
            desc=f"batch ({self.runner.where})",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.n = self.bar_base + self.runner.frames_done()
            self.bar.refresh()

    def close_bar(self) -> None:
        if self.bar is not None:
            self.tick()
            self.bar.close()
            self.bar = None

    def say(self, line: str) -> None:
        if not self.cfg.progress:
            return
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def finished(self, item: Input, note: str | None = None) -> None:
        item.seconds = sum(r.get("seconds", 0.0) for r in item.results.values())
        if self.cfg.out and item.status in ("ok", "incomplete"):
            _write_outputs(self.cfg, item, self.signature)
        if note is None:
            if item.status == "failed":
                note = f"failed: {item.reason}"
            else:
                fps = item.frames / item.seconds if item.seconds else 0.0
                nodes = ", ".join(_nodes(item))
                note = f"{item.frames} frames in {item.seconds:.1f} s ({fps:.0f} fps) on {nodes}"
                if item.status == "incomplete":
                    note += f"; incomplete: {item.reason}"
        self.say(f"frame-engine: {item.name}: {note}")
        self.write_summary("running")

    def write_summary(self, state: str) -> None:
        inputs = []
        for item in self.items:
            entry = {
                "input": item.path,
                "name": item.name,
                "status": item.status,
                "frames": item.frames,
                "seconds": round(item.seconds, 3),
                "nodes": _nodes(item),
            }
            if item.reason:
                entry["reason"] = item.reason
            inputs.append(entry)
        counts = {s: sum(i["status"] == s for i in inputs) for s in STATUSES}
        self.summary = {
            "state": state,
            "where": self.runner.where,
            "workers": self.runner.workers,
            **self.signature,
            "inputs": inputs,
            "counts": counts,
            "frames": sum(i["frames"] for i in inputs),
            "seconds": round(time.monotonic() - self.t0, 3),
        }
        if self.cfg.out:
            _write_json(os.path.join(self.cfg.out, SUMMARY), self.summary)


STATUSES = ("ok", "incomplete", "failed", "skipped", "interrupted", "pending")


def _frame_count(item: Input) -> int | None:
    if item.declared is not None:
        return item.declared
    try:
        import cv2

        cap = cv2.VideoCapture(item.path)
        try:
            n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        finally:
            cap.release()
        return int(n) if math.isfinite(n) and n > 0 else None
    except Exception:
        return None


def _nodes(item: Input) -> list[str]:
    return sorted({r["node"] for r in item.results.values() if r.get("node")})


def _merge(item: Input) -> None:
    """Join the ranges' rows in frame order, each frame once; decide the status."""
    parts = [item.results[p] for p in sorted(item.results)]
    errors = [(i, r["error"]) for i, r in enumerate(parts) if r["error"]]
    ended = next((i for i, r in enumerate(parts) if r.get("ended_early")), None)
    # ranges after one whose source ended: past the decodable end
    past = [i for i in range(len(parts)) if ended is not None and i > ended]
    real = [(i, e) for i, e in errors if i not in past]
    if real:
        item.status, item.reason = "failed", real[0][1]
        return
    rows: list = []
    for i, part in enumerate(parts):
        if i in past:
            if part["rows"]:
                item.status = "failed"
                item.reason = (
                    f"{item.path}: frames missing before frame {part['rows'][0][0]} "
                    "(the source skipped frames at a cut)"
                )
                return
            continue
        if rows and part["rows"] and part["rows"][0][0] <= rows[-1][0]:
            item.status = "failed"
            item.reason = f"{item.path}: frame {part['rows'][0][0]} twice at a cut"
            return
        rows.extend(part["rows"])
    item.rows = rows
    item.frames = len(rows)
    item.status = "ok"
    decoded = sum(p["stats"].get("decoded_frames") or 0 for p in parts)
    declared = parts[0]["stats"].get("declared_frames") if parts else None
    if past or ended is not None and ended < len(parts) - 1:
        last = rows[-1][0] + 1 if rows else 0
        item.status = "incomplete"
        item.reason = (
            f"the file ends at frame {last}, it says it has {item.declared}: "
            f"{len(past)} range(s) past the decodable end have no frame"
        )
    elif len(parts) == 1 and declared and decoded < declared:
        item.status = "incomplete"
        item.reason = (
            f"decoded {decoded} of {declared} declared frames (the file ends early or is damaged)"
        )


def result_line(row: tuple) -> str | None:
    """A frame's line in <name>.jsonl, as `play --results` writes it: frames
    analyzed, and those the ordered steps saw."""
    index, _pts, status, result, steps = row
    if status != "ok" and steps is None:
        return None
    line: dict = {"frame": index, "result": result if status == "ok" else None}
    if steps is not None:
        line["steps"] = steps
    return json.dumps(line, separators=(",", ":"))


def _write_outputs(cfg: BatchConfig, item: Input, signature: dict) -> None:
    """<name>.jsonl, the video, then <name>.stats.json last: a stats file says the
    input's results are complete (what --resume looks for)."""
    base = os.path.join(cfg.out, item.name)
    tmp = base + ".jsonl.part"
    with open(tmp, "w") as f:
        for row in item.rows:
            line = result_line(row)
            if line is not None:
                f.write(line + "\n")
    os.replace(tmp, base + ".jsonl")
    videos = [r.get("video") for r in item.results.values() if r.get("video")]
    if videos:
        with open(base + cfg.output_video + ".part", "wb") as f:
            f.write(videos[0])
        os.replace(base + cfg.output_video + ".part", base + cfg.output_video)
    stats = {
        "input": item.path,
        "name": item.name,
        "status": item.status,
        "reason": item.reason,
        "frames": item.frames,
        "seconds": round(item.seconds, 3),
        "nodes": _nodes(item),
        "batch": signature,
        "runs": [
            dict(
                {k: v for k, v in asdict(job).items() if k in ("part", "first", "end", "start")},
                node=r.get("node"),
                seconds=round(r.get("seconds", 0.0), 3),
                stats=r.get("stats"),
            )
            for job, r in ((job, item.results[job.part]) for job in item.jobs)
        ],
    }
    _write_json(base + ".stats.json", stats)


def _write_json(path: str, data: dict) -> None:
    with open(path + ".part", "w") as f:
        json.dump(data, f, indent=1, default=str)
        f.write("\n")
    os.replace(path + ".part", path)


def _complete(out: str, item: Input, signature: dict) -> bool:
    """--resume: this input's results are in `out`, made with the same analysis."""
    base = os.path.join(out, item.name)
    try:
        with open(base + ".stats.json") as f:
            stats = json.load(f)
    except (OSError, ValueError):
        return False
    return (
        stats.get("input") == item.path
        and stats.get("status") in ("ok", "incomplete")
        and stats.get("batch") == signature
        and os.path.exists(base + ".jsonl")
    )


# ---- the Python API ---------------------------------------------------------------


def _config(inputs, out, kw) -> BatchConfig:
    names = set(BatchConfig.__dataclass_fields__) - {"inputs", "out", "options", "summary"}
    own = {k: kw.pop(k) for k in list(kw) if k in names}
    return BatchConfig(inputs=inputs, out=out, options=kw, **own)


def batch(
    inputs: list[str] | str,
    *,
    analyze: Any = "none",
    then: Any = (),
    out: str | None = None,
    ray: str = "auto",
    split: float | None = None,
    jobs: int = 1,
    progress: bool = False,
    **options,
) -> dict:
    """Run `analyze` (and the ordered steps `then`) over every frame of each input:
    files, folders or globs; `split` seconds cuts each into time ranges run as
    separate jobs.  `ray`: auto, local, a cluster's address, or off (here, `jobs`
    at a time).  With `out`, writes each input's results there as it completes.
    Returns the summary: per input its status, frames, time and node."""
    cfg = _config(
        inputs,
        out,
        dict(
            options, analyze=analyze, then=then, ray=ray, split=split, jobs=jobs, progress=progress
        ),
    )
    for _ in run_batch(cfg):
        pass
    return cfg.summary


def batch_results(
    inputs: list[str] | str,
    *,
    analyze: Any = "none",
    then: Any = (),
    ray: str = "auto",
    split: float | None = None,
    jobs: int = 1,
    out: str | None = None,
    progress: bool = False,
    **options,
) -> Iterator[BatchItem]:
    """`batch()` as an iterator: each input's frames as `BatchItem`s (which unpack
    as `input, index, result`), in frame order, input after input as they
    complete.  An input that fails raises RunError naming it, after the inputs
    before it; leaving the loop stops the batch."""
    cfg = _config(
        inputs,
        out,
        dict(
            options, analyze=analyze, then=then, ray=ray, split=split, jobs=jobs, progress=progress
        ),
    )
    for item in run_batch(cfg):
        if item.status == "failed":
            raise RunError(item.reason or f"{item.path}: failed")
        for index, pts, status, result, steps in item.rows:
            yield BatchItem(item.path, index, result if status == "ok" else None, pts, steps)
