from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from cifar_files import encoded_images, write_records


@pytest.fixture
def cifar10_files(tmp_path: Path) -> list[Path]:
    """Three CIFAR-10 files of unequal length (41, 17, 30 records), labels 0..9."""
    rng = np.random.default_rng(10)
    paths, first = [], 0
    for number, count in enumerate([41, 17, 30]):
        labels = rng.integers(0, 10, count)
        path = tmp_path / f"part_{number}.bin"
        paths.append(write_records(path, [labels], encoded_images(first, count)))
        first += count
    return paths


@pytest.fixture
def cifar100_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(100)
    count = 53
    coarse, fine = rng.integers(0, 20, count), rng.integers(0, 100, count)
    return write_records(tmp_path / "train.bin", [coarse, fine], encoded_images(0, count))


@pytest.fixture(scope="session")
def real_cifar10_root() -> Path:
    """The data root named by LTFAST_CIFAR10_ROOT (holding cifar-10-batches-bin/)."""
    root = os.environ.get("LTFAST_CIFAR10_ROOT")
    if not root:
        pytest.skip("LTFAST_CIFAR10_ROOT is not set: no real CIFAR-10 data")
    return Path(root)


@pytest.fixture(scope="session", autouse=True)
def integrity_cache(tmp_path_factory) -> Path:
    """ltfast.integrity's cache of verified files, in a temporary folder (subprocesses too)."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """One data root for the training tests: each synthetic size is generated there once."""
    return tmp_path_factory.mktemp("data")


# The synthetic set and settings of `trained_run`; two-stage tests train on the same.
TRAINED_RUN = ["--dataset", "synthetic", "--synthetic-size", "60", "--imb-factor", "0.1"]
TRAINED_RUN += ["--quiet", "--batch-size", "32"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_root) -> Path:
    """A finished 3-epoch CE run on the synthetic set (run folder)."""
    from ltfast.train import main

    out = tmp_path_factory.mktemp("trained") / "run"
    flags = ["--epochs", "3", "--warmup-epochs", "1", "--lr", "0.05"]
    assert main([*TRAINED_RUN, "--data-root", str(data_root), "--out", str(out), *flags])
    return out
