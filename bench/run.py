"""Run every benchmark of frame-engine in one go: the C ring benchmark, the Python
IPC comparison, the end-to-end player comparison and the cost of --output.
Writes bench/results.json (the rows, with a description of the machine),
bench/results.png (the ratios against their targets) and prints one table; a
full run also puts the headline rows into the README, between its bench markers.

    python bench/run.py            # about 5 minutes on 2 cores
    python bench/run.py --quick    # under a minute
    python bench/run.py --readme   # only the README's table, from bench/results.json
    python bench/run.py --only writer   # one suite again, the others' rows kept
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import engine

    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "frame_engine": engine.__version__,
    }


def tool(name: str) -> str:
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else (shutil.which(name) or name)


def c_rows(quick: bool) -> list[dict]:
    """Build the C benchmark (Release, no Python) and read its JSON lines."""
    build = os.path.join(ROOT, "build", "bench-c")
    subprocess.run(
        [
            tool("cmake"),
            "-S",
            ROOT,
            "-B",
            build,
            "-DCMAKE_BUILD_TYPE=Release",
            "-DENGINE_SANITIZE=",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [tool("cmake"), "--build", build, "-j2", "--target", "ring_bench"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [os.path.join(build, "bench", "c", "ring_bench"), *(["--quick"] if quick else [])],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if "value" not in d:
            continue
        case = d["case"] + (f", batch {d['batch']}" if d.get("batch") else "")
        rows.append(
            {
                "suite": "c",
                "method": d.get("method", ""),
                "case": case,
                "value": d["value"],
                "unit": d.get("unit", ""),
                **{k: d[k] for k in ("min", "max", "runs") if k in d},
                "target": verdict(d),
            }
        )
    return rows


def verdict(d: dict) -> str:
    """The C bench gives a target as a number plus "met"; say it as the others do."""
    target = d.get("target", "")
    if isinstance(target, (int, float)):
        return f">= {target} {'ok' if d.get('met') else 'MISSED'}"
    return str(target)


def script_rows(script: str, quick: bool) -> list[dict]:
    """Run one of the Python benchmarks in its own interpreter; its JSON rows."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.json")
        subprocess.run(
            [
                sys.executable,
                os.path.join(HERE, script),
                "--json",
                path,
                *(["--quick", "--repeat", "1"] if quick else []),
            ],
            check=True,
        )
        with open(path) as f:
            return json.load(f)


def chart(rows: list[dict], path: str) -> None:
    """Horizontal bars of every ratio (unit "x"), with 1x and the targets marked."""
    ratios = [r for r in rows if r["unit"] == "x"]
    if not ratios:
        return
    width, bar, left = 1200, 26, 560
    height = 60 + bar * len(ratios)
    img = np.full((height, width, 3), 255, np.uint8)
    targets = [
        float(t.split()[1]) for r in ratios if (t := str(r.get("target", ""))).startswith(">=")
    ]
    top = max([r["value"] for r in ratios] + targets + [2.0]) * 1.1
    scale = (width - left - 40) / top

    def x(v: float) -> int:
        return left + int(v * scale)

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(
        img, "frame-engine / baseline, same run (red: target)", (10, 30), font, 0.7, (0, 0, 0), 2
    )
    for i, r in enumerate(ratios):
        y = 50 + i * bar
        label = f"{r['suite']}: {r['case']}: {r['method']}"[:70]
        cv2.putText(img, label, (10, y + 17), font, 0.42, (0, 0, 0), 1)
        ok = "MISSED" not in str(r.get("target", ""))
        cv2.rectangle(
            img,
            (left, y + 4),
            (x(r["value"]), y + bar - 4),
            (80, 160, 60) if ok else (60, 60, 200),
            -1,
        )
        cv2.putText(
            img, f"{r['value']:.2f}x", (x(r["value"]) + 5, y + 17), font, 0.42, (0, 0, 0), 1
        )
        target = str(r.get("target", "")).split()
        if len(target) >= 2 and target[0] == ">=":
            tx = x(float(target[1]))
            cv2.line(img, (tx, y + 2), (tx, y + bar - 2), (0, 0, 255), 2)
    cv2.line(img, (x(1.0), 40), (x(1.0), height - 5), (120, 120, 120), 1)
    cv2.imwrite(path, img)


