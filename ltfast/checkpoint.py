"""Checkpoints: written atomically, loaded safely (`weights_only`), checked for origin.

A checkpoint holds what a run needs to continue bit for bit: model, optimiser and scheduler
state, the position (epoch and step within it), the partial epoch's sums, the metrics so far,
every random generator's state and the config. ltfast's own randomness (sampler draws,
augmentation, mixup) is a pure function of (seed, epoch, step), so the Numba kernels need
only the seed, which the config holds.
"""

from __future__ import annotations

import errno
import io
import os
import random
from pathlib import Path

import numpy as np
import torch

from ltfast.run_folder import LAST, RunFolder

FORMAT = "ltfast-checkpoint"
VERSION = 2  # 2: adds `processes`, the number of processes that trained

# Every field a checkpoint holds, with its type: a file that carries the marker but lacks one
# is refused by name rather than failing somewhere inside the resume.
FIELDS: dict[str, type | tuple[type, ...]] = {
    "config": dict,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "epoch": int,
    "step": int,
    "loss_sum": torch.Tensor,
    "seen": int,
    "train_s": (int, float),
    "records": list,
    "rng": dict,
    "processes": int,
    "ltfast_version": str,
}
RNG_FIELDS = ("python", "numpy", "torch", "cuda")


def rng_state() -> dict:
    """Python's, NumPy's global, torch's CPU and every CUDA device's generator state, as
    plain lists and tensors (loadable with weights_only=True)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    keys = np.asarray(keys)
    return {
        "python": [list(s) if isinstance(s, tuple) else s for s in random.getstate()],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class DiskFull(OSError):
    """A checkpoint that did not fit on the disk; the message says what was kept."""


def save(state: dict, path: Path) -> None:
    """Writes `state` to `path` atomically: a crash or a failed write leaves the previous
    file as it was."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    # Serialised in memory first: torch.save's zip writer reports a full disk as a
    # RuntimeError ("unexpected pos"), a plain write as the OSError it is.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    try:
        with open(partial, "wb") as file:
            file.write(buffer.getbuffer())
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        kept = f"the previous {path.name} is intact" if path.exists() else "nothing was written"
        raise DiskFull(
            error.errno,
            f"the disk is full (or over quota) while writing the checkpoint {path}; {kept}. "
            f"Free some space, then continue with --resume {path.parent}",
            str(path),
        ) from error
    finally:
        partial.unlink(missing_ok=True)


def locate(path: Path) -> Path:
    """A checkpoint file, or a run folder's last.pt."""
    path = Path(path).expanduser()
    found = path / LAST if path.is_dir() else path
    if found.is_file():
        return found
    if found.exists() or found.is_symlink():  # a device, a folder, a broken link
        raise ValueError(
            f"{found} is not a readable checkpoint: not a regular file (a device, a folder or "
            f"a broken link). Move it away; a run folder's metrics.jsonl keeps its epochs"
        )
    if path.is_dir() and RunFolder(path).is_run():
        raise FileNotFoundError(
            f"{path} holds a run that stopped before its first checkpoint: there is nothing to "
            f"resume or evaluate. Start it again with --out {path} --overwrite"
        )
    raise FileNotFoundError(f"no checkpoint at {found}: pass a run folder or a .pt file")


def load(path: Path) -> dict:
    """The checkpoint at `path` (a file or a run folder), or a ValueError saying what is wrong."""
    path = locate(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"{path} is not a readable checkpoint (truncated, corrupted or not a checkpoint): "
            f"{type(error).__name__}: {first_line}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by ltfast (no '{FORMAT}' marker)")
    if state.get("version") != VERSION:
        raise ValueError(
            f"{path} has checkpoint version {state.get('version')}, expected {VERSION}"
        )
    problems = [
        f"{name} (expected {_type_names(kind)}, got {type(state.get(name)).__name__})"
        for name, kind in FIELDS.items()
        if not isinstance(state.get(name), kind) or isinstance(state.get(name), bool)
    ]
    rng = state["rng"] if isinstance(state.get("rng"), dict) else {}
    problems += [f"rng.{name} (missing)" for name in RNG_FIELDS if name not in rng]
    if problems:
        raise ValueError(f"{path} is damaged: missing or invalid {', '.join(problems)}")
    return state


def _type_names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
