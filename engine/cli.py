"""The `frame-engine` command."""

from __future__ import annotations

import argparse
import sys

from engine._version import __version__


def _clean(args: argparse.Namespace) -> int:
    from engine.segments import clean_stale

    removed = clean_stale()
    for name in removed:
        print(f"removed /dev/shm/{name}")
    if not args.quiet:
        print(f"{len(removed)} stale segment(s) removed")
    return 0


def _ring_demo(args: argparse.Namespace) -> int:
    from engine.ringdemo import run

    stats = run(frames=args.frames, workers=args.workers)
    print(
        f"{stats['frames']} frames of 1280x720 through reader -> {args.workers} analyzers -> "
        f"display order in {stats['wall_s']:.2f} s: {stats['fps']:.0f} frames/s, every frame "
        f"in order"
    )
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="frame-engine",
        description="Play and analyze video in Python in real time.",
        epilog="examples:\n  frame-engine ring-demo\n  frame-engine clean",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"frame-engine {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("clean", help="remove shared-memory segments left by dead runs")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_clean)
    d = sub.add_parser("ring-demo", help="push frames through the ring and report the rate")
    d.add_argument("--frames", type=_positive, default=300)
    d.add_argument("--workers", type=_positive, default=2)
    d.set_defaults(func=_ring_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("frame-engine: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
