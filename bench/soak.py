"""Kill trials: the player under SIGKILL, SIGSTOP, SIGTERM and SIGINT, at random
moments, and what is left afterwards.

Each trial starts `frame-engine play` on a generated clip (640x480 at 60 fps, 3 s;
headless, timed, `flow`, 2 workers, 8 frames of read-ahead, so that the reader is
still decoding while the clip plays) in a session of its own, waits until the
reader and both analyzers run, then at a random moment within the playback does
one thing to one process:

    kill-reader     SIGKILL the reader (fe-reader)
    kill-analyzer   SIGKILL an analyzer (fe-analyze-N)
    kill-parent     SIGKILL the player itself, then run `frame-engine clean`
    stop-analyzer   SIGSTOP an analyzer for 2 s, then SIGCONT it
    kill-steps      SIGKILL the ordered steps' process (fe-steps; the run has
                    `--then track`): their state cannot be rebuilt, so the run
                    stops with status 1 and one line naming them
    term            SIGTERM the player
    int             SIGINT the player (Ctrl-C)
    kill-server     the run plays a live stream from a local server instead of
                    the clip (tests/streams.py: udp, http, tcp, rtsp or mjpeg, by the
                    seed; 15 s of the demo at 30 fps); SIGKILL the server and
                    restart it on the same port 1.5 to 3 s later: the player
                    reconnects and plays on to the end of the stream, then
                    gives the stream up after --reconnect-for 5 (issue 11)

and checks, after the player is gone:
  - hang: the player exited within the time bound;
  - leak: no process of the run's session is left (within 5 s of the player's
    exit; children die with their parent), and no /dev/shm segment of the run;
  - where the player lived: it exited 0 with every frame of the clip accounted
    for (read = shown + dropped late, read = the clip's frames, failed counted
    among them; a killed reader is restarted after the last frame it published),
    or, for SIGTERM and SIGINT, exited 143 or 130 with one clear line; never a
    traceback: else "lost" or "bad-exit";
  - kill-server: it exited 0 (or 1, "lost", once the stream ended), counted a
    reconnect, and played on to the stream's
    end (its last analyzed frame, by the barcode, within the last second of the
    stream), frames in order; read = shown + dropped (each reason) + discarded.

    python bench/soak.py --trials 200 [--seed N] [--kinds kill-analyzer,term]

prints one line per trial and a summary (trials run, hangs, leaks, lost frames),
and exits 1 if any trial failed.  tests/test_faults.py runs each kind once.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

# Started with SIGINT ignored (in the background of a non-interactive shell), the
# players would inherit that, and the "int" trials would test nothing.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

KINDS = (
    "kill-reader",
    "kill-analyzer",
    "kill-parent",
    "stop-analyzer",
    "term",
    "int",
    "kill-steps",
    "kill-server",
)
# Kinds run only when asked for (--kinds); each joins KINDS (and so the trials of
# tests/test_faults.py) once what it needs has landed.
OPT_IN_KINDS: tuple[str, ...] = ()
STREAM_KINDS = ("udp", "http", "tcp", "rtsp", "mjpeg")  # tests/streams.py
STREAM_FPS = 30.0
STREAM_FRAMES = 450  # 15 s: the player takes 2 to 3 s to start and open it (more, loaded)
STREAM_BUSY_S = 0.005  # step_funcs:busy_live, which also reads each frame's barcode
# The server is down longer than the player's --source-timeout (SOURCE_TIMEOUT_S),
# so that a UDP stream, which nothing says has stopped, is reconnected too (a UDP
# capture open through a short outage simply carries on).
SOURCE_TIMEOUT_S = 1.0
RESTART_AFTER_S = (1.5, 3.0)
CLIP_FPS = 60
CLIP_FRAMES = 180  # 3 s
CLIP_SIZE = (640, 480)
ANALYSIS = "flow"  # busy enough that a worker often holds a frame when it is hit
BUFFER = 8  # frames of read-ahead
HANG_S = 30.0  # the player must be gone this long after the action
CHILDREN_GONE_S = 5.0
STOP_S = 2.0
# else 0: the run finishes (kill-steps: a signal after the end finds a finished run)
EXPECTED_EXIT = {"term": (143,), "int": (130,), "kill-steps": (1,)}


@dataclass
class Trial:
    kind: str
    seed: int
    at_s: float = 0.0  # when the action happened, after the children were up
    target: str = ""  # the process acted on
    returncode: int | None = None
    problems: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    stderr: str = ""
    server: object = None  # kill-server: the stream server (tests/streams.py)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        s = self.stats
        counts = (
            f"read {s.get('frames_read')} shown {s.get('frames_shown')} "
            f"late {s.get('dropped_late')} failed {s.get('failed')}"
            if s
            else "no stats"
        )
        verdict = "ok" if self.ok else "FAIL: " + "; ".join(self.problems)
        return (
            f"{self.kind:<14} seed {self.seed:<6} at {self.at_s:4.2f} s {self.target:<13} "
            f"exit {self.returncode!s:<4} {counts}: {verdict}"
        )


def frame_engine() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "frame-engine")
    return here if os.access(here, os.X_OK) else shutil.which("frame-engine") or "frame-engine"


def frame_engine_clean() -> None:
    subprocess.run([frame_engine(), "clean", "--quiet"], check=False, timeout=30)


def make_clip(folder: str) -> str:
    from engine.sources import write_demo_clip

    path = os.path.join(folder, "soak.avi")
    write_demo_clip(path, frames=CLIP_FRAMES, size=CLIP_SIZE, fps=CLIP_FPS, fourcc="MJPG")
    return path


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def session_pids(sid: int) -> list[int]:
    """Live processes of session `sid` (zombies are dead already)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) and int(st[3]) == sid and st[0] != "Z":
            pids.append(int(entry))
    return pids


