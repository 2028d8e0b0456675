"""Sweeps: every config times every seed, each as its own run, then one comparison table.

    python -m ltfast.sweep configs/cifar10_lt/ce.yaml configs/cifar10_lt/crt.yaml \\
        --seeds 0 1 2 --jobs 2 --out runs/sweep [--set epochs=10 ...]

Each run is `python -m ltfast.train` in its own process, writing `OUT/NAME/seedS/` (NAME: the
config's file name) and its output to `OUT/logs/`. Rerunning the same command skips the runs
that finished, resumes those that were interrupted and starts the rest; Ctrl-C or SIGTERM
stops every run at its next step with a checkpoint. A config whose `init_from` names another
config of the sweep (a two-stage recipe) starts from that config's run of the same seed, once
it has finished. At the end `summary.md`, `summary.csv` and `summary.png` compare the configs:
mean and standard deviation over seeds of the final and best epochs, beside the published
figure (see ltfast.report). A config that trains the same experiment as an earlier one (see
ltfast.config.experiment) is named in a warning before any run starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ltfast.config import (
    experiment,
    from_mapping,
    is_text_field,
    load_yaml,
    parse_yaml,
    resolve,
    user_path,
)
from ltfast.parent import child_environment
from ltfast.run_folder import SUMMARY, RunFolder, SweepFolder

POLL_S = 0.2
LOG_TAIL = 5  # lines of a failed run's log that --status shows


@dataclass
class Recipe:
    """One config of the sweep."""

    name: str
    path: Path
    after: str | None  # the recipe whose run of the same seed this one starts from


@dataclass
class Job:
    recipe: Recipe
    seed: int
    folder: Path
    stage1: Path | None = None  # the run folder a two-stage recipe starts from
    process: subprocess.Popen | None = None
    outcome: str = ""  # "", "waiting", "done", "failed", "skipped", "stopped"


def recipe_names(paths: list[Path]) -> list[str]:
    """Each config's file name, with its folder's name where two file names clash."""
    stems = [p.stem for p in paths]
    names = [f"{p.parent.name}-{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    if len(set(names)) < len(names):
        raise ValueError(f"configs: the same config is given twice: {', '.join(map(str, paths))}")
    return names


def read_recipes(paths: list[Path]) -> list[Recipe]:
    """The sweep's configs, with the stage-1 config each two-stage config starts from."""
    resolved = [p.expanduser().resolve() for p in paths]
    names = dict(zip(resolved, recipe_names(resolved), strict=True))
    recipes = []
    for path in resolved:
        init_from = str(load_yaml(path).get("init_from", ""))
        after = None
        if init_from.endswith((".yaml", ".yml")):
            stage1 = (path.parent / init_from).resolve()
            if stage1 not in names:
                raise ValueError(
                    f"{path} starts from {stage1} (init_from), which is not in this sweep; "
                    f"add it to the configs"
                )
            after = names[stage1]
        recipes.append(Recipe(names[path], path, after))
    by_name = {r.name: r for r in recipes}
    for recipe in recipes:  # a chain of init_from must end at a config that starts afresh
        seen, step = {recipe.name}, recipe.after
        while step is not None:
            if step in seen:
                raise ValueError(f"configs: init_from goes round in a circle through {step}")
            seen.add(step)
            step = by_name[step].after
    return recipes


def override_flags(overrides: dict[str, Any]) -> list[str]:
    """`--set` values as ltfast.train flags."""
    flags = []
    for name, value in overrides.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, list):
            flags += [flag, *map(str, value)]
        else:
            flags.append(f"{flag}={value}")  # one token: a value like -1e30 is no flag
    return flags


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """FIELD=VALUE pairs (VALUE in YAML), checked against the config's fields and types."""
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"--set takes FIELD=VALUE, got {pair!r}")
        name = name.strip().replace("-", "_")
        # A text field takes the text as written: YAML would read `~` as null, `1e3` as text.
        values[name] = text if is_text_field(name) else parse_yaml(text)
    checked = from_mapping(values, "--set")
    for name in ("out", "seed", "config", "resume", "init_from"):
        if name in checked:
            raise ValueError(f"--set {name}: the sweep sets it for each run")
    return checked


