"""Whether a process is still running, for the code that cleans up after processes that ended
(a killed conversion's scratch folder) and for the tests that wait for one to end."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while process `pid` runs. A zombie (ended, its exit status not yet collected by its
    parent) counts as ended: it can no longer write anything. Another user's live process, which
    this one may not signal, counts as running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:  # Linux: "pid (command) state ..."
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS, the BSDs), or the process just went
        return True
