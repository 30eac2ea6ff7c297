"""The kinds of failure fastrec reports, each with its exit status.

Every module raises a subclass of one of these; `fastrec.cli` prints the message (no traceback)
and exits with the kind's status, so a script can tell a wrong command line from damaged data
and from a machine that failed under the run:

    0   done                         1   DataError: the data is wrong (a failed check, too many skips)
    2   UsageError / FastrecError:   75  EnvironmentFault: the machine failed (descriptors, memory,
        cannot go ahead as asked         I/O, a vanished mount); the outputs are valid and the
                                         message names the command that continues the run
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 75   # sysexits.h EX_TEMPFAIL: try again once the cause is gone


class FastrecError(Exception):
    """The run cannot go ahead as asked; the message says why and what to do."""

    exit_code = EXIT_USAGE


class UsageError(FastrecError):
    """Bad arguments or settings (including settings that contradict an earlier run)."""

    exit_code = EXIT_USAGE


class DataError(FastrecError):
    """The data is wrong: a check of inputs or outputs failed, or too many images were skipped."""

    exit_code = EXIT_DATA


class EnvironmentFault(FastrecError):
    """The machine failed under the run (not the images, not the settings): stop, keep the
    outputs valid, and say how to continue once the cause is fixed."""

    exit_code = EXIT_ENVIRONMENT
