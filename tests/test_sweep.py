"""Sweeps: configs times seeds as run folders, interrupted and finished by a rerun, a
two-stage config chained to its stage 1 of the same seed, and the comparison table."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ltfast.report import main as report_main
from ltfast.run_folder import SweepFolder
from ltfast.sweep import Recipe, Sweep, check_recipes, main, make_plan, read_recipes

STAGE1 = {
    "dataset": "synthetic",
    "synthetic_size": 150,
    "imb_factor": 0.1,
    "epochs": 1,
    "warmup_epochs": 0,
    "lr": 0.05,
    "batch_size": 32,
    "published_top1": 70.36,
    "source": "a test",
}
STAGE2 = {**STAGE1, "init_from": "ce.yaml", "stage2": "crt", "sampler": "class", "lr": 0.01}
del STAGE2["published_top1"], STAGE2["source"]


def write_configs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "ce.yaml", folder / "crt.yaml"]
    for path, values in zip(paths, (STAGE1, STAGE2), strict=True):
        path.write_text(yaml.safe_dump(values))
    return paths


def sweep_command(configs: list[Path], out: Path, data_root: Path) -> list[str]:
    return [
        sys.executable, "-m", "ltfast.sweep", *map(str, configs), "--seeds", "0", "1",
        "--jobs", "2", "--out", str(out), "--set", f"data_root={data_root}",
    ]  # fmt: skip


def test_an_interrupted_sweep_finishes_on_a_rerun_and_writes_its_table(tmp_path, data_root):
    configs, out = write_configs(tmp_path / "configs"), tmp_path / "sweep"
    command = sweep_command(configs, out, data_root)
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not list(out.glob("*/seed*/dataset.json")):  # a run is past its set-up
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.stdout.read()
        time.sleep(0.05)
    time.sleep(0.5)
    sweep.send_signal(signal.SIGTERM)
    first, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 128 + signal.SIGTERM, first.decode()
    assert "rerun the same command" in first.decode()
    runs = [out / name / f"seed{seed}" for name in ("ce", "crt") for seed in (0, 1)]
    assert not all((run / "summary.json").is_file() for run in runs)
    logs = [log.read_text() for log in (out / "logs").glob("*.log")]
    assert any("checkpoint written" in log for log in logs)  # stopped mid-epoch, to resume

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["final"]["epoch"] == 1
    for seed in (0, 1):  # stage 2 of seed s started from stage 1 of seed s
        config = yaml.safe_load((out / "crt" / f"seed{seed}" / "config.yaml").read_text())
        assert config["init_from"] == str(out / "ce" / f"seed{seed}") and config["seed"] == seed
    rows = list(csv.DictReader((out / "summary.csv").read_text().splitlines()))
    assert [(r["config"], r["runs"], r["seeds"]) for r in rows] == [
        ("ce", "2", "0 1"),
        ("crt", "2", "0 1"),
    ]
    assert rows[0]["published_top1"] == "70.36" and rows[1]["published_top1"] == ""
    finals = [json.loads((out / "ce" / f"seed{s}" / "summary.json").read_text()) for s in (0, 1)]
    mean = sum(100 * f["final"]["test_top1"] for f in finals) / 2
    assert float(rows[0]["final_test_top1_mean"]) == pytest.approx(mean, abs=1e-4)
    markdown = (out / "summary.md").read_text()
    assert "| ce | 2/2 |" in markdown and "| crt | 2/2 |" in markdown

    third = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and "started" not in third.stderr  # all finished: skipped

    (out / "summary.md").unlink()
    report_main([str(out)])  # ltfast.report rewrites a sweep's table
    assert (out / "summary.md").read_text() == markdown


def make_sweep(tmp_path: Path) -> Sweep:
    recipes = read_recipes(write_configs(tmp_path / "configs"))
    plan = make_plan(recipes, [0], {"epochs": 1}, vary_subset=False)
    return Sweep(SweepFolder(tmp_path / "sweep"), recipes, plan, jobs=1)


def test_each_run_state_gets_its_command(tmp_path):
    sweep = make_sweep(tmp_path)
    stage1, stage2 = sweep.queue
    fresh = sweep.command(stage1)
    assert fresh is not None and "--config" in fresh and "--overwrite" not in fresh
    assert "--epochs=1" in fresh and fresh[fresh.index("--seed") + 1] == "0"
    second = sweep.command(stage2)
    assert second is not None and second[second.index("--init-from") + 1] == str(stage1.folder)
    stage1.folder.mkdir(parents=True)
    (stage1.folder / "ltfast-run.json").write_text('{"format": "ltfast-run"}')
    assert "--overwrite" in (sweep.command(stage1) or [])  # killed before its first checkpoint
    (stage1.folder / "last.pt").write_bytes(b"")
    assert sweep.command(stage1)[-2:] == ["--resume", str(stage1.folder)]  # type: ignore[index]
    (stage1.folder / "summary.json").write_text("{}")
    assert sweep.command(stage1) is None


def test_a_sweep_folder_of_another_plan_is_refused(tmp_path, capsys):
    configs = write_configs(tmp_path / "configs")
    folder = SweepFolder(tmp_path / "sweep")
    folder.claim(make_plan(read_recipes(configs), [0], {}, vary_subset=False))
    folder.release()  # that sweep has ended
    with pytest.raises(SystemExit) as exit_:
        main([*map(str, configs), "--seeds", "0", "1", "--out", str(folder.path)])
    assert exit_.value.code == 2
    assert "holds a sweep of another plan (its seeds differ)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--set", "epochs=many"], "--set: epochs: expected an integer"),
        (["--set", "colour=red"], "unknown config field 'colour'"),
        (["--set", "seed=3"], "--set seed: the sweep sets it"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--set", "lr=-1"], "lr: must be > 0"),
    ],
)
def test_bad_sweep_arguments_are_named_before_any_run(tmp_path, capsys, arguments, message):
    configs = write_configs(tmp_path / "configs")
    with pytest.raises(SystemExit):
        main([*map(str, configs), "--out", str(tmp_path / "sweep"), *arguments])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_a_stage2_config_without_its_stage1_in_the_sweep_is_named(tmp_path):
    configs = write_configs(tmp_path / "configs")
    with pytest.raises(ValueError, match=r"starts from .*ce.yaml \(init_from\), which is not in"):
        read_recipes(configs[1:])


def test_clashing_file_names_take_their_folder_name(tmp_path):
    a, b = write_configs(tmp_path / "cifar10_lt"), write_configs(tmp_path / "cifar100_lt")
    names = [r.name for r in read_recipes([a[0], b[0]])]
    assert names == ["cifar10_lt-ce", "cifar100_lt-ce"]
    assert isinstance(read_recipes([a[0]])[0], Recipe)


def test_runs_share_the_cpu_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    sweep = make_sweep(tmp_path)
    sweep.jobs = 64
    assert sweep.environment()["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 64))


def test_recipes_that_train_the_same_experiment_are_named_before_any_run(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    recipes = {
        "ce": {},
        "ce_again": {"published_top1": 71.0, "source": "another paper", "focal_gamma": 2.0},
        "focal0": {"loss": "focal", "focal_gamma": 0.0},
        "balanced_softmax": {"loss": "balanced_softmax"},
        "la1": {"loss": "logit_adjusted", "logit_tau": 1.0},
        "la15": {"loss": "logit_adjusted", "logit_tau": 1.5},
        "vs0": {"loss": "vs", "vs_gamma": 0.0, "vs_tau": 1.5},
        "vs": {"loss": "vs", "vs_gamma": 0.2, "vs_tau": 1.5},
        "ce_lr": {"lr": 0.02},
    }
    paths = []
    for name, values in recipes.items():
        paths.append(folder / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump({**STAGE1, **values}))
    recipes_read = read_recipes(paths)
    plan = make_plan(recipes_read, [0, 1], {}, vary_subset=False)
    warnings = check_recipes(recipes_read, SweepFolder(tmp_path / "sweep"), plan)
    assert warnings == [
        "ce_again trains the same experiment as ce: its runs repeat ce's; leave one out "
        "unless both rows are wanted",
        "focal0 trains the same experiment as ce (focal with gamma 0 is ce): its runs repeat "
        "ce's; leave one out unless both rows are wanted",
        "la1 trains the same experiment as balanced_softmax (logit_adjusted with tau 1 is "
        "balanced_softmax): its runs repeat balanced_softmax's; leave one out unless both "
        "rows are wanted",
        "vs0 trains the same experiment as la15 (vs with gamma 0, tau 1.5 is logit_adjusted): "
        "its runs repeat la15's; leave one out unless both rows are wanted",
    ]


def test_a_sweep_warns_of_a_repeated_experiment_and_runs_it(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "a.yaml").write_text(yaml.safe_dump(STAGE1))
    (folder / "b.yaml").write_text(yaml.safe_dump({**STAGE1, "source": "elsewhere"}))
    ran = []
    monkeypatch.setattr(Sweep, "run", lambda self: ran.append(len(self.queue)) or [])
    monkeypatch.setattr("ltfast.report.write_sweep_report", lambda path: [])
    main([str(folder / "a.yaml"), str(folder / "b.yaml"), "--out", str(tmp_path / "sweep")])
    assert "warning: b trains the same experiment as a" in capsys.readouterr().err
    assert ran == [2]


def test_status_tells_each_runs_state_and_starts_nothing(tmp_path, data_root, capsys):
    configs, out = write_configs(tmp_path / "configs"), tmp_path / "sweep"
    arguments = [*map(str, configs), "--seeds", "0", "1", "--out", str(out), "--status"]
    main([*arguments, "--set", f"data_root={data_root}"])
    assert capsys.readouterr().out.splitlines() == [
        f"{name} seed {seed}: not started" for name in ("ce", "crt") for seed in (0, 1)
    ]
    assert not out.exists()
    main(sweep_command(configs, out, data_root)[3:])  # the whole sweep, in-process
    capsys.readouterr()
    main([*arguments, "--set", f"data_root={data_root}"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(": finished (final top-1 " in line for line in lines)
