"""`frame-engine batch` on a local Ray cluster against running the same batch here
(`--ray off --jobs 1`) and against Ray Data (`read_videos` + `map_batches` running
the same analysis): frames/s on the clip work, and the fixed cost of starting the
cluster.

    python bench/batch.py [--clips 8] [--frames 90] [--size 320x180] [--nodes 2]
        [--cpus 1] [--json bench/batch_results.json]

Needs Ray (pip install ".[ray]"); Ray Data and its video reader also need
pip install "ray[data]" decord, and are left out, said so, where they are missing.  Every node runs
on this machine, on the loopback only."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import types

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported


def make_clips(folder: str, n: int, frames: int, size: tuple[int, int]) -> list[str]:
    from engine.sources import write_demo_clip

    paths = []
    for i in range(n):
        paths.append(os.path.join(folder, f"clip{i}.mp4"))
        write_demo_clip(paths[-1], frames=frames, size=size, fourcc="mp4v")
    return paths


def flow_batch(batch: dict) -> dict:
    """Ray Data's side: engine's own flow on each frame of a batch, the frame before
    it in the batch as its previous one (the first of a batch has none)."""
    import numpy as np

    from engine.analysis import flow

    means = []
    prev = None
    for frame in batch["frame"]:
        frame = np.ascontiguousarray(frame[..., ::-1])  # decord gives RGB
        out = frame.copy()
        means.append(flow(frame, out, types.SimpleNamespace(prev=prev))["flow_mean"])
        prev = frame
    return {"flow_mean": np.array(means), "frame_index": batch["frame_index"]}


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=1, help="CPUs of each node")
    ap.add_argument("--json", default=None, help="write the figures there")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    import ray
    from ray.cluster_utils import Cluster

    import engine

    tmp = tempfile.mkdtemp(prefix="fe-bb-", dir="/tmp")  # short: Unix sockets live there
    os.environ["RAY_TMPDIR"] = tmp
    rows: list[dict] = []
    total = args.clips * args.frames
    workers = max(1, args.cpus - 1)
    try:
        clips = make_clips(tmp, args.clips, args.frames, size)

        def add(method, seconds, note=""):
            rows.append(
                {
                    "method": method,
                    "seconds": round(seconds, 3),
                    "fps": round(total / seconds, 1) if seconds else None,
                    "note": note,
                }
            )
            print(f"{method:48s} {seconds:7.2f} s  {total / seconds:8.1f} frames/s  {note}")

        here, _ = timed(
            lambda: engine.batch(clips, analyze="flow", ray="off", jobs=1, workers=workers)
        )
        add("batch --ray off --jobs 1", here, f"{workers} worker(s) a job")

        node = {"num_cpus": args.cpus, "node_ip_address": "127.0.0.1"}
        cluster = Cluster()
        try:
            start, _ = timed(
                lambda: (
                    cluster.add_node(**node, include_dashboard=False),
                    [cluster.add_node(**node) for _ in range(args.nodes - 1)],
                    ray.init(address=cluster.address, logging_level="WARNING"),
                )
            )
            rows.append({"method": "cluster start", "seconds": round(start, 3)})
            print(f"{'cluster start (' + str(args.nodes) + ' nodes)':48s} {start:7.2f} s")
            where = f"{args.nodes} nodes x {args.cpus} CPU"
            for run in ("cold", "warm"):
                seconds, summary = timed(
                    lambda: engine.batch(
                        clips, analyze="flow", ray=cluster.address, workers=workers
                    )
                )
                assert summary["frames"] == total, summary
                add(f"batch on Ray ({where}, {run})", seconds, summary["where"])
            try:
                import decord  # noqa: F401
                import ray.data  # noqa: F401

                for run in ("cold", "warm"):
                    seconds, n = timed(
                        lambda: (
                            ray.data.read_videos(clips)
                            .map_batches(flow_batch, batch_format="numpy")
                            .count()
                        )
                    )
                    assert n == total, n
                    add(f"Ray Data read_videos+map_batches ({where}, {run})", seconds)
            except ImportError:
                print('Ray Data: left out (pip install "ray[data]" decord)')
        finally:
            ray.shutdown()
            cluster.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    by = {r["method"]: r for r in rows}
    warm = by.get(f"batch on Ray ({args.nodes} nodes x {args.cpus} CPU, warm)")
    if warm:
        speedup = here / warm["seconds"]
        print(
            f"speed-up over --jobs 1 on the clip work: {speedup:.2f}x "
            f"({speedup / args.nodes:.2f} of linear over {args.nodes} nodes)"
        )
        rows.append({"method": "speed-up (warm) over --jobs 1", "value": round(speedup, 3)})
        data = by.get(
            f"Ray Data read_videos+map_batches ({args.nodes} nodes x {args.cpus} CPU, warm)"
        )
        if data:
            ratio = data["seconds"] / warm["seconds"]
            print(f"frame-engine batch / Ray Data, frames/s: {ratio:.2f}x")
            rows.append({"method": "batch vs Ray Data (warm), frames/s", "value": round(ratio, 3)})
    if args.json:
        machine = {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "ray": ray.__version__,
            "frame_engine": engine.__version__,
        }
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "machine": machine, "rows": rows}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
