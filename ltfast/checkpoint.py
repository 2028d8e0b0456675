"""Checkpoints: written atomically, loaded safely (`weights_only`), checked for origin.

A checkpoint holds what a run needs to continue bit for bit: model, optimiser and scheduler
state, the position (epoch and step within it), the partial epoch's sums, the metrics so far,
every random generator's state and the config. ltfast's own randomness (sampler draws,
augmentation, mixup) is a pure function of (seed, epoch, step), so the Numba kernels need
only the seed, which the config holds.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

FORMAT = "ltfast-checkpoint"
VERSION = 1


def rng_state() -> dict:
    """Python's, NumPy's global, torch's CPU and every CUDA device's generator state, as
    plain lists and tensors (loadable with weights_only=True)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
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


def save(state: dict, path: Path) -> None:
    """Writes `state` to `path` atomically: a crash or a failed write leaves the previous
    file as it was."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as file:
            torch.save({"format": FORMAT, "version": VERSION, **state}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def locate(path: Path) -> Path:
    """A checkpoint file, or a run folder's last.pt."""
    path = Path(path)
    found = path / "last.pt" if path.is_dir() else path
    if not found.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {found}: --resume takes a run folder or a .pt file"
        )
    return found


def load(path: Path) -> dict:
    """The checkpoint at `path` (a file or a run folder), or a ValueError saying what is wrong."""
    path = locate(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise ValueError(
            f"{path} is not a readable checkpoint (truncated or corrupted?): {error}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by ltfast (no '{FORMAT}' marker)")
    if state.get("version") != VERSION:
        raise ValueError(
            f"{path} has checkpoint version {state.get('version')}, expected {VERSION}"
        )
    return state