def jobs_of(folder: SweepFolder, recipes: list[Recipe], plan: dict) -> list[Job]:
    """Every recipe times every seed, each with its run folder (and its stage 1's)."""
    return [
        Job(
            recipe,
            seed,
            folder.run(recipe.name, seed),
            None if recipe.after is None else folder.run(recipe.after, seed),
        )
        for recipe in recipes
        for seed in plan["seeds"]
    ]


def training_command(job: Job, plan: dict) -> list[str] | None:
    """The ltfast.train command that finishes `job` from where its run folder stands, or None
    when it has finished."""
    train = [sys.executable, "-m", "ltfast.train", "--quiet"]
    folder = RunFolder(job.folder)
    if folder.file(SUMMARY).is_file():
        return None
    if folder.has_checkpoint():
        return [*train, "--resume", str(job.folder)]
    command = [*train, "--config", str(job.recipe.path), "--out", str(job.folder)]
    command += ["--seed", str(job.seed), *override_flags(plan["set"])]
    if plan["vary_subset"]:
        command += ["--subset-seed", str(job.seed)]
    if job.stage1 is not None:
        command += ["--init-from", str(job.stage1)]
    if folder.path.is_dir() and folder.is_run():  # killed before its first checkpoint
        command.append("--overwrite")
    return command


@dataclass
class RunState:
    """What --status says of one run."""

    job: Job
    state: str  # finished, running, interrupted, not started; on Slurm also pending, failed,
    # blocked (waiting on a stage 1 that failed) and not submitted
    job_id: str | None = None
    detail: str = ""


def local_state(job: Job) -> RunState:
    """A run's state from its folder alone (the local launcher)."""
    folder = RunFolder(job.folder)
    if folder.file(SUMMARY).is_file():
        return RunState(job, "finished", detail=figure(folder.file(SUMMARY)))
    holder = folder.lock.busy() if folder.path.is_dir() else None
    if holder is not None:
        return RunState(job, "running", detail=holder)
    if folder.has_checkpoint():
        return RunState(job, "interrupted", detail="resumes from last.pt on a rerun")
    return RunState(job, "not started")


def figure(summary: Path) -> str:
    try:
        final = json.loads(summary.read_text())["final"]
        return f"final top-1 {100 * final['test_top1']:.2f} at epoch {final['epoch']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "summary.json unreadable"


def log_tail(folder: SweepFolder, job: Job) -> str:
    log = folder.log(job.recipe.name, job.seed)
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"no log at {log}"
    return "\n".join([f"the end of {log}:", *lines[-LOG_TAIL:]])


def status_lines(states: list[RunState]) -> list[str]:
    lines = []
    for run in states:
        where = f" (job {run.job_id})" if run.job_id else ""
        head = f"{run.job.recipe.name} seed {run.job.seed}{where}: {run.state}"
        detail = run.detail.splitlines()
        if run.state == "failed":
            lines += [head, *("    " + line for line in detail)]
        else:
            lines.append(head + (f" ({detail[0]})" if detail and detail[0] != run.state else ""))
    return lines


