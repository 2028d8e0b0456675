"""The results tree: a sweep's finished runs copied in (never checkpoints), the table against
the published figures, the README's copy of it, and results that stray from their recipes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ltfast.results import (
    BEGIN,
    END,
    RESULT_FILES,
    ResultsError,
    add_sweep,
    find_results,
    recipe_differences,
    rewrite_readme,
    table,
)
from ltfast.results import main as results_main
from ltfast.sweep import main as sweep_main

REPO = Path(__file__).resolve().parents[1]
RECIPE = {
    "dataset": "synthetic",
    "synthetic_size": 60,
    "imb_factor": 0.1,
    "epochs": 2,
    "warmup_epochs": 0,
    "lr": 0.05,
    "batch_size": 32,
    "published_top1": 30.0,
    "source": "a test",
}
STAGE2 = {**RECIPE, "init_from": "ce.yaml", "stage2": "crt", "sampler": "class", "epochs": 1}
del STAGE2["published_top1"], STAGE2["source"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_root) -> tuple[Path, Path]:
    """A finished sweep of a CE recipe and a cRT after it; (sweep folder, configs folder)."""
    root = tmp_path_factory.mktemp("results")
    configs = root / "configs" / "tiny_lt"
    configs.mkdir(parents=True)
    for name, values in (("ce", RECIPE), ("crt", STAGE2)):
        (configs / f"{name}.yaml").write_text(yaml.safe_dump(values))
    out = root / "sweep"
    sweep_main([
        str(configs / "ce.yaml"), str(configs / "crt.yaml"), "--out", str(out),
        "--set", f"data_root={data_root}", "--set", "precision=float32",
    ])  # fmt: skip
    return out, configs.parent


def test_a_sweep_is_added_with_its_small_files_only(tmp_path, sweep):
    out, _ = sweep
    added = add_sweep(out, tmp_path / "results")
    assert added == [tmp_path / "results/tiny_lt/ce/seed0", tmp_path / "results/tiny_lt/crt/seed0"]
    for folder in added:
        assert sorted(p.name for p in folder.iterdir()) == sorted(RESULT_FILES)
        for name in RESULT_FILES:
            assert (folder / name).read_bytes() == (
                out / folder.parent.name / "seed0" / name
            ).read_bytes()
    assert add_sweep(out, tmp_path / "results") == added  # the same files again: nothing changes
    summary = added[0] / "summary.json"
    summary.write_text(summary.read_text().replace('"wall_s"', '"wall_s_edited"'))
    with pytest.raises(ResultsError, match=r"already holds another run's summary\.json"):
        add_sweep(out, tmp_path / "results")
    assert "wall_s_edited" in summary.read_text()  # not overwritten
    add_sweep(out, tmp_path / "results", overwrite=True)
    assert "wall_s_edited" not in summary.read_text()


def test_a_clash_anywhere_copies_nothing(tmp_path, sweep):
    out, _ = sweep
    crt = tmp_path / "tiny_lt/crt/seed0"
    crt.mkdir(parents=True)
    (crt / "summary.json").write_text("{}")  # another run's result, under the second recipe
    with pytest.raises(ResultsError, match=r"crt/seed0 already holds another run's summary"):
        add_sweep(out, tmp_path)
    assert not (tmp_path / "tiny_lt/ce").exists()  # the first recipe was not copied either
    assert (crt / "summary.json").read_text() == "{}"


def test_recipes_picks_the_runs_to_add(tmp_path, sweep):
    out, _ = sweep
    assert add_sweep(out, tmp_path, recipes=["crt"]) == [tmp_path / "tiny_lt/crt/seed0"]
    assert not (tmp_path / "tiny_lt/ce").exists()
    options = ["--recipe", "ce", "--suffix", "rerun", "--results", str(tmp_path)]
    results_main(["add", str(out), *options])
    assert [r.label for r in find_results(tmp_path)] == ["ce (rerun)", "crt"]
    add_sweep(out, tmp_path, recipes=["ce"])
    notes = [line for line in table(find_results(tmp_path)).splitlines() if "ce (rerun)" in line]
    assert notes[1:] == [
        "ce (rerun) repeats the training of ce: the two rows differ only in where and how it ran."
    ]
    with pytest.raises(ResultsError, match=r"has no recipe mixup; its recipes: \['ce', 'crt'\]"):
        add_sweep(out, tmp_path, recipes=["mixup", "ce"])


def test_a_variant_gets_its_own_folder(tmp_path, sweep):
    added = add_sweep(sweep[0], tmp_path, suffix="float32")
    assert [p.name for p in added] == ["seed0-float32"] * 2
    assert [r.label for r in find_results(tmp_path)] == ["ce (float32)", "crt (float32)"]


def test_the_table_sets_each_run_beside_its_published_figure(tmp_path, sweep):
    add_sweep(sweep[0], tmp_path)
    results = find_results(tmp_path)
    summary = json.loads((tmp_path / "tiny_lt/ce/seed0/summary.json").read_text())
    metrics = (tmp_path / "tiny_lt/ce/seed0/metrics.jsonl").read_text().splitlines()
    text = table(results)
    ce_row = next(line for line in text.splitlines() if line.startswith("| ce |"))
    best, final = 100 * summary["best"]["test_top1"], 100 * summary["final"]["test_top1"]
    assert (
        f"| 30 (a test) | {final:.2f} (ep 2) | {best:.2f} (ep {summary['best']['epoch']}) |"
        in ce_row
    )
    assert f"| {best - 30:+.2f} |" in ce_row
    wall = sum(json.loads(line)["epoch_s"] for line in metrics)
    assert f"{wall / 60:.0f} min, {summary['machine']}, float32, channels_last" in ce_row
    crt_row = next(line for line in text.splitlines() if line.startswith("| crt |"))
    assert "| - | " in crt_row  # no published figure, no gap


def test_the_table_says_which_run_was_compiled(tmp_path, sweep):
    add_sweep(sweep[0], tmp_path)
    config_file = tmp_path / "tiny_lt/ce/seed0/config.yaml"
    config = yaml.safe_load(config_file.read_text())
    assert "torch.compile" not in table(find_results(tmp_path))
    config_file.write_text(yaml.safe_dump({**config, "compile": True}))
    ce_row = next(
        line for line in table(find_results(tmp_path)).splitlines() if line.startswith("| ce |")
    )
    assert "float32, channels_last, torch.compile, " in ce_row


def test_the_table_notes_two_results_of_one_experiment(tmp_path, sweep):
    add_sweep(sweep[0], tmp_path)
    ce = tmp_path / "tiny_lt/ce/seed0"
    for recipe, changes in (
        ("focal0", {"loss": "focal", "focal_gamma": 0.0}),
        ("ce_lr", {"lr": 1.0}),
    ):
        copy = tmp_path / "tiny_lt" / recipe / "seed0"
        shutil.copytree(ce, copy)
        config = yaml.safe_load((copy / "config.yaml").read_text())
        (copy / "config.yaml").write_text(yaml.safe_dump({**config, **changes}))
    notes = [line for line in table(find_results(tmp_path)).splitlines() if "same" in line]
    assert notes == [
        "focal0 trained the same experiment as ce (focal with gamma 0 is ce): the two rows are "
        "two runs of one training, compared with two published figures."
    ]


def test_results_that_follow_their_recipes_have_no_differences(tmp_path, sweep):
    out, configs = sweep
    add_sweep(out, tmp_path)
    for result in find_results(tmp_path):
        assert recipe_differences(result, configs) == [], result.path  # precision, paths differ


def test_a_result_that_strays_from_its_recipe_is_named(tmp_path, sweep):
    out, _ = sweep
    add_sweep(out, tmp_path / "results")
    edited = tmp_path / "configs" / "tiny_lt"
    edited.mkdir(parents=True)
    (edited / "ce.yaml").write_text(yaml.safe_dump({**RECIPE, "lr": 0.1}))
    (edited / "crt.yaml").write_text(yaml.safe_dump({**STAGE2, "init_from": "mixup.yaml"}))
    ce, crt = find_results(tmp_path / "results")
    assert recipe_differences(ce, edited.parent) == ["lr: recipe 0.1, result 0.05"]
    assert recipe_differences(crt, edited.parent)[0].startswith("init_from: recipe 'mixup.yaml'")
    (edited / "ce.yaml").unlink()
    assert recipe_differences(ce, edited.parent) == [
        f"no recipe {edited / 'ce.yaml'} for {ce.path}"
    ]


def test_the_readme_table_is_rewritten_between_its_markers(tmp_path, sweep, capsys):
    add_sweep(sweep[0], tmp_path / "results")
    readme = tmp_path / "README.md"
    readme.write_text(f"# head\n\n{BEGIN}\nold table\n{END}\n\ntail\n")
    results_main([
        "table", "--results", str(tmp_path / "results"), "--configs", str(sweep[1]),
        "--readme", str(readme),
    ])  # fmt: skip
    text = table(find_results(tmp_path / "results"))
    assert readme.read_text() == f"# head\n\n{BEGIN}\n{text}\n{END}\n\ntail\n"
    assert text in capsys.readouterr().out
    readme.write_text("no markers\n")
    with pytest.raises(ResultsError, match="must hold the two marker lines"):
        rewrite_readme(readme, text)


def test_adding_from_a_folder_that_is_no_sweep_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        results_main(["add", str(tmp_path), "--results", str(tmp_path / "results")])
    assert exit_.value.code == 2
    assert "is not an ltfast sweep folder" in capsys.readouterr().err


# ----- the committed results --------------------------------------------------------------


def test_every_committed_result_was_trained_with_its_recipe():
    for result in find_results(REPO / "results"):
        assert recipe_differences(result, REPO / "configs") == [], result.path


def test_the_committed_results_hold_no_checkpoints():
    files = [p for p in (REPO / "results").rglob("*") if p.is_file()]
    assert all(p.name in RESULT_FILES for p in files), files


def test_the_readme_shows_the_committed_results():
    readme = (REPO / "README.md").read_text()
    shown = readme.split(BEGIN)[1].split(END)[0].strip("\n")
    assert shown == table(find_results(REPO / "results"))


def test_the_plots_are_one_figure_per_group(tmp_path, sweep, capsys, monkeypatch):
    add_sweep(sweep[0], tmp_path / "results")
    arguments = ["table", "--results", str(tmp_path / "results"), "--configs", str(sweep[1])]
    results_main([*arguments, "--plots", str(tmp_path / "plots")])
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["tiny_lt.png"]
    assert (tmp_path / "plots/tiny_lt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr("ltfast.results.have_matplotlib", lambda: False)
    with pytest.raises(SystemExit):
        results_main([*arguments, "--plots", str(tmp_path / "again")])
    assert "--plots needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()
