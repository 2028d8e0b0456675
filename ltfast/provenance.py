"""Where a result came from: the code, the libraries, the data files and the machine.

A figure in a results table is only as good as what can be said about the run behind it. Each
epoch's line of `metrics.jsonl` names the machine, the threads and the numerics it ran in (a
resumed run may change machine midway), and `summary.json` adds the code (ltfast's version,
the git commit and whether the checkout had uncommitted changes), the torch and numpy
versions, and the md5 of every data file the run read.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

from ltfast.download import md5sum
from ltfast.integrity import reference_digests
from ltfast.numerics import Numerics, device_name

NOT_A_CHECKOUT = "not recorded (ltfast is not running from a git checkout)"


def execution(device: torch.device, numerics: Numerics) -> dict[str, object]:
    """What one epoch ran on: recorded per epoch, since a resumed run may move machines."""
    return {
        "machine": device_name(device),
        "threads": torch.get_num_threads(),
        "numerics": numerics.describe(),
    }


def code() -> dict[str, object]:
    """ltfast's version and git commit, and whether the working tree differs from it."""
    from ltfast import __version__

    found: dict[str, object] = {
        "ltfast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    return {**found, **git_state(Path(__file__).resolve().parent)}


def git_state(folder: Path) -> dict[str, object]:
    """The commit checked out where `folder` lies, and `dirty`: tracked files changed since."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(folder), *args]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": NOT_A_CHECKOUT, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def data_digests(files: list[Path], verified: bool) -> dict[str, str]:
    """The md5 of each data file, keyed by its name. A file the reader has `verified` has its
    reference digest (the one the check matched: no second hashing); any other is hashed."""
    known = reference_digests(files[0].parent) if verified and files else {}
    return {path.name: known.get(path.name) or md5sum(path) for path in files}