class Sweep:
    def __init__(self, folder: SweepFolder, recipes: list[Recipe], plan: dict, jobs: int):
        self.folder, self.plan, self.jobs = folder, plan, jobs
        self.queue = jobs_of(folder, recipes, plan)
        self.stop_signal: int | None = None

    # ----- one run ------------------------------------------------------------------------

    def stage1_of(self, job: Job) -> Job | None:
        if job.recipe.after is None:
            return None
        return next(
            j for j in self.queue if j.recipe.name == job.recipe.after and j.seed == job.seed
        )

    def command(self, job: Job) -> list[str] | None:
        return training_command(job, self.plan)

    def start(self, job: Job, bar: tqdm) -> bool:
        """Starts what is left of `job`; False when nothing is (it finished meanwhile)."""
        command = self.command(job)
        if command is None:
            job.outcome = "done"
            bar.update()
            return False
        log = self.folder.log(job.recipe.name, job.seed)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as output:
            output.write(f"\n$ {' '.join(command)}\n")
            output.flush()
            job.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=self.environment()
            )
        how = "resumed" if "--resume" in command else "started"
        bar.write(f"{how} {job.recipe.name} seed {job.seed} (log: {log})")
        return True

    def writer_elsewhere(self, job: Job, bar: tqdm) -> bool:
        """Whether another process still writes the job's folder (a training of an earlier
        sweep process that is ending); said once per job."""
        holder = RunFolder(job.folder).lock.busy()
        if holder is not None and job.outcome != "waiting":
            job.outcome = "waiting"
            bar.write(f"waiting for {holder} to leave {job.folder}")
        return holder is not None

    def environment(self) -> dict[str, str]:
        """The runs share the CPU cores, each its part for its threads; and end with the sweep."""
        env = child_environment(dict(os.environ))
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.jobs)))
        return env

    # ----- all of them --------------------------------------------------------------------

    def ready(self, job: Job) -> bool | None:
        """Whether `job` can start now; None when it never can (its stage 1 failed)."""
        stage1 = self.stage1_of(job)
        if stage1 is None or stage1.outcome == "done":
            return True
        return None if stage1.outcome in ("failed", "skipped") else False

    def run(self) -> list[Job]:
        """Runs what is left of every job, `jobs` at a time, until all are done or a signal
        stops them; returns the jobs with their outcomes."""
        waiting = [job for job in self.queue if self.command(job) is not None]
        for job in self.queue:
            job.outcome = "" if job in waiting else "done"
        running: list[Job] = []
        bar = tqdm(
            total=len(self.queue), initial=len(self.queue) - len(waiting), desc="sweep", unit="run"
        )
        with self.stop_on_signals():
            while (waiting or running) and self.stop_signal is None:
                for job in list(waiting):
                    ready = self.ready(job)
                    if ready is None:
                        job.outcome = "skipped"
                        waiting.remove(job)
                        bar.write(f"skipped {job.recipe.name} seed {job.seed}: its stage 1 failed")
                    elif ready and len(running) < self.jobs:
                        if self.writer_elsewhere(job, bar):
                            continue
                        waiting.remove(job)
                        if self.start(job, bar):
                            running.append(job)
                running = [job for job in running if not self.finished(job, bar)]
                time.sleep(POLL_S)
            self.stop(running, bar)
        bar.close()
        return self.queue

    def finished(self, job: Job, bar: tqdm) -> bool:
        assert job.process is not None
        code = job.process.poll()
        if code is None:
            return False
        log = self.folder.log(job.recipe.name, job.seed)
        if code == 0:
            job.outcome = "done"
            bar.update()
        elif self.stop_signal is not None:
            job.outcome = "stopped"
        else:
            job.outcome = "failed"
            bar.write(f"FAILED {job.recipe.name} seed {job.seed} (exit {code}); see {log}")
        return True

    def stop(self, running: list[Job], bar: tqdm) -> None:
        """Asks the running runs to stop at their next step (they checkpoint) and waits."""
        for job in running:
            assert job.process is not None
            if job.process.poll() is None:
                job.process.send_signal(signal.SIGTERM)
        for job in running:
            assert job.process is not None
            job.process.wait()
            self.finished(job, bar)

    @contextlib.contextmanager
    def stop_on_signals(self):
        """SIGINT / SIGTERM stop the sweep: its runs checkpoint and exit, and so does it."""

        def handle(signum, frame) -> None:
            self.stop_signal = signum

        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def make_plan(recipes: list[Recipe], seeds: list[int], overrides: dict, vary_subset: bool) -> dict:
    return {
        "configs": [
            {"name": r.name, "path": str(r.path), "text": r.path.read_text(), "after": r.after}
            for r in recipes
        ],
        "seeds": seeds,
        "set": overrides,
        "vary_subset": vary_subset,
    }


