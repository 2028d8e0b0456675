"""The run folder: what a training run writes, and the one place that writes and reads it.

A folder is an ltfast run only when it holds the marker `ltfast-run.json`, written when a run
claims the folder. ltfast never overwrites or deletes a file in a folder without that marker,
and in a marked folder it deletes only its own files, only with `--overwrite`, and only once
the new run has been validated (config resolved, data opened, model built).

One process writes a folder at a time: the writer holds an exclusive `flock` on the folder's
`ltfast.lock` (see FolderLock), which the kernel releases when the process ends, however it
ends, so a lock is never stale.

Files: `ltfast-run.json` (marker), `ltfast.lock` (who writes the folder now), `config.yaml`
(the resolved config), `dataset.json` (class names and counts), `metrics.jsonl` (one JSON line
per epoch), `summary.json`, `last.pt` and `best.pt` (see ltfast.checkpoint), the report
(`report.md` and PNG plots, see ltfast.report), optionally `tensorboard/` and `draws/`, and
what ltfast.evaluate and ltfast.tau_norm write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

MARKER = "ltfast-run.json"
LOCK = "ltfast.lock"
MARKER_FORMAT = "ltfast-run"
CONFIG = "config.yaml"
DATASET = "dataset.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
LAST = "last.pt"
BEST = "best.pt"
REPORT = "report.md"
PLOTS = (
    "class_distribution",
    "per_class_accuracy",
    "learning_curves",
    "sampler_probabilities",
    "class_weights",
)
REPORT_FILES = (REPORT, *(f"{name}.png" for name in PLOTS))
# What ltfast.evaluate and ltfast.tau_norm write (into a run folder, or an --out folder).
EVALUATION_FILES = ("evaluation.json", "evaluation.md")
TAU_NORM_FILES = ("tau_norm.json", "tau_norm.md", "tau_norm.png")
FILES = (
    MARKER,
    CONFIG,
    DATASET,
    METRICS,
    SUMMARY,
    LAST,
    BEST,
    *REPORT_FILES,
    *EVALUATION_FILES,
    *TAU_NORM_FILES,
)
FOLDERS = ("tensorboard", "draws")
# What every line of metrics.jsonl holds at least (training writes more).
METRICS_KEYS = (
    "epoch",
    "lr",
    "train_loss",
    "test_top1",
    "test_balanced_acc",
    "per_class",
    "class_probabilities",
)


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked; the message says why and what to do."""


def writable_folder_problem(path: Path) -> str | None:
    """Why a run folder could not be created or written at `path`, or None. Writes nothing
    that stays: the probe is a temporary file in the nearest existing folder."""
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    existing = path
    while not existing.exists():
        if existing.is_symlink():  # exists() is False for a symlink loop or a missing target
            return f"{existing} is a symlink that leads nowhere (a loop, or a missing target)"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, so {path} cannot be a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"{existing} is not writable ({error.strerror})"
    return None


def check_output_folder(
    out: Path, names: tuple[str, ...], overwrite: bool, own: Path | None = None
) -> None:
    """Refuses an --out folder that cannot be written, or that already holds one of the files
    `names` (replaced only with `overwrite`) unless it is `own`: the run folder whose own
    report or evaluation these files are. Another run's folder is someone else's files too."""
    if problem := writable_folder_problem(out):
        raise RunFolderError(f"out: {problem}")
    if overwrite or (own is not None and out.resolve() == own.resolve()):
        return
    existing = [name for name in names if (out / name).exists()]
    if existing:
        whose = "another run's " if out.is_dir() and RunFolder(out).is_run() else ""
        raise RunFolderError(
            f"out: {out} already holds {whose}{', '.join(existing)}; pass --overwrite to "
            f"replace them, or choose another --out"
        )


