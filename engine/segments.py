"""Shared-memory segments left behind by runs whose creator died."""

from __future__ import annotations

import os
import re
import stat

from engine._ring import Ring

SHM_DIR = "/dev/shm"
# Ours: "fe-<pid>-<n>" as fe_create() names a ring (and "fe-<pid>-t<n>" as the C
# tests do): a pid as Linux writes it (no sign, no leading zero, at most
# PID_MAX_LIMIT) and a suffix of letters and digits.  Other fe- names are not ours.
_NAME = re.compile(r"^fe-([1-9][0-9]{0,6})-[0-9A-Za-z]+$")
PID_MAX_LIMIT = 1 << 22


def _start_time(pid: int) -> int | None:
    """The start time of a live process (/proc/<pid>/stat field 22), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            line = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return 0  # exists but unreadable: treat as alive
    fields = line[line.rindex(b")") + 2 :].split()
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


def _our_name(name: str) -> int | None:
    """The creator's pid if `name` is one frame-engine gives its segments, else None."""
    m = _NAME.match(name)
    pid = int(m.group(1)) if m else 0
    return pid if 0 < pid <= PID_MAX_LIMIT else None


def clean_stale(errors: list[tuple[str, str]] | None = None) -> list[str]:
    """Remove the segments whose creator is dead; return their names.

    A segment is a regular file named as ours ("fe-<pid>-<n>"); whether it holds a
    ring does not matter (a creator killed while making one leaves a file that does
    not).  Anything else under /dev/shm is left alone.  A segment that cannot be
    removed (another user's) is skipped, and reported in `errors` as (name, reason)."""
    removed = []
    try:
        names = sorted(os.listdir(SHM_DIR))
    except FileNotFoundError:
        return removed
    for name in names:
        pid = _our_name(name)
        if pid is None:
            continue
        path = os.path.join(SHM_DIR, name)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue  # a folder, link or device: not a segment
        except FileNotFoundError:
            continue
        if not _is_stale(name, pid):
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue  # another cleaner got there first
        except OSError as e:
            if errors is not None:
                errors.append((name, e.strerror or str(e)))
            continue
        removed.append(name)
    return removed
