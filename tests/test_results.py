"""The results tree: a sweep's finished runs copied in (never checkpoints), the table against
the published figures, the README's copy of it, and results that stray from their recipes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
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
)
from ltfast.results import main as results_main
from ltfast.results_table import table
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
    out, configs = sweep
    assert add_sweep(out, tmp_path, recipes=["crt"]) == [tmp_path / "tiny_lt/crt/seed0"]
    assert not (tmp_path / "tiny_lt/ce").exists()
    options = ["--recipe", "ce", "--suffix", "rerun", "--results", str(tmp_path)]
    results_main(["add", str(out), *options])
    assert [r.label for r in find_results(tmp_path)] == ["ce (rerun)", "crt"]
    add_sweep(out, tmp_path, recipes=["ce"])
    text = table(find_results(tmp_path), configs)
    notes = [line for line in text.splitlines() if line.startswith("ce (rerun)")]
    assert notes == [
        "ce (rerun) repeats the training of ce: the rows differ only in where and how it ran."
    ]
    with pytest.raises(ResultsError, match=r"has no recipe mixup; its recipes: \['ce', 'crt'\]"):
        add_sweep(out, tmp_path, recipes=["mixup", "ce"])


def test_a_variant_gets_its_own_folder(tmp_path, sweep):
    added = add_sweep(sweep[0], tmp_path, suffix="float32")
    assert [p.name for p in added] == ["seed0-float32"] * 2
    assert [r.label for r in find_results(tmp_path)] == ["ce (float32)", "crt (float32)"]


def row_of(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def top1(folder: Path, which: str) -> float:
    return 100 * json.loads((folder / "summary.json").read_text())[which]["test_top1"]


def test_the_table_sets_each_run_beside_its_published_figure(tmp_path, sweep):
    add_sweep(sweep[0], tmp_path)
    ce = tmp_path / "tiny_lt/ce/seed0"
    summary = json.loads((ce / "summary.json").read_text())
    metrics = (ce / "metrics.jsonl").read_text().splitlines()
    text = table(find_results(tmp_path), sweep[1])
    best, final = top1(ce, "best"), top1(ce, "final")
    _, seeds, published, final_cell, best_cell, gap, how = row_of(text, "ce")
    assert (seeds, published) == ("0", "30 (a test)")
    assert (final_cell, best_cell) == (
        f"{final:.2f}",
        f"{best:.2f} (ep {summary['best']['epoch']})",
    )
    assert gap == f"{final - 30:+.2f}"  # the final epoch is the headline
    wall = sum(json.loads(line)["epoch_s"] for line in metrics)
    threads = summary["threads"]
    assert (
        how
        == f"{wall / 60:.0f} min, {summary['machine']}, float32, channels_last, {threads} thread(s)"
    )
    assert row_of(text, "crt")[5] == "-"  # no published figure, no gap


def test_the_published_figure_comes_from_the_recipe(tmp_path, sweep):
    add_sweep(sweep[0], tmp_path / "results")
    configs = tmp_path / "configs" / "tiny_lt"
    shutil.copytree(sweep[1] / "tiny_lt", configs)
    (configs / "ce.yaml").write_text(yaml.safe_dump({**RECIPE, "published_top1": 41.5}))
    results = find_results(tmp_path / "results")
    assert row_of(table(results, configs.parent), "ce")[2] == "41.5 (a test)"
    assert recipe_differences(results[0], configs.parent) == []  # a figure is no training


def add_seeds(results: Path, finals: list[float]) -> list[Path]:
    """Copies of tiny_lt/ce/seed0 as seeds 1, 2, ..., each with its final and best top-1."""
    seed0 = results / "tiny_lt/ce/seed0"
    folders = []
    for seed, final in enumerate(finals, start=1):
        folder = seed0.parent / f"seed{seed}"
        shutil.copytree(seed0, folder)
        config = yaml.safe_load((folder / "config.yaml").read_text())
        (folder / "config.yaml").write_text(yaml.safe_dump({**config, "seed": seed}))
        summary = json.loads((folder / "summary.json").read_text())
        summary["final"]["test_top1"] = final
        summary["best"]["test_top1"] = final + 0.01
        (folder / "summary.json").write_text(json.dumps(summary))
        folders.append(folder)
    return [seed0, *folders]


def test_seeds_are_one_row_with_mean_and_sample_std(tmp_path, sweep):
    add_sweep(sweep[0], tmp_path)
    folders = add_seeds(tmp_path, [0.5, 0.25])
    finals = np.array([top1(f, "final") for f in folders])
    bests = np.array([top1(f, "best") for f in folders])
    text = table(find_results(tmp_path), sweep[1])
    _, seeds, _, final_cell, best_cell, gap, how = row_of(text, "ce")
    assert seeds == "0, 1, 2"
    assert final_cell == f"{finals.mean():.2f} ± {finals.std(ddof=1):.2f}"
    assert best_cell.startswith(f"{bests.mean():.2f} ± {bests.std(ddof=1):.2f} (ep ")
    assert gap == f"{finals.mean() - 30:+.2f}"
    assert " a seed, " in how
    within, final_gap = int(abs(finals.mean() - 30) <= 1.5), finals.mean() - 30
    assert (
        f"of the 1 recipes compared with a published figure (each once: no variant, no repeated "
        f"training; ce over seeds 0, 1, 2 (mean); the rest seed 0), {within} are within 1.5 points "
        f"of it at the final epoch (gaps {final_gap:+.2f} to {final_gap:+.2f})"
    ) in text  # crt has no figure


def test_the_table_says_which_run_was_compiled(tmp_path, sweep):
    add_sweep(sweep[0], tmp_path)
    config_file = tmp_path / "tiny_lt/ce/seed0/config.yaml"
    config = yaml.safe_load(config_file.read_text())
    assert "torch.compile" not in table(find_results(tmp_path), sweep[1])
    config_file.write_text(yaml.safe_dump({**config, "compile": True}))
    how = row_of(table(find_results(tmp_path), sweep[1]), "ce")[6]
    assert "float32, channels_last, torch.compile, " in how


def test_a_row_that_repeats_another_training_is_counted_once(tmp_path, sweep):
    add_sweep(sweep[0], tmp_path)
    configs = tmp_path / "configs" / "tiny_lt"
    shutil.copytree(sweep[1] / "tiny_lt", configs)
    ce = tmp_path / "tiny_lt/ce/seed0"
    for recipe, changes in (
        ("focal0", {"loss": "focal", "focal_gamma": 0.0}),
        ("ce_lr", {"lr": 1.0}),
    ):
        copy = tmp_path / "tiny_lt" / recipe / "seed0"
        shutil.copytree(ce, copy)
        config = yaml.safe_load((copy / "config.yaml").read_text())
        (copy / "config.yaml").write_text(yaml.safe_dump({**config, **changes}))
        (configs / f"{recipe}.yaml").write_text(yaml.safe_dump({**RECIPE, **changes}))
    text = table(find_results(tmp_path), configs.parent)
    assert row_of(text, "focal0")[5] == "same training as ce"
    assert row_of(text, "ce_lr")[5] != "same training as ce"
    assert [line for line in text.splitlines() if line.startswith("focal0 ")] == [
        "focal0 trains what ce trains (focal with gamma 0 is ce): shown once more, counted once."
    ]
    assert "of the 2 recipes compared with a published figure" in text  # ce and ce_lr


def test_what_older_results_did_not_record_is_noted(tmp_path, sweep):
    add_sweep(sweep[0], tmp_path)
    ce = tmp_path / "tiny_lt/ce/seed0"
    config = yaml.safe_load((ce / "config.yaml").read_text())
    del config["nesterov"], config["drop_last"]
    (ce / "config.yaml").write_text(yaml.safe_dump(config))
    summary = json.loads((ce / "summary.json").read_text())
    del summary["code"]
    (ce / "summary.json").write_text(json.dumps(summary))
    notes = table(find_results(tmp_path), sweep[1]).split("\n\n")
    assert "ce seed 0: config fields drop_last, nesterov: not recorded; today's default." in notes
    assert (
        "ce seed 0: ltfast version, git commit, library versions and data digests: not "
        "recorded." in notes
    )
    assert not any("crt seed 0" in note for note in notes)


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
    text = table(find_results(tmp_path / "results"), sweep[1])
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
    assert shown == table(find_results(REPO / "results"), REPO / "configs")


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


def test_the_readme_claim_is_recomputed_from_the_committed_files():
    """Independently of ltfast.results_table: every recipe's own seeds (no variant folders)
    against its recipe's figure, as numpy computes the means."""
    readme = (REPO / "README.md").read_text()
    claim = re.search(
        r"of the (\d+) recipes compared with a published figure \(each once: (?:[^()]|\([^)]*\))*"
        r"\), (\d+) are within 1\.5 points of it at the final epoch \(gaps (\S+) to (\S+)\), "
        r"and (\d+) at the best epoch \((\S+) to (\S+)\)\.",
        readme,
    )
    assert claim is not None
    finals, bests = [], []
    for recipe in sorted((REPO / "results/cifar10_lt").iterdir()):
        figure = yaml.safe_load((REPO / f"configs/cifar10_lt/{recipe.name}.yaml").read_text())
        seeds = [p for p in recipe.iterdir() if re.fullmatch(r"seed\d+", p.name)]
        if figure["published_top1"] is None or not seeds:
            continue
        summaries = [json.loads((p / "summary.json").read_text()) for p in seeds]
        for gaps, which in ((finals, "final"), (bests, "best")):
            top1 = np.array([100 * s[which]["test_top1"] for s in summaries])
            gaps.append(top1.mean() - figure["published_top1"])
    finals_, bests_ = np.array(finals), np.array(bests)
    assert int(claim[1]) == len(finals)
    assert int(claim[2]) == (np.abs(finals_) <= 1.5).sum()
    assert (claim[3], claim[4]) == (f"{finals_.min():+.2f}", f"{finals_.max():+.2f}")
    assert int(claim[5]) == (np.abs(bests_) <= 1.5).sum()
    assert (claim[6], claim[7]) == (f"{bests_.min():+.2f}", f"{bests_.max():+.2f}")