def check_recipes(recipes: list[Recipe], folder: SweepFolder, plan: dict) -> list[str]:
    """Resolves every run's config before any run starts, so a bad one is named at once; the
    warnings for recipes that train the same experiment as an earlier one."""
    first: dict[str, str] = {}  # a run's experiment -> the recipe that trains it first
    warnings = []
    for recipe in recipes:
        for seed in plan["seeds"]:
            flags = {**plan["set"], "seed": seed, "out": str(folder.run(recipe.name, seed))}
            if plan["vary_subset"]:
                flags["subset_seed"] = seed
            if recipe.after is not None:
                flags["init_from"] = str(folder.run(recipe.after, seed))
            try:
                config = resolve(flags, recipe.path)
            except ValueError as error:
                raise ValueError(f"{recipe.path} with seed {seed}: {error}") from None
            trained, reason = experiment(config)
            earlier = first.setdefault(trained, recipe.name)
            if earlier != recipe.name and seed == plan["seeds"][0]:
                why = f" ({reason})" if reason else ""
                warnings.append(
                    f"{recipe.name} trains the same experiment as {earlier}{why}: its runs "
                    f"repeat {earlier}'s; leave one out unless both rows are wanted"
                )
    return warnings


def parser() -> argparse.ArgumentParser:
    args = argparse.ArgumentParser(
        prog="python -m ltfast.sweep",
        description="Run every config times every seed as its own run folder, then write a "
        "comparison table. Rerun the same command to finish an interrupted sweep.",
    )
    args.add_argument("configs", nargs="+", type=user_path, help="YAML configs (configs/...)")
    args.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: 0)")
    args.add_argument("--jobs", type=int, default=1, help="runs at once (default: 1)")
    args.add_argument("--out", type=user_path, default=Path("runs/sweep"), help="sweep folder")
    args.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a config field for every run, e.g. --set epochs=10 --set data_root=data",
    )
    args.add_argument(
        "--vary-subset",
        action="store_true",
        help="each seed also draws its own long-tailed subset (subset_seed = seed)",
    )
    args.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local: the runs are child processes of this one (default); slurm: each run is "
        "a task of a Slurm job array, submitted through submitit, and this command returns",
    )
    args.add_argument(
        "--status",
        action="store_true",
        help="print each run's state (finished with its figure, running, pending, failed with "
        "its log's end, requeued N times) and exit; starts and submits nothing",
    )
    slurm = args.add_argument_group("Slurm (with --launcher slurm)")
    slurm.add_argument("--slurm-partition", metavar="NAME", help="default: the cluster's")
    slurm.add_argument(
        "--slurm-time",
        default="24:00:00",
        metavar="TIME",
        help="each training's time limit, as sbatch takes it: M, M:S, H:M:S or D-H[:M[:S]] "
        "(default: 24:00:00)",
    )
    slurm.add_argument(
        "--slurm-gpus-per-task",
        type=int,
        default=0,
        metavar="N",
        help="GPUs of each training, one torch.distributed rank each (default: 0)",
    )
    slurm.add_argument("--slurm-cpus-per-task", type=int, metavar="N", help="CPUs of each rank")
    slurm.add_argument("--slurm-mem", metavar="MEM", help="memory of each training, e.g. 16G")
    slurm.add_argument(
        "--slurm-array-parallelism",
        type=int,
        default=256,
        metavar="N",
        help="array tasks running at once (default: 256)",
    )
    slurm.add_argument("--slurm-account", metavar="NAME", help="account to charge")
    slurm.add_argument("--slurm-qos", metavar="NAME", help="quality of service")
    slurm.add_argument(
        "--slurm-extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. --slurm-extra constraint=a100",
    )
    return args


def slurm_options(namespace: argparse.Namespace, args: argparse.ArgumentParser):
    """The --slurm-* flags, checked; refused with --launcher local, where they would be lost."""
    from ltfast.slurm import SlurmOptions, minutes

    names = [a.dest for a in args._actions if a.dest.startswith("slurm_")]
    given = [n for n in names if getattr(namespace, n) != args.get_default(n)]
    if namespace.launcher != "slurm":
        if given:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise ValueError(f"{flags}: only with --launcher slurm")
        return None
    for name in ("slurm_gpus_per_task", "slurm_cpus_per_task", "slurm_array_parallelism"):
        value, low = getattr(namespace, name), 0 if name == "slurm_gpus_per_task" else 1
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    extra = {}
    for pair in namespace.slurm_extra:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--slurm-extra takes KEY=VALUE, got {pair!r}")
        extra[name.strip().replace("-", "_")] = value
    return SlurmOptions(
        partition=namespace.slurm_partition,
        time_min=minutes(namespace.slurm_time),
        gpus_per_task=namespace.slurm_gpus_per_task,
        cpus_per_task=namespace.slurm_cpus_per_task,
        mem=namespace.slurm_mem,
        array_parallelism=namespace.slurm_array_parallelism,
        account=namespace.slurm_account,
        qos=namespace.slurm_qos,
        extra=extra,
    )


