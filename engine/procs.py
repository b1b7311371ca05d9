"""What every child process of a run does first: take a name `ps` and `top` show,
and make sure it does not outlive its parent."""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing as mp
import os
import signal

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# spawn: children start from a fresh interpreter, never a fork of a process in
# which SDL or OpenCV have started threads.
CONTEXT = mp.get_context("spawn")


def name_process(name: str) -> None:
    """Set the process name (comm, 15 bytes) that ps -o comm and top show."""
    _libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; if the parent
    is already gone (it died before we got here), exit now."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def child_setup(name: str, parent_pid: int) -> None:
    """Name the process, tie it to its parent, and leave Ctrl-C to the parent:
    the terminal sends SIGINT to the whole group, and the parent stops the run."""
    name_process(name)
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