@contextlib.contextmanager
def _naming(path: Path):
    """An OSError of a write (a full disk's ENOSPC carries no file name) names `path`."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error


class FolderBusy(RunFolderError):
    """Another process writes the folder."""


def busy_message(folder: Path, holder: str) -> str:
    return (
        f"{folder} is being written by {holder}; one process writes a folder at a time. Wait "
        f"for it to finish, or stop it (it checkpoints on Ctrl-C or SIGTERM)"
    )


class FolderLock:
    """An exclusive lock on a folder for one writing process: `flock` on `folder/ltfast.lock`,
    which also says who holds it (process id, host, command, since when). The kernel drops the
    lock when the process ends, SIGKILL included; the file itself stays, harmless."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self.descriptor: int | None = None

    def acquire(self) -> None:
        """Takes the lock at once, or raises FolderBusy naming the process that holds it."""
        if self.descriptor is not None:
            return
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise FolderBusy(busy_message(self.path.parent, self.holder())) from None
        os.ftruncate(descriptor, 0)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv),
            "since": time.strftime("%FT%T%z"),
        }
        os.write(descriptor, (json.dumps(holder) + "\n").encode())
        self.descriptor = descriptor

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)  # closing the only descriptor drops the flock
            self.descriptor = None

    def holder(self) -> str:
        """Who holds the lock, as recorded in the lock file."""
        try:
            found = json.loads(self.path.read_text())
            pid, host, command, since = (found[k] for k in ("pid", "host", "command", "since"))
            return f"process {pid} on {host} ({command}, since {since})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def busy(self) -> str | None:
        """Who else holds the lock now, or None when it is free or ours (probed, not kept)."""
        if self.descriptor is not None or not self.path.is_file():
            return None
        probe = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self.holder()
        finally:
            os.close(probe)  # drops the probe's lock, if it got it
        return None


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.lock = FolderLock(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # ----- what the folder is -------------------------------------------------------------

    def is_run(self) -> bool:
        """Whether the folder holds ltfast's marker (a damaged marker raises)."""
        marker = self.file(MARKER)
        if not marker.is_file():
            return False
        try:
            found = json.loads(marker.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunFolderError(
                f"{marker} is damaged ({error}); if {self.path} is an ltfast run, rewrite it as "
                f'{{"format": "{MARKER_FORMAT}"}}, otherwise remove it'
            ) from None
        return isinstance(found, dict) and found.get("format") == MARKER_FORMAT

    def has_checkpoint(self) -> bool:
        return self.file(LAST).is_file()

    def foreign_files(self) -> list[str]:
        """ltfast's file names that an unmarked folder already holds (ltfast's to refuse)."""
        return [n for n in (*FILES, *FOLDERS) if self.file(n).exists()]

    def check_can_start(self, overwrite: bool, resuming_here: bool = False) -> None:
        """Raises RunFolderError unless a run may be written here; writes nothing.

        `resuming_here`: the run continues the checkpoint of this very folder.
        """
        problem = writable_folder_problem(self.path)
        if problem:
            raise RunFolderError(f"out: {problem}; --out takes a folder that ltfast can write")
        if not self.path.is_dir():
            return
        holder = self.lock.busy()
        if holder is not None:
            raise FolderBusy(f"out: {busy_message(self.path, holder)}")
        if not self.is_run():
            clashes = self.foreign_files()
            if self.file(MARKER).exists():  # is_run() is False: the marker's name, not a file
                raise RunFolderError(
                    f"out: {self.file(MARKER)} is not ltfast's marker file (it is a folder or "
                    f"another non-file), so {self.path} is not an ltfast run folder; ltfast "
                    f"does not overwrite what it did not write, even with --overwrite. Choose "
                    f"another --out, or move it"
                )
            if clashes:
                raise RunFolderError(
                    f"out: {self.path} is not an ltfast run folder (it has no {MARKER}) but "
                    f"holds {', '.join(clashes)}; ltfast does not overwrite files it did not "
                    f"write, even with --overwrite. Choose another --out, or move those files"
                )
            return
        if resuming_here or overwrite:
            return
        if self.has_checkpoint():
            raise RunFolderError(
                f"out: {self.path} already holds a run; pass --overwrite to replace it, or "
                f"--resume {self.path} to continue it"
            )
        raise RunFolderError(
            f"out: {self.path} holds a run that stopped before its first checkpoint (nothing "
            f"to resume); pass --overwrite to start it again"
        )

    def claim(self, overwrite: bool, resuming_here: bool = False) -> None:
        """Makes the folder this run's, and this process its only writer until release():
        takes the folder's lock (FolderBusy if another process holds it), checks again under
        it that the run may start (another process may have claimed the folder since the
        first check), then with `overwrite` deletes the previous run's files (and only those);
        in every case removes half-written files left by a killed process. Call once the run
        has been validated, after check_can_start()."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self.check_can_start(overwrite, resuming_here)
        except RunFolderError:
            self.release()
            raise
        if overwrite and self.is_run():
            for name in FILES:
                self.file(name).unlink(missing_ok=True)
            for name in FOLDERS:
                shutil.rmtree(self.file(name), ignore_errors=True)
        for partial in self.path.glob(".*.partial"):
            partial.unlink(missing_ok=True)
        marker = {"format": MARKER_FORMAT, "version": 1, "created": time.strftime("%FT%T%z")}
        self.write_text(MARKER, json.dumps(marker) + "\n")

    def release(self) -> None:
        """Lets other processes write the folder (the end of the process does so too)."""
        self.lock.release()

    # ----- the files ----------------------------------------------------------------------

    def write_text(self, name: str, text: str) -> None:
        """Atomic: a reader sees the old file or the new one, never half of either."""
        partial = self.file(f".{name}.partial")
        try:
            with _naming(self.file(name)):
                partial.write_text(text)
            os.replace(partial, self.file(name))
        finally:
            partial.unlink(missing_ok=True)

    def _read(self, name: str) -> str:
        path = self.file(name)
        if not path.is_file():
            raise FileNotFoundError(f"{self.path} is not a complete run folder: it has no {name}")
        try:
            return path.read_text()
        except UnicodeDecodeError:
            raise RunFolderError(f"{path} is not a text file") from None

    def write_config(self, values: dict[str, Any]) -> None:
        self.write_text(CONFIG, yaml.safe_dump(values, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        return self._read_mapping(CONFIG, yaml.safe_load, yaml.YAMLError, "YAML")

    def write_json(self, name: str, value: dict[str, Any]) -> None:
        self.write_text(name, json.dumps(value, indent=2) + "\n")

    def read_json(self, name: str) -> dict[str, Any]:
        return self._read_mapping(name, json.loads, json.JSONDecodeError, "JSON")

    def _read_mapping(
        self,
        name: str,
        parse: Callable[[str], Any],
        error_type: type[Exception],
        language: str,
    ) -> dict[str, Any]:
        try:
            value = parse(self._read(name))
        except error_type as error:
            raise RunFolderError(f"{self.file(name)} is not valid {language}: {error}") from None
        if not isinstance(value, dict):
            raise RunFolderError(f"{self.file(name)} does not hold a {language} mapping")
        return value

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        self.write_text(METRICS, "".join(json.dumps(r) + "\n" for r in records))

    def append_metrics(self, record: dict[str, Any]) -> None:
        with _naming(self.file(METRICS)), open(self.file(METRICS), "a") as log:
            log.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """The epochs of metrics.jsonl. A damaged line (a process killed while writing it) is
        named on stderr and skipped, so that what was written before it still counts."""
        path = self.file(METRICS)
        records = []
        for number, line in enumerate(self._read(METRICS).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                record, reason = None, f"not valid JSON ({error.msg})"
            else:
                missing = [
                    k for k in METRICS_KEYS if not isinstance(record, dict) or k not in record
                ]
                reason = f"not a record of an epoch (it lacks {', '.join(missing)})"
            if not isinstance(record, dict) or any(k not in record for k in METRICS_KEYS):
                print(
                    f"warning: {path} line {number} is {reason}; skipped (a run killed while "
                    f"writing it leaves such a line)",
                    file=sys.stderr,
                )
                continue
            records.append(record)
        return records


# ----- sweeps -----------------------------------------------------------------------------

SWEEP_MARKER = "ltfast-sweep.json"
SWEEP_FORMAT = "ltfast-sweep"
SWEEP_FILES = ("summary.md", "summary.csv", "summary.png")


class SweepFolder:
    """A sweep (see ltfast.sweep): the marker `ltfast-sweep.json` holding the plan, one run
    folder per config and seed at `NAME/seedS/`, each run's output in `logs/NAME-seedS.log`,
    and the summary files."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.lock = FolderLock(self.path)

    def run(self, name: str, seed: int) -> Path:
        return self.path / name / f"seed{seed}"

    def log(self, name: str, seed: int) -> Path:
        return self.path / "logs" / f"{name}-seed{seed}.log"

    def file(self, name: str) -> Path:
        return self.path / name

    def is_sweep(self) -> bool:
        return self.file(SWEEP_MARKER).is_file()

    def read_plan(self) -> dict[str, Any]:
        marker = self.file(SWEEP_MARKER)
        try:
            found = json.loads(marker.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{self.path} is not an ltfast sweep (no {SWEEP_MARKER})"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunFolderError(f"{marker} is damaged: {error}") from None
        if not isinstance(found, dict) or found.get("format") != SWEEP_FORMAT:
            raise RunFolderError(f"{marker} is not an ltfast sweep marker")
        return found["plan"]

    def claim(self, plan: dict[str, Any]) -> None:
        """Makes the folder this sweep's, and this process its only runner until release().
        Refuses a folder that holds anything but this very sweep: another sweep's plan (named
        by its differences), or files of someone else; and one another sweep process runs."""
        if problem := writable_folder_problem(self.path):
            raise RunFolderError(f"out: {problem}")
        self._refuse_foreign()
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self._claim(plan)
        except RunFolderError:
            self.release()
            raise

    def release(self) -> None:
        self.lock.release()

    def _refuse_foreign(self) -> None:
        if self.is_sweep() or not self.path.is_dir():
            return
        if any(p.name != LOCK for p in self.path.iterdir()):
            raise RunFolderError(
                f"out: {self.path} is not empty and holds no ltfast sweep; choose another --out"
            )

    def _claim(self, plan: dict[str, Any]) -> None:
        if self.is_sweep():
            saved = self.read_plan()
            if saved != plan:
                keys = sorted(k for k in plan.keys() | saved.keys() if plan.get(k) != saved.get(k))
                raise RunFolderError(
                    f"out: {self.path} holds a sweep of another plan (its {', '.join(keys)} "
                    f"differ); rerun it with the same configs, seeds and --set, or choose "
                    f"another --out"
                )
            return
        self._refuse_foreign()
        marker = {"format": SWEEP_FORMAT, "version": 1, "plan": plan}
        RunFolder(self.path).write_text(SWEEP_MARKER, json.dumps(marker, indent=2) + "\n")
