"""`ltfast.sweep --launcher slurm` against a real Slurm: a single-node cluster of Debian's
slurm-wlm on this machine (`.ci/slurm start`, which .ci/run runs), with accounting disabled.
Two recipes times two seeds, one of them a stage 2; a task preempted mid-epoch and requeued;
a task that fails, is shown failed and is resubmitted after the fix. Also the flags and the
rank environment, which need no cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cifar_files import make_cifar10_root

from ltfast.slurm import SlurmOptions, minutes, rank_environment
from ltfast.sweep import main as sweep_main

STAGE1 = {
    "dataset": "synthetic",
    "synthetic_size": 300,
    "imb_factor": 0.1,
    "epochs": 3,
    "warmup_epochs": 0,
    "lr": 0.05,
    "batch_size": 16,
}
STAGE2 = {**STAGE1, "epochs": 1, "init_from": "ce.yaml", "stage2": "crt", "sampler": "class"}
WAIT_S = 600
EPOCH_FIELDS = ("epoch", "lr", "train_loss", "test_top1", "per_class", "ece")


@pytest.fixture(scope="module")
def cluster() -> None:
    """A Slurm that answers; CI (LTFAST_SLURM=1) must have one, elsewhere the tests skip."""
    up = shutil.which("sinfo") and subprocess.run(["sinfo"], capture_output=True).returncode == 0
    if not up:
        if os.environ.get("LTFAST_SLURM"):
            pytest.fail("LTFAST_SLURM is set but Slurm does not answer (sinfo); see .ci/slurm")
        pytest.skip("no Slurm cluster answers here: `.ci/slurm start` (as root) starts one")


def sweep(out: Path, configs: list[Path], *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ltfast.sweep", *map(str, configs), "--seeds", "0", "1"]
    command += ["--out", str(out), "--launcher", "slurm", "--slurm-time", "10", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=one_thread())


def one_thread() -> dict[str, str]:
    # The same threads in the Slurm tasks and in the reference run: the same numerics.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def status(out: Path, configs: list[Path]) -> dict[str, str]:
    done = sweep(out, configs, "--status")
    assert done.returncode == 0, done.stderr
    runs = {}
    for line in done.stdout.splitlines():
        if not line.startswith(" "):
            name, _, state = line.partition(": ")
            runs[name.split(" (job")[0]] = state
    return runs


def wait_for(check, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"waited {WAIT_S} s for {what}"
        time.sleep(0.5)


def epochs(run: Path) -> list[dict]:
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    return [{k: json.loads(line)[k] for k in EPOCH_FIELDS} for line in lines]


def job_id(out: Path, name: str) -> str:
    return json.loads((out / "slurm" / "jobs.json").read_text())[name]["job_id"]


def start_requeued_now(job: str) -> None:
    """Slurm holds a requeued batch job back two minutes (BeginTime); the test skips the wait."""
    wait_for(lambda: "BeginTime" in queue_line(job), f"job {job} to be requeued")
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)


def queue_line(job: str) -> str:
    done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T %r"], capture_output=True)
    return done.stdout.decode()


@pytest.mark.slow
def test_a_sweep_on_slurm_finishes_survives_preemption_and_resubmits_what_failed(cluster, tmp_path):
    configs = [tmp_path / "ce.yaml", tmp_path / "crt.yaml"]
    for path, values in zip(configs, (STAGE1, STAGE2), strict=True):
        path.write_text(yaml.safe_dump({**values, "data_root": str(tmp_path / "data")}))
    out = tmp_path / "sweep"

    submitted = sweep(out, configs)
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.count("submitted ") == 4
    first = status(out, configs)
    assert first["crt seed 0"].startswith("pending") and "Dependency" in first["crt seed 0"]
    assert first["ce seed 1"].split()[0] in ("pending", "running")

    # Preempt ce seed 1 in its second epoch, as submitit's own helper does (SIGTERM, SIGUSR2).
    preempted = out / "ce" / "seed1"
    wait_for(lambda: len(epochs(preempted)) >= 1, "ce seed 1's first epoch")
    import submitit

    submitit.SlurmJob(out / "slurm", job_id(out, "ce/seed1"))._interrupt()
    start_requeued_now(job_id(out, "ce/seed1"))
    assert "requeued 1 time" in status(out, configs)["ce seed 1"]

    wait_for(
        lambda: all(s.startswith("finished") for s in status(out, configs).values()),
        "every run to finish",
    )
    log = (out / "logs" / "ce-seed1.log").read_text()
    assert "checkpoint written" in log and "--resume" in log
    for seed in (0, 1):  # stage 2 began once its stage 1 had finished
        stage1, stage2 = out / "ce" / f"seed{seed}", out / "crt" / f"seed{seed}"
        assert (stage2 / "dataset.json").stat().st_mtime >= (
            stage1 / "summary.json"
        ).stat().st_mtime
        config = yaml.safe_load((stage2 / "config.yaml").read_text())
        assert config["init_from"] == str(stage1)

    reference = tmp_path / "uninterrupted"
    train = [sys.executable, "-m", "ltfast.train", "--config", str(configs[0]), "--seed", "1"]
    done = subprocess.run([*train, "--out", str(reference), "--quiet"], env=one_thread())
    assert done.returncode == 0
    assert [e["epoch"] for e in epochs(preempted)] == [1, 2, 3]  # each epoch once
    assert epochs(preempted) == epochs(reference)

    jobs_before = (out / "slurm" / "jobs.json").read_text()
    again = sweep(out, configs)  # nothing to submit: the table is written
    assert again.returncode == 0, again.stderr
    assert "submitted " not in again.stdout and "every run has finished" in again.stdout
    assert (out / "summary.md").is_file()
    assert (out / "slurm" / "jobs.json").read_text() == jobs_before

    results = tmp_path / "results"  # a Slurm sweep as a local one (folder: the configs')
    add = [sys.executable, "-m", "ltfast.results", "add", str(out), "--results", str(results)]
    assert subprocess.run(add, capture_output=True).returncode == 0
    copied = sorted(p.parent.relative_to(results) for p in results.glob("**/summary.json"))
    assert [str(p) for p in copied] == [
        f"{tmp_path.name}/{name}/seed{seed}" for name in ("ce", "crt") for seed in (0, 1)
    ]


@pytest.mark.slow
def test_a_failed_slurm_task_is_shown_with_its_log_and_resubmitted_after_the_fix(cluster, tmp_path):
    data = tmp_path / "data"  # CIFAR-10 is not there yet: the runs fail on the node
    data.mkdir()
    recipe = {**STAGE1, "dataset": "cifar10", "epochs": 1, "data_root": str(data)}
    del recipe["synthetic_size"]
    config = tmp_path / "ce.yaml"
    config.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "sweep"
    assert sweep(out, [config]).returncode == 0
    wait_for(lambda: all(s == "failed" for s in status(out, [config]).values()), "the failures")
    shown = sweep(out, [config], "--status").stdout
    assert "the end of" in shown and "cifar-10-batches-bin" in shown  # the log's tail says why

    make_cifar10_root(data, per_class=20, test_per_class=5)  # the fix
    resubmitted = sweep(out, [config])
    assert resubmitted.stdout.count("submitted ") == 2, resubmitted.stdout
    wait_for(lambda: all(s.startswith("finished") for s in status(out, [config]).values()), "runs")
    records = json.loads((out / "slurm" / "jobs.json").read_text())
    assert [r["submissions"] for r in records.values()] == [2, 2]


def test_slurm_flags_are_refused_without_the_slurm_launcher(tmp_path, capsys):
    config = tmp_path / "ce.yaml"
    config.write_text(yaml.safe_dump(STAGE1))
    with pytest.raises(SystemExit) as stop:
        sweep_main([str(config), "--out", str(tmp_path / "s"), "--slurm-partition", "gpu"])
    assert stop.value.code == 2
    assert "--slurm-partition: only with --launcher slurm" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_slurm_time_and_options_become_submitits_parameters():
    given = ("90", "1:30", "2:00:00", "0:00:01", "1-2", "1-00:30", "1-0:0:1")
    assert [minutes(t) for t in given] == [90, 2, 120, 1, 1560, 1470, 1441]  # sbatch's forms
    for bad in ("0", "1h", "0:00", "-5", "1:2:3:4", ""):
        with pytest.raises(ValueError, match="--slurm-time"):
            minutes(bad)
    options = SlurmOptions(partition="gpu", time_min=60, gpus_per_task=4, extra={"qos": "x"})
    assert options.parameters() == {
        "partition": "gpu",
        "time": 60,
        "ntasks_per_node": 4,
        "gpus_per_node": 4,
        "array_parallelism": 256,
        "additional_parameters": {"qos": "x"},
    }
    assert SlurmOptions().parameters()["ntasks_per_node"] == 1


def test_each_rank_of_a_multi_gpu_task_gets_torch_distributeds_environment(monkeypatch):
    import submitit

    slurm = {
        "SUBMITIT_EXECUTOR": "slurm",  # as submitit sets it in its tasks
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "4",
        "SLURM_PROCID": "2",
        "SLURM_LOCALID": "2",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_JOB_NODELIST": "gpu07",
    }
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    ranks = rank_environment(submitit.JobEnvironment())
    assert ranks == {
        "RANK": "2",
        "LOCAL_RANK": "2",
        "WORLD_SIZE": "4",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(20000 + 4242 % 20000),
    }
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert rank_environment(submitit.JobEnvironment()) == {}


def test_what_sbatch_refuses_is_quoted_and_nothing_is_recorded(cluster, tmp_path):
    config = tmp_path / "ce.yaml"
    config.write_text(yaml.safe_dump(STAGE1))
    out = tmp_path / "sweep"
    refused = sweep(out, [config], "--slurm-partition", "no-such-partition")
    assert refused.returncode == 1
    assert "Slurm refused the submission: sbatch: error: invalid partition" in refused.stderr
    assert not (out / "slurm" / "jobs.json").exists()
    assert set(status(out, [config]).values()) == {"not submitted"}
