"""Shared-memory segments left behind by runs whose creator died."""

from __future__ import annotations

import os
import re

from engine._ring import Ring

SHM_DIR = "/dev/shm"
_NAME = re.compile(r"^fe-(\d+)-")


def _start_time(pid: int) -> int | None:
    """The start time of a live process (/proc/<pid>/stat field 22), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return 0  # exists but unreadable: treat as alive
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])  # field 22 counted from field 3


def _is_stale(name: str, pid: int) -> bool:
    start = _start_time(pid)
    if start is None:
        return True
    # The pid is alive: stale only if it is another process that reused the pid.
    try:
        ring = Ring.open(name)
    except (ValueError, OSError):
        return False  # not a ring we can read: the live owner's business
    try:
        return ring.creator == pid and ring.creator_start not in (0, start)
    finally:
        ring.close()


def clean_stale() -> list[str]:
    """Remove the segments whose creator is dead; return their names."""
    removed = []
    try:
        names = sorted(os.listdir(SHM_DIR))
    except FileNotFoundError:
        return removed
    for name in names:
        m = _NAME.match(name)
        if not m or not _is_stale(name, int(m.group(1))):
            continue
        try:
            os.unlink(os.path.join(SHM_DIR, name))
        except FileNotFoundError:
            continue  # another cleaner got there first
        removed.append(name)
    return removed
