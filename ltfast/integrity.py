"""Integrity of the data files: md5 checks against known digests, done once per file version.

A file's reference digest is the one ltfast recorded in the folder's manifest
`.ltfast-md5.json` when it wrote the folder itself (an md5-checked archive it extracted, a
python-version folder it converted, generated data), else the official one (the CIFAR-10
binary files, SPEC section 1). A file without a reference (CIFAR-100 binary files extracted by hand:
their official per-file digests are not published) is not hashed; the reader still checks
its size and every label.

Hashing 180 MB takes about half a second, so a verified file is remembered, keyed on its path,
inode, size, modification time and status-change time (ctime), in
`$XDG_CACHE_HOME/ltfast/verified.json` (default `~/.cache/ltfast/`); a file changed since is
hashed again. The ctime is the key that catches an in-place edit whose size and mtime were put
back (`os.utime` cannot set it: the kernel sets it to now on every write and every utime), at no
cost; a chmod or a rename only costs one more hash. What no stat key sees is a write that
bypasses the file system (a raw block device); delete the cache file to hash every file again.
Where the cache cannot be written the check simply runs each time.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ltfast.download import md5sum

MANIFEST = ".ltfast-md5.json"
OFFICIAL_MD5 = {
    "cifar-10-batches-bin": {
        "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
        "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
        "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
        "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
        "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
        "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
    },
}


class IntegrityError(ValueError):
    """A data file whose md5 is not the one it should have."""


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ltfast" / "verified.json"


def write_manifest(folder: Path, names: list[str]) -> None:
    """Records the md5 of the files `names` of `folder`, which ltfast has just written or
    checked, as their reference."""
    digests = {name: md5sum(folder / name) for name in names}
    (folder / MANIFEST).write_text(json.dumps(digests, indent=2) + "\n")


def reference_digests(folder: Path) -> dict[str, str]:
    """The digests the files of `folder` should have: those of the manifest ltfast wrote
    there (its own data: synthetic, converted or extracted), else the official ones. A file
    the manifest does not list keeps its official digest, so an empty or partial manifest
    weakens no check."""
    official = OFFICIAL_MD5.get(folder.name, {})
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return official
    try:
        found = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IntegrityError(f"{manifest} is damaged ({error}); delete it") from None
    if not isinstance(found, dict):
        raise IntegrityError(f"{manifest} is damaged (not a mapping); delete it")
    return {**official, **{str(k): str(v) for k, v in found.items()}}


def check_integrity(fpath: str | Path, md5: str | None = None) -> bool:
    """torchvision's `check_integrity` contract with ltfast's reference: whether `fpath` is a
    file whose md5 is `md5`, by default its reference digest (a file without one passes).
    Cached as `verify` is. ltfast.datasets checks every file through this name, so a test
    harness that patches it (torchvision's does, in the dataset's module) turns the checks off
    as it does for torchvision's datasets."""
    path = Path(fpath)
    if not path.is_file():
        return False
    expected = md5 or reference_digests(path.parent).get(path.name)
    return expected is None or _md5_mismatch(path, expected) is None


def verify(paths: list[Path]) -> None:
    """Raises IntegrityError naming the first file whose md5 differs from its reference.
    Files verified before and unchanged since (same inode, size, mtime and ctime) are not
    hashed again."""
    for path in paths:
        expected = reference_digests(path.parent).get(path.name)
        found = None if expected is None else _md5_mismatch(path, expected)
        if found is not None:
            raise IntegrityError(
                f"{path} is corrupted or was modified: md5 {found}, expected {expected}"
            )


def _md5_mismatch(path: Path, expected: str) -> str | None:
    """The md5 of `path` where it is not `expected`, else None; a match is remembered."""
    stat = path.stat()
    key = str(path.resolve())
    stamp = {
        "inode": stat.st_ino,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "md5": expected,
    }
    cache = _read_cache()
    if cache.get(key) == stamp:
        return None
    found = md5sum(path)
    if found != expected:
        return found
    cache[key] = stamp
    _write_cache(cache)
    return None


def _read_cache() -> dict:
    try:
        found = json.loads(cache_path().read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def _write_cache(cache: dict) -> None:
    """Atomic; a cache that cannot be written is no error (the check then runs each time)."""
    path = cache_path()
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as file:
            partial = Path(file.name)
            json.dump(cache, file)
        os.replace(partial, path)
    except OSError:
        if partial is not None:
            partial.unlink(missing_ok=True)
