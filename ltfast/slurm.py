"""Sweeps on a Slurm cluster, through submitit (`python -m ltfast.sweep ... --launcher slurm`).

Every (recipe, seed) training is one task of a Slurm job array; a two-stage recipe's stage 2
is its own job, submitted with an `afterok` dependency on its stage 1's task. The sweep folder
keeps the job ids beside the plan (`slurm/jobs.json`) and submitit's files (`slurm/JOBID_*`).

The run folders are the truth, not Slurm's accounting, which may be disabled (`sacct`): a run
has finished when its summary.json exists; it is queued or running while `squeue` lists its
job; otherwise it failed (or its job vanished). Rerunning the sweep command submits again the
failed, vanished and never-submitted runs, which resume from their last.pt, cancels a stage 2
left waiting on a failed stage 1 (Slurm's DependencyNeverSatisfied) to submit it anew, and
leaves the rest alone.

A task runs `python -m ltfast.train` as a child, its output appended to the sweep's log of the
run, as the local launcher does. On submitit's preemption or time-limit signal (SIGUSR2 unless
SUBMITIT_PREEMPT_SIGNAL names another) the training finishes its step and writes last.pt, as
for SIGTERM, and submitit's checkpoint hook waits for it and requeues the task, which then
resumes from last.pt. A task of several GPUs runs one rank per GPU, each a Slurm task, on
torch.distributed's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) taken from submitit's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ltfast.parent import child_environment
from ltfast.run_folder import SUMMARY, RunFolder, SweepFolder
from ltfast.sweep import Job, RunState, figure, log_tail, training_command

JOBS = "jobs.json"  # in the sweep's slurm/ folder: each run's job id and submissions
QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"}
NEVER_STARTS = "DependencyNeverSatisfied"
QUEUE_FORMAT = "JobArrayID:|,State:|,Reason:|,RestartCnt:|"  # "|" after each field
# A preemption sends SIGTERM, then submitit's signal (its own test helper does the same), so the
# training may stop, with last.pt, before the task hears the signal that requeues it.
STOPPED = {128 + signal.SIGTERM, 128 + signal.SIGUSR2}
PREEMPT_GRACE_S = 30


def minutes(text: str) -> int:
    """--slurm-time in sbatch's forms (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S), as whole minutes,
    rounded up: submitit takes minutes."""
    days, dash, rest = text.partition("-") if "-" in text else ("0", "", text)
    parts = rest.split(":")
    if len(parts) > 3 or not all(p.isdigit() for p in (days, *parts)):
        raise ValueError(f"--slurm-time takes M, M:S, H:M:S or D-H[:M[:S]], got {text!r}")
    numbers = [int(p) for p in parts] + [0, 0]
    if dash or len(parts) == 3:
        hours, mins, secs = numbers[:3]
    else:
        hours, (mins, secs) = 0, numbers[:2]
    total = (int(days) * 24 + hours) * 60 + mins + (secs > 0)
    if total < 1:
        raise ValueError(f"--slurm-time must be at least a second, got {text!r}")
    return total


@dataclass(frozen=True)
class SlurmOptions:
    """What each training's job asks Slurm for (the --slurm-* flags)."""

    partition: str | None = None
    time_min: int = 24 * 60
    gpus_per_task: int = 0  # GPUs of one training; one rank each under torch.distributed
    cpus_per_task: int | None = None  # of each rank
    mem: str | None = None
    array_parallelism: int = 256
    account: str | None = None
    qos: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def parameters(self) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters."""
        ranks = max(1, self.gpus_per_task)
        given = {
            "partition": self.partition,
            "time": self.time_min,
            "ntasks_per_node": ranks,
            "gpus_per_node": self.gpus_per_task or None,
            "cpus_per_task": self.cpus_per_task,
            "mem": self.mem,
            "array_parallelism": self.array_parallelism,
            "account": self.account,
            "qos": self.qos,
            "additional_parameters": dict(self.extra),
        }
        return {key: value for key, value in given.items() if value is not None}


@dataclass
class Training:
    """One run of the sweep as a Slurm task: picklable, so submitit can ship it. The command
    is decided when the task starts, from its run folder, so a requeued task resumes."""

    sweep: Path
    job: Job  # without its process
    plan: dict
    _child: subprocess.Popen | None = field(default=None, repr=False)
    _ended: threading.Event | None = field(default=None, repr=False)

    def __call__(self) -> str:
        import submitit

        environment = submitit.JobEnvironment()
        folder = SweepFolder(self.sweep)
        name = f"{self.job.recipe.name} seed {self.job.seed}"
        command = training_command(self.job, self.plan)
        if command is None:
            return f"{name}: finished"
        log = folder.log(self.job.recipe.name, self.job.seed)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = child_environment({**os.environ, **rank_environment(environment)})
        if "SLURM_CPUS_PER_TASK" in env:  # the threads of what this rank was given
            env.setdefault("OMP_NUM_THREADS", env["SLURM_CPUS_PER_TASK"])
        with open(log, "a") as output:
            output.write(f"\n$ {' '.join(command)}  # Slurm job {environment.job_id}\n")
            output.flush()
            self._child = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=env
            )
        code = self._wait()
        if code in STOPPED:  # by a signal, with last.pt: give the preemption signal its time
            time.sleep(PREEMPT_GRACE_S)  # (its handler requeues the task and exits from here)
        if code != 0:
            raise RuntimeError(f"{name}: ltfast.train exit {code}; see {log}")
        return f"{name}: finished"

    def _wait(self) -> int:
        """Waits for the training from a thread, so that the preemption handler, which runs
        in this (the main) thread, can wait for it too."""
        assert self._child is not None
        ended, child = threading.Event(), self._child
        self._ended = ended

        def wait() -> None:
            child.wait()
            ended.set()

        threading.Thread(target=wait, daemon=True).start()
        ended.wait()
        return child.returncode

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook on preemption or the time limit: the training stops at its next
        step with last.pt (Slurm signals it too; the signal is sent again in case it was
        not), then the same task is requeued to resume."""
        import submitit

        if self._child is not None and self._ended is not None:
            if self._child.poll() is None:
                self._child.send_signal(signal.SIGTERM)
            self._ended.wait()
        return submitit.helpers.DelayedSubmission(self)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_child"] = state["_ended"] = None
        return state


