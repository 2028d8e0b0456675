"""Decoding all of CIFAR-10 and gathering batches: ltfast against what users would otherwise use.

    python benchmarks/decode.py            # synthetic CIFAR-10-sized files in a temporary folder
    python benchmarks/decode.py --root R   # R/cifar-10-batches-bin/ holds the real files

Warm page cache. Ratios are to memcpy of the same number of bytes (time x memcpy's GB/s).
"""

from __future__ import annotations

import itertools
import os
import pickle
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import torchvision
from _common import Row, median_seconds, parser, print_table, write_json

from ltfast import CIFAR10, RecordReader
from ltfast.download import md5sum
from ltfast.synthetic import CLASSES, FOLDER, TEST_FILE, TRAIN_FILES, random_cifar10

RECORD = 3073
PIXELS = 3072
GATHER_SIZE, BATCH = 50_000, 128


def write_pickles(root: Path, reader: RecordReader, files: list[Path]) -> None:
    """torchvision's 'python version' of the same records (cifar-10-batches-py/)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for path in files:
        records = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD)
        batch = {"data": records[:, 1:].copy(), "labels": records[:, 0].tolist()}
        name = path.stem
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CLASSES)}))


def checked_cifar10(pickle_root: Path) -> type[torchvision.datasets.CIFAR10]:
    """torchvision's CIFAR10 with its md5 checks on, against the digests of these pickles
    (as the official table is for the official files)."""
    folder = pickle_root / "cifar-10-batches-py"
    base = torchvision.datasets.CIFAR10

    def listed(entries: list) -> list:
        return [[name, md5sum(folder / name)] for name, _ in entries]

    table = {
        "train_list": listed(base.train_list),
        "test_list": listed(base.test_list),
        "meta": {**base.meta, "md5": md5sum(folder / base.meta["filename"])},
    }
    return type("CheckedCIFAR10", (base,), table)


class UncheckedCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 without its md5 checks, which synthetic files cannot pass.

    Skipping the checks only makes torchvision faster than it is for users.
    """

    train_list: ClassVar = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list: ClassVar = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta: ClassVar = {**torchvision.datasets.CIFAR10.meta, "md5": None}


def main(argv: list[str] | None = None) -> list[Row]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--root", type=Path, help="data root holding cifar-10-batches-bin/")
    args = args.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder = args.root / FOLDER if args.root else random_cifar10(scratch)
        files = [folder / name for name in (*TRAIN_FILES, TEST_FILE)]
        reader = RecordReader(files)
        write_pickles(scratch, reader, files)
        rows = measure(reader, files, scratch, args.repeats)
    print_table("Decoding CIFAR-10 (60,000 records)", rows, "GB/s", 1e9, "memcpy")
    times = {row.name: row.median_s for row in rows}
    ratio = times["torchvision_dataset"] / times["ltfast_dataset"]
    print(f"\nDataset construction, integrity checked: ltfast {ratio:.1f}x faster than torchvision")
    write_json(args.json, rows, "ratio_to_memcpy")
    return rows


def measure(reader: RecordReader, files: list[Path], pickle_root: Path, repeats: int) -> list[Row]:
    count = len(reader)
    nchw = np.empty((count, 3, 32, 32), np.uint8)
    nhwc = np.empty((count, 32, 32, 3), np.uint8)
    source = reader.decode()

    def numpy_memmap() -> None:
        start = 0
        for path in files:
            records = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, RECORD)
            nchw.reshape(count, PIXELS)[start : start + len(records)] = records[:, 1:]
            start += len(records)

    def numpy_fromfile() -> np.ndarray:
        parts = [np.fromfile(p, dtype=np.uint8).reshape(-1, RECORD)[:, 1:] for p in files]
        return np.concatenate(parts).reshape(-1, 3, 32, 32).copy()

    def torchvision_pickle() -> None:
        UncheckedCIFAR10(pickle_root, train=True)
        UncheckedCIFAR10(pickle_root, train=False)

    checked = checked_cifar10(pickle_root)

    def torchvision_dataset() -> None:
        checked(pickle_root, train=True)
        checked(pickle_root, train=False)

    def ltfast_dataset() -> None:
        CIFAR10(files[0].parent.parent, train=True)
        CIFAR10(files[0].parent.parent, train=False)

    fresh_caches = (pickle_root / f"cache-{n}" for n in itertools.count())

    def ltfast_dataset_first() -> None:
        previous = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = str(next(fresh_caches))  # nothing verified yet
        try:
            ltfast_dataset()
        finally:
            os.environ.pop("XDG_CACHE_HOME")
            if previous is not None:
                os.environ["XDG_CACHE_HOME"] = previous

    batches = np.array_split(
        np.random.default_rng(0).integers(0, count, GATHER_SIZE), GATHER_SIZE // BATCH
    )
    batch_out = np.empty((BATCH + 1, 3, 32, 32), np.uint8)

    def gather(take) -> None:
        for batch in batches:
            take(batch, batch_out[: len(batch)])

    all_bytes, gather_bytes = count * PIXELS, GATHER_SIZE * PIXELS
    cases = [
        (
            "memcpy",
            "np.copyto of the pixel bytes into a preallocated array",
            lambda: np.copyto(nchw, source),
            all_bytes,
        ),
        (
            "ltfast_decode_new",
            "RecordReader.decode() into a new NCHW array",
            reader.decode,
            all_bytes,
        ),
        (
            "ltfast_decode_prealloc",
            "RecordReader.decode(out=) NCHW, preallocated",
            lambda: reader.decode(out=nchw),
            all_bytes,
        ),
        (
            "ltfast_decode_nhwc",
            "RecordReader.decode(layout='NHWC', out=), preallocated",
            lambda: reader.decode(layout="NHWC", out=nhwc),
            all_bytes,
        ),
        (
            "numpy_memmap",
            "np.memmap + [:, 1:] strided copy into a preallocated array",
            numpy_memmap,
            all_bytes,
        ),
        ("numpy_fromfile", "np.fromfile + reshape + copy (naive)", numpy_fromfile, all_bytes),
        (
            "torchvision_pickle",
            "torchvision CIFAR10 train + test from pickles (md5 check off)",
            torchvision_pickle,
            all_bytes,
        ),
        (
            "torchvision_dataset",
            "torchvision.datasets.CIFAR10 train + test, md5 checks on (python version)",
            torchvision_dataset,
            all_bytes,
        ),
        (
            "ltfast_dataset",
            "ltfast.CIFAR10 train + test, md5 checks on (cached: stat only)",
            ltfast_dataset,
            all_bytes,
        ),
        (
            "ltfast_dataset_first",
            "the same, the first time (empty cache: every file hashed)",
            ltfast_dataset_first,
            all_bytes,
        ),
        (
            "ltfast_gather",
            "50,000 random records, batches of 128, decode(idx, out=)",
            lambda: gather(lambda idx, out: reader.decode(idx, out=out)),
            gather_bytes,
        ),
        (
            "numpy_gather",
            "the same from a decoded in-memory array, np.take(out=)",
            lambda: gather(lambda idx, out: np.take(source, idx, axis=0, out=out)),
            gather_bytes,
        ),
    ]
    rows = [Row(name, what, median_seconds(run, repeats), work) for name, what, run, work in cases]
    memcpy_rate = rows[0].work / rows[0].median_s
    for row in rows:
        row.ratio_to_reference = row.median_s * memcpy_rate / row.work
    return rows


if __name__ == "__main__":
    main()