def print_table(rows: list[dict]) -> None:
    print(f"{'suite':<9} {'case':<34} {'method':<44} {'value':>14} {'unit':<10} target")
    for r in rows:
        v = r["value"]
        text = f"{v:,.2f}" if isinstance(v, float) and abs(v) < 1000 else f"{v:,.0f}"
        print(
            f"{r['suite']:<9} {r['case'][:34]:<34} {r['method'][:44]:<44} {text:>14} "
            f"{r['unit']:<10} {r.get('target', '')}"
        )


SCRIPTS = {
    "ipc": "ipc.py",
    "pipeline": "pipeline.py",
    "writer": "writer.py",
    "live": "live_latency.py",
}
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def headline(r: dict) -> bool:
    """The rows the README shows: every ratio, share and target, and the figures
    they are made of where one line says more than the ratio."""
    if r.get("target") or r["unit"] in ("x", "%"):
        return True
    if r["suite"] == "c":
        return r["case"] in ("items8, batch 64", "items8, batch 1", "frame1080p, batch 1") or (
            r["case"] in ("rtt_p50, batch 1", "rtt_p99, batch 1") and r["method"] != "spsc"
        )
    if r["suite"] == "ipc":
        return r["unit"] == "frames/s" and "BGR frame" in r["case"] and "16" not in r["method"]
    if r["suite"] == "writer":  # the rates, and the file's size and bitrate
        return True
    if r["suite"] == "live":  # how old frames are when shown, at the start and at the end
        return "age in the" in r["method"] or "frames shown per second" in r["method"]
    return r["unit"] == "fps" and "flow" in r["case"]


def _value(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def readme_table(result: dict) -> str:
    """The README's benchmark section: the machine, then a table of headline rows."""
    m = result["machine"]
    lines = [
        f"Last full run: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux "
        f"{m['kernel']}, Python {m['python']}, numpy {m['numpy']}, OpenCV {m['opencv']}, "
        f"frame-engine {m['frame_engine']} (`bench/results.json`, `bench/results.png`).",
        "",
        "| suite | case | method | median | min..max | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in filter(headline, result["rows"]):
        spread = f"{_value(r['min'])}..{_value(r['max'])}" if r.get("runs", 1) > 1 else ""
        lines.append(
            f"| {r['suite']} | {r['case']} | {r['method']} | {_value(r['value'])} {r['unit']} "
            f"| {spread} | {r.get('target', '')} |"
        )
    return "\n".join(lines)


def update_readme(result: dict, path: str = README) -> None:
    """Put readme_table(result) between the bench markers of the README."""
    with open(path) as f:
        text = f.read()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{BEGIN}\n{readme_table(result)}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--out", default=HERE, help="folder for results.json and results.png")
    parser.add_argument(
        "--readme",
        action="store_true",
        help="only put the table of bench/results.json into README.md (a full run does it too)",
    )
    parser.add_argument(
        "--only",
        choices=("c", *SCRIPTS),
        help="run one suite again and replace its rows in bench/results.json",
    )
    args = parser.parse_args(argv)
    if args.readme:
        with open(os.path.join(HERE, "results.json")) as f:
            update_readme(json.load(f))
        return 0
    suites = [args.only] if args.only else ["c", *SCRIPTS]
    rows = []
    for suite in suites:
        rows += c_rows(args.quick) if suite == "c" else script_rows(SCRIPTS[suite], args.quick)
    if args.only:  # the other suites' rows as the last run left them
        with open(os.path.join(args.out, "results.json")) as f:
            kept = [r for r in json.load(f)["rows"] if r["suite"] != args.only]
        rows = kept + rows
    result = {"machine": machine(), "quick": args.quick, "rows": rows}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    chart(rows, os.path.join(args.out, "results.png"))
    if not args.quick and os.path.abspath(args.out) == HERE:
        update_readme(result)
    print_table(rows)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in result["machine"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