def children(pid: int) -> dict[str, int]:
    """The player's children by name (fe-reader, fe-analyze-1, ...)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) and int(st[1]) == pid:
            try:
                with open(f"/proc/{entry}/comm") as f:
                    found[f.read().strip()] = int(entry)
            except OSError:
                continue
    return found


def segments(pid: int) -> list[str]:
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"fe-{pid}-"))


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _kill_session(sid: int) -> None:
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stream_server(rng: random.Random):
    """A started stream server of tests/streams.py, of a kind drawn by `rng`."""
    tests = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from streams import StreamServer

    return StreamServer(rng.choice(STREAM_KINDS), fps=STREAM_FPS, frames=STREAM_FRAMES).start()


def play_options() -> list[str]:
    """For kill-server: the reconnect options of issue 11, where the player has them."""
    text = subprocess.run(
        [frame_engine(), "play", "--help"], capture_output=True, text=True, check=False
    ).stdout
    extra = ["--reconnect-for", "5"] if "--reconnect-for" in text else []
    if "--source-timeout" in text:
        extra += ["--source-timeout", str(SOURCE_TIMEOUT_S)]
    return extra


def run_trial(kind: str, seed: int, clip: str, folder: str) -> Trial:
    rng = random.Random(seed)
    t = Trial(kind, seed)
    stats_path = os.path.join(folder, f"stats-{seed}.json")
    err_path = os.path.join(folder, f"stderr-{seed}.txt")
    results_path = os.path.join(folder, f"results-{seed}.jsonl")
    env = dict(os.environ, SDL_VIDEODRIVER="dummy")
    server = None
    if kind == "kill-server":
        server = stream_server(rng)
        t.server = server
        bench = os.path.dirname(os.path.abspath(__file__))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (bench, env.get("PYTHONPATH")) if p)
        env["FE_BENCH_BUSY_S"] = repr(STREAM_BUSY_S)
        source = [server.url, "--live", "--analyze", "step_funcs:busy_live"]
        source += ["--results", results_path, *play_options()]
    else:
        source = [clip, "--analyze", ANALYSIS]
        # a short read-ahead keeps the reader decoding during playback
        source += ["--buffer", str(BUFFER)]
    cmd = [
        frame_engine(),
        "play",
        *source,
        "--headless",
        "--workers",
        "2",
        "--stats-json",
        stats_path,
        *(["--then", "track"] if kind == "kill-steps" else []),
    ]
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True
        )
    sid = proc.pid
    try:
        want = {"fe-reader", "fe-analyze-1", "fe-analyze-2"}
        if kind == "kill-steps":
            want.add("fe-steps")
        if not _wait(lambda: want <= set(children(proc.pid)) or proc.poll() is not None, 20):
            t.problems.append("the children did not start")
        t0 = time.monotonic()
        if server is not None:  # a moment while the stream has 2 s or more to go
            end = server.sent_at(STREAM_FRAMES) - RESTART_AFTER_S[1] - 2.0
            time.sleep(max(0.0, rng.uniform(0.05, end - time.monotonic())))
        else:  # a moment within the clip's 3 s of playback (it starts after a pre-roll)
            time.sleep(rng.uniform(0.05, CLIP_FRAMES / CLIP_FPS * 0.8))
        t.at_s = time.monotonic() - t0
        kids = children(proc.pid)
        if proc.poll() is None:
            act(kind, proc, kids, rng, t)
        try:
            proc.wait(HANG_S)
        except subprocess.TimeoutExpired:
            t.problems.append(f"hang: the player still ran {HANG_S:.0f} s after the action")
        if kind == "kill-parent":
            frame_engine_clean()
        if not _wait(lambda: not session_pids(sid), CHILDREN_GONE_S):
            names = [(_stat(p) or ["?"])[0] for p in session_pids(sid)]
            t.problems.append(f"leak: processes left: {session_pids(sid)} {names}")
        if left := segments(proc.pid):
            t.problems.append(f"leak: segments left: {left}")
    finally:
        _kill_session(sid)
        for name in segments(proc.pid):
            os.unlink(os.path.join("/dev/shm", name))
        if server is not None:
            server.stop()
    t.returncode = proc.returncode
    with open(err_path) as f:
        t.stderr = f.read()
    if os.path.exists(stats_path):
        with open(stats_path) as f:
            t.stats = json.load(f)
    if kind == "kill-server":
        check_stream_outcome(t, results_path)
    elif kind != "kill-parent":
        check_outcome(t)
    return t


def act(kind: str, proc: subprocess.Popen, kids: dict[str, int], rng, t: Trial) -> None:
    analyzers = sorted(n for n in kids if n.startswith("fe-analyze"))
    if kind == "kill-reader":
        t.target = "fe-reader"
        _signal(kids.get("fe-reader"), signal.SIGKILL)
    elif kind == "kill-analyzer":
        t.target = rng.choice(analyzers) if analyzers else "-"
        _signal(kids.get(t.target), signal.SIGKILL)
    elif kind == "kill-steps":
        t.target = "fe-steps"
        _signal(kids.get("fe-steps"), signal.SIGKILL)
    elif kind == "kill-server":
        server = t.server
        t.target = f"{server.kind} server"
        server.kill()
        try:
            proc.wait(rng.uniform(*RESTART_AFTER_S))
        except subprocess.TimeoutExpired:
            pass
        server.restart()
    elif kind == "stop-analyzer":
        t.target = rng.choice(analyzers) if analyzers else "-"
        _signal(kids.get(t.target), signal.SIGSTOP)
        try:
            proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            pass
        _signal(kids.get(t.target), signal.SIGCONT)
    else:
        t.target = "player"
        sig = {"kill-parent": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}
        proc.send_signal(sig[kind])


def _signal(pid: int | None, sig: int) -> None:
    if pid is not None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def check_stream_outcome(t: Trial, results_path: str) -> None:
    """kill-server: the player reconnected and played the stream to its end."""
    if "Traceback" in t.stderr:
        t.problems.append("a traceback on stderr")
    if t.returncode is None:
        return  # a hang, already said
    last = [ln for ln in t.stderr.splitlines() if ln.strip()][-1:]
    # A live stream has no end: the one that ended is reopened for --reconnect-for,
    # then the run ends with "...: lost: ..." and status 1 (a stream that ends before
    # that, with --frames, exits 0).
    if t.returncode != 0 and not (t.returncode == 1 and last and ": lost: " in last[0]):
        t.problems.append(f"bad-exit: status {t.returncode}: {last}")
        return
    s = t.stats
    if not s:
        t.problems.append("lost: no stats written")
        return
    if s.get("reconnects", 0) < 1:
        t.problems.append(f"lost: no reconnect counted (reconnects {s.get('reconnects')})")
    dropped = sum(v for k, v in s.items() if k.startswith("dropped_") and k != "dropped_source")
    if s["frames_shown"] + dropped + s["discarded_seek"] != s["frames_read"]:
        t.problems.append(
            f"lost: shown {s['frames_shown']} + dropped {dropped} != read {s['frames_read']}"
        )
    numbers = []
    if os.path.exists(results_path):
        with open(results_path) as f:
            for line in f:
                result = json.loads(line).get("result")
                if isinstance(result, dict) and "k" in result:
                    numbers.append(result["k"])
    if any(b <= a for a, b in zip(numbers, numbers[1:], strict=False)):
        t.problems.append("lost: frames out of order (by their barcodes)")
    if not numbers or numbers[-1] < STREAM_FRAMES - STREAM_FPS:
        t.problems.append(
            f"lost: the last frame analyzed is {numbers[-1:]}, not near the stream's end "
            f"({STREAM_FRAMES})"
        )


def check_outcome(t: Trial) -> None:
    """The player lived: a finished run with every frame counted, or a clean stop."""
    if "Traceback" in t.stderr:
        t.problems.append("a traceback on stderr")
    rc = t.returncode
    if rc is None:
        return  # a hang, already said
    allowed = EXPECTED_EXIT.get(t.kind, (0,))
    if rc not in allowed and not (rc == 0 and t.kind in ("term", "int", "kill-steps")):
        # a signal that lands after the end of playback finds a finished run
        t.problems.append(f"bad-exit: status {rc}, expected one of {allowed}")
        return
    lines = [ln for ln in t.stderr.splitlines() if ln.strip()]
    if rc == 0:
        s = t.stats
        if not s:
            t.problems.append("lost: no stats written")
            return
        read, shown, late = s["frames_read"], s["frames_shown"], s["dropped_late"]
        if read != CLIP_FRAMES:
            t.problems.append(f"lost: read {read} of the clip's {CLIP_FRAMES} frames")
        if shown + late + s["discarded_seek"] != read:
            t.problems.append(f"lost: shown {shown} + dropped {late} != read {read}")
        if not 0 <= s["failed"] <= read:
            t.problems.append(f"lost: failed {s['failed']} out of range")
    elif not lines or not lines[-1].startswith("frame-engine: "):
        t.problems.append(f"bad-exit: status {rc} without a clear last line: {lines[-1:]}")


def soak(trials: int, seed: int, kinds: list[str], out=sys.stdout) -> list[Trial]:
    rng = random.Random(seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="fe-soak-") as folder:
        clip = make_clip(folder)
        for i in range(trials):
            kind = kinds[i % len(kinds)] if trials <= len(kinds) else rng.choice(kinds)
            t = run_trial(kind, rng.randrange(1_000_000), clip, folder)
            results.append(t)
            print(f"{i + 1:>4} {t.line()}", file=out, flush=True)
    return results


def summary(results: list[Trial]) -> dict:
    problems = [p.split(":")[0] for t in results for p in t.problems]
    c = collections.Counter(problems)
    return {
        "trials": len(results),
        "failed_trials": sum(not t.ok for t in results),
        "hangs": c["hang"],
        "leaks": c["leak"],
        "lost": c["lost"],
        "bad_exits": c["bad-exit"],
        "by_kind": dict(collections.Counter(t.kind for t in results)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=len(KINDS))
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated")
    parser.add_argument("--json", help="write the summary and every trial here")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if bad := [k for k in kinds if k not in KINDS + OPT_IN_KINDS]:
        parser.error(f"unknown kind {bad[0]!r}; known: {', '.join(KINDS + OPT_IN_KINDS)}")
    t0 = time.monotonic()
    results = soak(args.trials, args.seed, kinds)
    s = summary(results) | {"seed": args.seed, "wall_s": round(time.monotonic() - t0, 1)}
    print(
        f"{s['trials']} trials (seed {args.seed}) in {s['wall_s']} s: {s['failed_trials']} failed; "
        f"{s['hangs']} hangs, {s['leaks']} leaks, {s['lost']} with lost frames, "
        f"{s['bad_exits']} bad exits"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s | {"results": [t.line() for t in results]}, f, indent=1)
    return 1 if s["failed_trials"] else 0


if __name__ == "__main__":
    sys.exit(main())
