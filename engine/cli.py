"""The `frame-engine` command."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from dataclasses import fields

from engine._version import __version__

EXAMPLES = """\
examples:
  frame-engine play                          the built-in demo clip, in a window
  frame-engine play video.mp4 --analyze edges --workers 2
  frame-engine play video.mp4 --analyze flow --headless --stats-json stats.json
  frame-engine play video.mp4 --untimed --analyze mymodule:fn --results out.jsonl
  frame-engine play video.mp4 --analyze detect --headless --untimed --output out.mp4
  frame-engine play street.mp4 --analyze detect --then track --then count:y=0.6
  frame-engine play rtsp://camera/stream --live --analyze motion
  frame-engine play 0                        camera 0
  frame-engine batch videos/ --analyze flow --out results/   every video of a folder
  frame-engine batch long.mp4 --analyze motion --split 60 --ray auto --out results/
  frame-engine clean                         remove segments left by killed runs

keys (window): space pause, left/right seek 5 s, . step while paused,
  i stats overlay, f fullscreen, q or Esc quit
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line."""

    def error(self, message: str):
        self.exit(2, f"frame-engine: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is not at least {low}")
        return value

    return parse


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _memory(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 512M or 2G")
    unit = (m.group(2) or "M")[0].upper()
    return int(float(m.group(1)) * {"B": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit])


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    """--analyze and --then, the same for play and batch."""
    parser.add_argument(
        "--analyze",
        default="none",
        metavar="NAME|module:function",
        help="none (default), gray, edges, blur, motion, flow, detect, or module:function",
    )
    parser.add_argument(
        "--then",
        action="append",
        default=[],
        metavar="STEP",
        help="an ordered step after the analysis, seeing every frame in order (repeat for "
        "more): track, count, count:y=0.6, or module:function",
    )


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="frame-engine",
        description="Play and analyze video in Python in real time.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"frame-engine {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    play = sub.add_parser(
        "play",
        help="play a video, URL, camera or the demo, analyzing every frame",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    play.add_argument(
        "source",
        nargs="?",
        default="demo",
        help="a video file, a URL (rtsp/http/udp), a camera index, or demo (default)",
    )
    add_analysis_options(play)
    play.add_argument(
        "--workers",
        type=_int_at_least(1),
        metavar="N",
        help="analyzer processes (default: cores minus one, at least 1)",
    )
    play.add_argument(
        "--buffer",
        type=_int_at_least(2),
        metavar="FRAMES",
        help="frames read ahead (default: 2 s of video, within --max-memory)",
    )
    play.add_argument(
        "--max-memory",
        type=_memory,
        default=512 * 2**20,
        metavar="SIZE",
        help="cap on the frame buffer (default 512M)",
    )
    play.add_argument(
        "--batch",
        type=_int_at_least(1),
        default=3,
        metavar="N",
        help="frames decoded per read cycle (default 3)",
    )
    play.add_argument(
        "--speed", type=_float, default=1.0, metavar="X", help="playback rate (default 1)"
    )
    play.add_argument(
        "--fps",
        type=_float,
        metavar="X",
        help="the source's frame rate, when its header is wrong (default: the source's)",
    )
    play.add_argument(
        "--untimed", action="store_true", help="every frame, as fast as possible, never dropped"
    )
    play.add_argument(
        "--start",
        type=_float,
        default=0.0,
        metavar="SECONDS",
        help="start this far into the source",
    )
    play.add_argument("--frames", type=_int_at_least(1), metavar="N", help="stop after N frames")
    play.add_argument(
        "--headless", action="store_true", help="no window (automatic where there is no display)"
    )
    play.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        help="never block the source: drop at the source when the buffer is full "
        "(default: for cameras and streams; --no-live reads a stream at the player's pace)",
    )
    live = play.add_argument_group(
        "live sources",
        "cameras and streams: opened once, reopened when they stall, frames too old not shown",
    )
    live.add_argument(
        "--source-timeout",
        type=_float,
        default=5.0,
        metavar="SECONDS",
        help="a URL may take this long to open, or to send the next frame, before it counts "
        "as stalled (default 5)",
    )
    live.add_argument(
        "--reconnect-for",
        type=_float,
        default=60.0,
        metavar="SECONDS",
        help="reopen a live source that stopped or stalled, with growing waits, for this long "
        "before the run ends with an error (default 60; 0: end with the source; inf: forever)",
    )
    live.add_argument(
        "--max-latency",
        type=_float,
        metavar="SECONDS",
        help="a live frame older than this (since it was read) is dropped rather than shown "
        "(default 0.5; inf: never)",
    )
    play.add_argument(
        "--output",
        metavar="FILE",
        help="write the video as played (untimed: every frame), with the source's sound: "
        ".mp4 .m4v .mov .mkv (H.264), .webm (VP9), .avi (MJPEG)",
    )
    play.add_argument(
        "--output-codec",
        metavar="NAME",
        help="the video codec of --output: h264, hevc, vp9, av1, mjpeg, or an FFmpeg encoder",
    )
    play.add_argument(
        "--output-crf",
        type=_float,
        metavar="Q",
        help="quality of --output, lower is better: H.264 0-51 (default 23), VP9 0-63 (32), "
        "MJPEG 2-31 (3)",
    )
    play.add_argument(
        "--results",
        metavar="FILE.jsonl",
        help="one line per analyzed frame: index and result, in frame order",
    )
    play.add_argument("--stats-json", metavar="FILE", help="write the run's figures at the end")
    play.add_argument(
        "--step-timeout",
        type=_float,
        metavar="SECONDS",
        help="an analyzer that spends longer on one frame is killed and replaced, the frame "
        "counted failed; ordered steps that hang stop the run",
    )
    play.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="when the analysis raises: stop the run (default) or count and go on",
    )
    play.add_argument("--quiet", action="store_true", help="no progress, warnings or summary")
    play.add_argument("--debug", action="store_true", help="tracebacks for errors")
    play.set_defaults(func=_play)

    _add_batch(sub)

    clean = sub.add_parser("clean", help="remove shared-memory segments left by dead runs")
    clean.add_argument("--quiet", action="store_true", help="print nothing but errors")
    clean.set_defaults(func=_clean)
    return p


def _play(args: argparse.Namespace) -> int:
    from engine.api import play
    from engine.options import PlayOptions

    # --analyze mymodule:fn finds ./mymodule.py (the analyzers inherit sys.path);
    # last on the path, so a folder here never shadows an installed package.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())

    # Every option of the command is a PlayOptions field of the same name.
    options = {
        f.name: getattr(args, f.name)
        for f in fields(PlayOptions)
        if f.name != "source" and hasattr(args, f.name)
    }
    # --headless only forces it on; left off, the machine decides. --live and
    # --no-live force live on or off; left off (None), the source decides.
    options["headless"] = True if args.headless else None
    try:
        stats = play(args.source, **options)
    except BaseException as e:  # Ctrl-C, SIGTERM: the figures of the run, then why
        stopped = getattr(e, "stats", None)
        ended = ("interrupted", "terminated", "source lost")
        if not args.quiet and stopped and stopped["ended"] in ended:
            _report(stopped, args)
        raise
    if not args.quiet:
        _report(stats, args)
    if stats["analysis_errors"] and not stats["frames_analyzed"] and stats["errors"]:
        # --on-error skip, and not one frame analyzed: a broken analysis, not a bad frame
        first = stats["errors"][0]
        print(
            f"frame-engine: analysis '{stats['analysis']}' failed on every frame: "
            f"frame {first['first_frame']}: {first['error']}",
            file=sys.stderr,
        )
        return 1
    return 0


def _report(stats: dict, args: argparse.Namespace) -> None:
    declared, decoded = stats["declared_frames"], stats["decoded_frames"]
    # Only a run that played to the end, from the start and without seeks, can tell
    # that frames are missing.
    whole = stats["ended"] == "end" and not stats["seeks"] and not args.frames and not args.start
    if declared and decoded < declared and whole:
        print(
            f"frame-engine: {args.source}: decoded {decoded} of {declared} declared frames "
            "(the file ends early or is damaged)",
            file=sys.stderr,
        )
    from engine.stats import summary_line

    print(f"frame-engine: {summary_line(stats)}", file=sys.stderr)
    out = stats.get("output")
    if out:  # where the video went
        state = "" if out["finished"] else " (unfinished)"
        print(
            f"frame-engine: wrote {out['path']}{state}: {out['frames']} frames, "
            f"{out['seconds']:.2f} s, {out['bytes'] / 2**20:.1f} MiB",
            file=sys.stderr,
        )
    for name, summary in stats["summaries"].items():  # what the steps' close() said
        if summary and not isinstance(summary, list):
            print(f"frame-engine: {name}: {json.dumps(summary)}", file=sys.stderr)


BATCH_EXAMPLES = """\
examples:
  frame-engine batch videos/ --analyze flow --out results/
  frame-engine batch 'cams/*.mp4' --analyze detect --then track --out results/ --ray auto
  frame-engine batch day.mp4 --analyze motion --split 60 --out results/ --ray 10.0.0.1:6379
  frame-engine batch videos/ --analyze edges --out results/ --ray off --jobs 2 --resume