def rank_environment(environment: Any) -> dict[str, str]:
    """torch.distributed's variables for this rank, from submitit's JobEnvironment: nothing
    for a one-rank task, which trains as one process."""
    if environment.num_tasks == 1:
        return {}
    return {
        "RANK": str(environment.global_rank),
        "LOCAL_RANK": str(environment.local_rank),
        "WORLD_SIZE": str(environment.num_tasks),
        "LOCAL_WORLD_SIZE": str(environment.num_tasks // environment.num_nodes),
        "MASTER_ADDR": environment.hostnames[0],
        "MASTER_PORT": str(20000 + int(re.sub(r"\D", "", environment.job_id)) % 20000),
    }


# ----- the sweep folder's record of its jobs ------------------------------------------------


def key(name: str, seed: int) -> str:
    return f"{name}/seed{seed}"


def read_jobs(folder: SweepFolder) -> dict[str, dict[str, Any]]:
    path = folder.file("slurm") / JOBS
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is damaged ({error}); remove it to submit every run again"
        ) from None


def write_jobs(folder: SweepFolder, jobs: dict[str, dict[str, Any]]) -> None:
    slurm = folder.file("slurm")
    slurm.mkdir(parents=True, exist_ok=True)
    RunFolder(slurm).write_text(JOBS, json.dumps(jobs, indent=2, sort_keys=True) + "\n")


# ----- what Slurm says ----------------------------------------------------------------------


