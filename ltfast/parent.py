"""A sweep's trainings end with the sweep, however the sweep ends.

SIGINT and SIGTERM to a sweep stop its runs with a checkpoint (see ltfast.sweep). A sweep that
is killed (SIGKILL) or crashes cannot ask them, so each training it starts asks the operating
system instead: `end_with_parent()` makes a SIGTERM arrive when the parent process is gone, and
the training then checkpoints and exits as on Ctrl-C. On Linux this is the kernel's
parent-death signal (`prctl(PR_SET_PDEATHSIG)`); macOS and the other BSDs have none, so there a
daemon thread checks once a second whether the parent has gone (the process is then re-parented
and `getppid()` changes).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PARENT_ENV = "LTFAST_END_WITH_PARENT"  # the parent's process id, set by the sweep
PR_SET_PDEATHSIG = 1  # from linux/prctl.h
POLL_S = 1.0


def child_environment(environment: dict[str, str]) -> dict[str, str]:
    """`environment` for a child that should end with this process."""
    return {**environment, PARENT_ENV: str(os.getpid())}


def end_with_parent() -> None:
    """When started by a sweep (PARENT_ENV set): SIGTERM this process once the sweep is gone."""
    expected = os.environ.pop(PARENT_ENV, None)  # not inherited by this process's own children
    if not expected or not expected.isdigit():
        return
    parent = int(expected)
    if not (sys.platform.startswith("linux") and _parent_death_signal()):
        threading.Thread(target=_watch, args=(parent,), daemon=True, name="ltfast-parent").start()
    if os.getppid() != parent:  # gone before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


def _parent_death_signal() -> bool:
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
