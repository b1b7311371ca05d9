"""Child processes of a run: started as fresh interpreters (never a fork of a
process in which SDL or OpenCV have started threads), named so that `ps` and `top`
show their roles, and tied to their parent's life."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
import signal
import subprocess
import sys
import traceback

from engine.errors import CHILD_ENV

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# The child's first lines: take the parent's sys.path before importing anything of
# ours (so a folder named engine/ in the working directory never shadows the
# installed package, and users' modules import as they do in the parent).
_BOOT = (
    # Ctrl-C is the parent's to handle, from the first instant (imports included).
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "import sys, pickle\n"
    "f = sys.stdin.buffer\n"
    "sys.path[:] = pickle.load(f)\n"
    "from engine.procs import _child_main\n"
    "_child_main(f)\n"
)


class Child:
    """A child process running `module:function(*args)`.  Unlike multiprocessing's
    spawn, it does not re-import the parent's __main__ (a script without a main
    guard works) and starts no resource tracker."""

    def __init__(
        self, name: str, target: str, args: tuple, debug: bool = False, pass_fds: tuple = ()
    ) -> None:
        self.name = name
        # The role in the environment: a run started in the child (a script without
        # a main guard, imported for its analysis) is refused, not multiplied.
        env = dict(os.environ, **{CHILD_ENV: name})
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _BOOT],
            stdin=subprocess.PIPE,
            close_fds=True,
            pass_fds=pass_fds,  # only these of ours are open in the child
            env=env,
        )
        payload = (name, os.getpid(), target, args, debug)
        try:
            self.popen.stdin.write(pickle.dumps(list(sys.path)) + pickle.dumps(payload))
            self.popen.stdin.close()
        except BrokenPipeError:
            pass  # it died at once; its exit code tells

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def exitcode(self) -> int | None:
        """None while running; negative: killed by that signal."""
        return self.popen.poll()

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def join(self, timeout: float | None = None) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        if self.is_alive():
            self.popen.kill()


def _child_main(stream) -> None:
    name, parent, target, args, debug = pickle.load(stream)
    child_setup(name, parent)
    module, _, function = target.partition(":")
    try:
        fn = getattr(__import__(module, fromlist=[function]), function)
        fn(*args)
    except BaseException as e:
        # The parent reports the death in one line; the detail is for --debug.
        if debug:
            traceback.print_exc()
        sys.exit(1 if not isinstance(e, SystemExit) else e.code)


def name_process(name: str) -> None:
    """Set the process name (comm, 15 bytes) that ps -o comm and top show."""
    _libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` (SIGKILL) to this process when its parent dies;
    if the parent is already gone (it died before we got here), exit now."""
    _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def child_setup(name: str, parent_pid: int) -> None:
    """Name the process, tie it to its parent, and leave Ctrl-C to the parent:
    the terminal sends SIGINT to the whole group, and the parent stops the run."""
    name_process(name)
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
