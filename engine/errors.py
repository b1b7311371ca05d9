"""The errors frame-engine raises to its users, each a one-line message that names
the input and the problem. The command line prints that line and exits with
`exit_code`; the Python API raises them as they are."""

from __future__ import annotations

import os

CHILD_ENV = "FRAME_ENGINE_CHILD"  # set in every child process of a run: its role


class FrameEngineError(Exception):
    """Base of the errors below: catch this for any error of a run's input."""

    exit_code = 1


class RunError(FrameEngineError):
    """A run that cannot go on: one line naming the input and the problem."""

    def __init__(self, message: str, detail: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.detail = detail  # a traceback, shown with --debug
        self.exit_code = exit_code


class AnalysisFailed(RunError):
    """The user's analysis raised, or returned what cannot be stored, on a frame.
    Its __cause__ is the user's exception where it could be carried over from the
    analyzer process, with the traceback there as that exception's __cause__."""

    def __init__(self, message: str, frame: int, detail: str | None = None) -> None:
        super().__init__(message, detail)
        self.frame = frame


class RemoteTraceback(Exception):
    """The traceback of an exception raised in an analyzer process, as text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


class MainGuardError(RunError):
    """A run started while the module of an analysis was being imported, or inside
    a child process of a run: a script without a main guard, which would otherwise
    start a run in every analyzer, each starting more."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"a run was started {where}: the script that defines the analysis starts a "
            'run when it is imported; put that call under `if __name__ == "__main__":`'
        )


def refuse_nested_run(importing: str | None) -> None:
    """MainGuardError if a run must not start here: inside a child process of a
    run, or while `importing` (the module of an analysis) is being imported."""
    role = os.environ.get(CHILD_ENV)
    if role:
        raise MainGuardError(f"inside frame-engine's {role} process")
    if importing:
        raise MainGuardError(f"while importing {importing} for the analysis")