def queue() -> dict[str, tuple[str, str, int]]:
    """Every job Slurm still holds: id -> (state, reason, requeues); a line per array task."""
    command = ["squeue", "--noheader", "--array", f"--Format={QUEUE_FORMAT}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    except FileNotFoundError:
        raise ValueError(
            "--launcher slurm: squeue is not on PATH (is this a Slurm cluster?)"
        ) from None
    except subprocess.CalledProcessError as error:
        raise ValueError(f"squeue failed: {error.stderr.strip()}") from None
    found = {}
    for line in done.stdout.splitlines():
        job_id, state, reason, restarts = line.strip().split("|")[:4]
        found[job_id] = (state, reason, int(restarts or 0))
    return found


def observe(folder: SweepFolder, jobs: list[Job]) -> list[RunState]:
    """Each run's state, from its run folder first and from the queue after."""
    recorded, held = read_jobs(folder), queue()
    states = []
    for job in jobs:
        job_id = recorded.get(key(job.recipe.name, job.seed), {}).get("job_id")
        summary = RunFolder(job.folder).file(SUMMARY)
        if summary.is_file():
            states.append(RunState(job, "finished", job_id, figure(summary)))
        elif job_id is None:
            states.append(RunState(job, "not submitted"))
        elif job_id in held:
            state, reason, again = held[job_id]
            note = f", requeued {again} time{'s' * (again != 1)}" if again else ""
            if reason == NEVER_STARTS:
                states.append(RunState(job, "blocked", job_id, "its stage 1 failed"))
            elif state in QUEUED:
                states.append(RunState(job, "pending", job_id, f"{state.lower()}, {reason}{note}"))
            else:
                states.append(RunState(job, "running", job_id, f"{state.lower()}{note}"))
        else:
            states.append(RunState(job, "failed", job_id, log_tail(folder, job)))
    return states


# ----- submitting ---------------------------------------------------------------------------


def executor(folder: SweepFolder, options: SlurmOptions) -> Any:
    try:
        import submitit
    except ImportError:
        raise ValueError("--launcher slurm needs submitit: pip install 'ltfast[slurm]'") from None
    slurm = folder.file("slurm")
    slurm.mkdir(parents=True, exist_ok=True)
    run = submitit.SlurmExecutor(folder=slurm / "%j")
    run.update_parameters(job_name=f"ltfast-{folder.path.name}", **options.parameters())
    return run


def submit(
    folder: SweepFolder,
    plan: dict,
    states: list[RunState],
    options: SlurmOptions,
    say: Callable[[str], None],
) -> int:
    """Submits every run that is neither finished nor queued nor running: the ones that can
    start now as one job array, then each stage 2 after its stage 1's job; returns how many."""
    recorded = read_jobs(folder)
    active = {
        key(r.job.recipe.name, r.job.seed): str(r.job_id)
        for r in states
        if r.state in ("pending", "running")
    }
    blocked = [r for r in states if r.state == "blocked"]
    if blocked:
        subprocess.run(["scancel", *(str(r.job_id) for r in blocked)], check=False, timeout=60)
    todo = [r.job for r in states if r.state in ("failed", "not submitted", "blocked")]
    finished = {key(r.job.recipe.name, r.job.seed) for r in states if r.state == "finished"}

    def stage1_key(job: Job) -> str:
        return "" if job.recipe.after is None else key(job.recipe.after, job.seed)

    run = executor(folder, options)
    free = [j for j in todo if not stage1_key(j) or stage1_key(j) in finished]
    submitted = refused_as_error(run.submit_array, [task(folder, plan, j) for j in free])
    for job, handle in zip(free, submitted, strict=True):
        active[key(job.recipe.name, job.seed)] = handle.job_id
    waiting = [j for j in todo if j not in free]
    while waiting:  # a stage 2 after its stage 1, whose job id is known by now
        ready = [j for j in waiting if stage1_key(j) in active]
        if not ready:
            names = ", ".join(f"{j.recipe.name} seed {j.seed}" for j in waiting)
            raise ValueError(f"no stage 1 job to wait on for {names}")
        for job in ready:
            run.update_parameters(dependency=f"afterok:{active[stage1_key(job)]}")
            handle = refused_as_error(run.submit, task(folder, plan, job))
            active[key(job.recipe.name, job.seed)] = handle.job_id
            submitted.append(handle)
            waiting.remove(job)
    for job in todo:
        entry = recorded.setdefault(key(job.recipe.name, job.seed), {"submissions": 0})
        entry["job_id"] = active[key(job.recipe.name, job.seed)]
        entry["submissions"] += 1
        say(f"submitted {job.recipe.name} seed {job.seed} as Slurm job {entry['job_id']}")
    write_jobs(folder, recorded)
    return len(todo)


def refused_as_error(submit: Callable[[Any], Any], what: Any) -> Any:
    """sbatch's refusal (an unknown partition, a time over the limit) as a ValueError that
    quotes it; nothing is recorded for what was refused."""
    from submitit.core.utils import FailedJobError

    if what == []:
        return []
    try:
        return submit(what)
    except FailedJobError as error:
        raise ValueError(f"Slurm refused the submission: {' '.join(str(error).split())}") from None
    except FileNotFoundError as error:
        raise ValueError(f"--launcher slurm: {error.filename} is not on PATH") from None


def task(folder: SweepFolder, plan: dict, job: Job) -> Training:
    return Training(folder.path, replace(job, process=None), plan)