writes, per input, DIR/<name>.jsonl (one line per frame, in frame order, as
play --results writes them) and DIR/<name>.stats.json, and DIR/summary.json;
exit status 0 when every input is complete, 1 when one failed or is incomplete
"""


def _add_batch(sub) -> None:
    b = sub.add_parser(
        "batch",
        help="analyze many files, or time ranges of one, here or on a Ray cluster",
        epilog=BATCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders or globs")
    add_analysis_options(b)
    b.add_argument("--out", required=True, metavar="DIR", help="the folder for the results")
    b.add_argument(
        "--ray",
        default="auto",
        metavar="auto|local|off|ADDRESS",
        help="auto (default): a running Ray cluster if there is one, else here; local: a "
        "private Ray instance; off: here, without Ray; or a cluster's address",
    )
    b.add_argument(
        "--jobs",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="without Ray: jobs run at once on this machine (default 1)",
    )
    b.add_argument(
        "--workers",
        type=_int_at_least(1),
        metavar="N",
        help="analyzer processes of each job (default: a node's CPUs, or the cores shared by "
        "--jobs, less one for the reader)",
    )
    b.add_argument(
        "--split",
        type=_float,
        metavar="SECONDS",
        help="cut each input into time ranges of this length, run as separate jobs",
    )
    b.add_argument(
        "--warmup",
        type=_float,
        metavar="SECONDS",
        help="with --split: each range is read from this long before its first frame, for "
        "ordered steps to pick up what is on screen (default 2 with --then, else 0)",
    )
    b.add_argument(
        "--resume", action="store_true", help="skip inputs whose results are complete in DIR"
    )
    b.add_argument(
        "--output-video",
        nargs="?",
        const="mp4",
        metavar="EXT",
        help="also write each input's frames, as shown, to DIR/<name>.EXT (default mp4)",
    )
    b.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="when the analysis raises: fail that input (default) or count and go on",
    )
    b.add_argument(
        "--max-memory",
        type=_memory,
        default=512 * 2**20,
        metavar="SIZE",
        help="cap on each job's frame buffer (default 512M)",
    )
    b.add_argument("--quiet", action="store_true", help="no progress, only errors")
    b.add_argument("--debug", action="store_true", help="tracebacks for errors")
    b.set_defaults(func=_batch)


def _batch(args: argparse.Namespace) -> int:
    from engine.batchjobs import BatchConfig, run_batch

    if os.getcwd() not in sys.path:  # --analyze mymodule:fn, as for play
        sys.path.append(os.getcwd())
    video = args.output_video
    cfg = BatchConfig(
        inputs=args.inputs,
        analyze=args.analyze,
        then=args.then,
        out=args.out,
        ray=args.ray,
        jobs=args.jobs,
        workers=args.workers,
        split=args.split,
        warmup=args.warmup,
        resume=args.resume,
        output_video=None if video is None else "." + video.lower().lstrip("."),
        on_error=args.on_error,
        progress=not args.quiet,
        options={"max_memory": args.max_memory, "debug": args.debug},
    )
    for item in run_batch(cfg):
        if args.quiet and item.status == "failed":
            print(f"frame-engine: {item.name}: failed: {item.reason}", file=sys.stderr)
    summary = cfg.summary
    counts = {k: v for k, v in summary["counts"].items() if v}
    if not args.quiet:
        told = ", ".join(f"{v} {k}" for k, v in counts.items())
        fps = summary["frames"] / summary["seconds"] if summary["seconds"] else 0.0
        print(
            f"frame-engine: batch: {told}; {summary['frames']} frames in "
            f"{summary['seconds']:.1f} s ({fps:.0f} fps) {summary['where']}; "
            f"results in {args.out}",
            file=sys.stderr,
        )
    return 1 if counts.get("failed") or counts.get("incomplete") else 0


def _clean(args: argparse.Namespace) -> int:
    from engine.segments import SHM_DIR, clean_stale

    errors: list[tuple[str, str]] = []
    removed = clean_stale(errors)
    for name in removed if not args.quiet else ():
        print(f"removed {os.path.join(SHM_DIR, name)}")
    for name, why in errors:
        print(f"frame-engine: cannot remove {os.path.join(SHM_DIR, name)}: {why}", file=sys.stderr)
    if not args.quiet:
        print(f"{len(removed)} stale segment(s) removed")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    from engine.api import Terminated
    from engine.errors import FrameEngineError

    try:
        return args.func(args)
    except FrameEngineError as e:
        detail = getattr(e, "detail", None)
        if debug:
            print(detail or traceback.format_exc(), file=sys.stderr, end="")
        print(f"frame-engine: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt:
        print("frame-engine: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("frame-engine: terminated", file=sys.stderr)
        return 143
    except Exception as e:  # a bug of ours: still one line, the rest with --debug
        if debug:
            traceback.print_exc()
        print(
            f"frame-engine: internal error: {type(e).__name__}: {e} (--debug shows where)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