def print_status(folder: SweepFolder, recipes: list[Recipe], plan: dict, launcher: str) -> None:
    """--status: each run's state, for the plan this folder holds."""
    if folder.is_sweep() and folder.read_plan() != plan:
        raise ValueError(f"out: {folder.path} holds a sweep of another plan")
    jobs = jobs_of(folder, recipes, plan)
    if launcher == "slurm":
        from ltfast.slurm import observe

        states = observe(folder, jobs)
    else:
        states = [local_state(job) for job in jobs]
    print("\n".join(status_lines(states)))


def launch_on_slurm(folder: SweepFolder, recipes: list[Recipe], plan: dict, options) -> None:
    """Submits what is left of the sweep, or writes the table once every run has finished."""
    from ltfast.slurm import observe, submit

    folder = SweepFolder(folder.path.resolve())  # the tasks may start in another folder
    states = observe(folder, jobs_of(folder, recipes, plan))
    if all(state.state == "finished" for state in states):
        from ltfast.report import write_sweep_report

        written = write_sweep_report(folder.path)
        print(f"every run has finished; summary: {', '.join(map(str, written))}")
        return
    count = submit(folder, plan, states, options, print)
    left = sum(state.state in ("pending", "running") for state in states)
    print(
        f"{count} runs submitted, {left} still queued or running; `--status` tells where they "
        f"are, and the same command again submits what failed and, at the end, writes the table"
    )


def main(argv: list[str] | None = None) -> list[Job]:
    args = parser()
    namespace = args.parse_args(argv)
    folder = SweepFolder(namespace.out)
    try:
        if namespace.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {namespace.jobs}")
        if len(set(namespace.seeds)) < len(namespace.seeds) or min(namespace.seeds) < 0:
            raise ValueError(f"--seeds must be distinct and >= 0, got {namespace.seeds}")
        options = slurm_options(namespace, args)
        recipes = read_recipes(namespace.configs)
        overrides = parse_overrides(namespace.set)
        plan = make_plan(recipes, namespace.seeds, overrides, namespace.vary_subset)
        if namespace.status:
            print_status(folder, recipes, plan, namespace.launcher)
            return []
        warnings = check_recipes(recipes, folder, plan)
        folder.claim(plan)
    except (ValueError, OSError) as error:
        args.exit(2, f"{args.prog}: error: {error}\n")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if options is not None:
        try:
            launch_on_slurm(folder, recipes, plan, options)
        except (ValueError, OSError) as error:
            args.exit(1, f"{args.prog}: error: {error}\n")
        finally:
            folder.release()
        return []
    try:
        sweep = Sweep(folder, recipes, plan, namespace.jobs)
        jobs = sweep.run()
        from ltfast.report import write_sweep_report

        written = write_sweep_report(folder.path)
    finally:
        folder.release()  # ends with the process in any case; this is for callers in-process
    print(f"summary: {', '.join(map(str, written))}")
    if sweep.stop_signal is not None:
        print("sweep interrupted; rerun the same command to continue it", file=sys.stderr)
        sys.exit(128 + sweep.stop_signal)
    failed = [j for j in jobs if j.outcome in ("failed", "skipped")]
    if failed:
        names = ", ".join(f"{j.recipe.name} seed {j.seed} ({j.outcome})" for j in failed)
        args.exit(1, f"{args.prog}: error: {len(failed)} runs did not finish: {names}\n")
    return jobs


if __name__ == "__main__":
    main()
