"""Fetching and unpacking the official archives: md5-checked, atomic, never half-done.

The archive downloads to `NAME.part` and is renamed only once its md5 matches; it unpacks
into a hidden temporary folder under `root` that is renamed into place only when complete.
An interrupted or failed run therefore leaves nothing that later passes as a dataset.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or an archive that failed; the message says what to do."""


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, destination: Path, md5: str) -> None:
    """Downloads `url` to `destination` unless a file with that md5 is already there."""
    if destination.is_file() and md5sum(destination) == md5:
        return
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
            if total is not None and bar.n != total:
                raise DownloadError(
                    f"the download of {url} was interrupted after {bar.n} of {total} bytes; "
                    f"try again"
                )
        found = md5sum(partial)
        if found != md5:
            raise DownloadError(
                f"the download of {url} is corrupted: md5 {found}, expected {md5}; try again"
            )
        partial.replace(destination)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise DownloadError(
            f"could not download {url} ({error}). Without network access, download it "
            f"elsewhere and place it at {destination}"
        ) from error
    finally:
        partial.unlink(missing_ok=True)


def _check_member(member: tarfile.TarInfo) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise DownloadError(f"refusing to extract {member.name!r}: it points outside the folder")
    if not (member.isfile() or member.isdir()):
        raise DownloadError(f"refusing to extract {member.name!r}: not a regular file or folder")


def extract(archive: Path, root: Path, folder: str) -> None:
    """Unpacks `folder/` from `archive` into `root/folder`, replacing what was there, only
    once every member is out."""
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(scratch, members=members, filter="data")
            else:  # Python < 3.10.12: _check_member has already refused anything unsafe
                tar.extractall(scratch, members=members)
        unpacked = scratch / folder
        if not unpacked.is_dir():
            raise DownloadError(f"{archive} holds no folder {folder}/")
        target = root / folder
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    except tarfile.TarError as error:
        raise DownloadError(f"{archive} is not a readable tar archive ({error})") from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def download_and_extract(url: str, root: Path, filename: str, md5: str, folder: str) -> None:
    """Downloads the archive to `root/filename` (md5-checked) and unpacks `root/folder`."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / filename
    fetch(url, archive, md5)
    extract(archive, root, folder)
