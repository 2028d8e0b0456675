"""The recipes in configs/: one per published CIFAR-LT row that ltfast can run, each valid,
each stating its published figure and source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ltfast.config import TrainConfig, load_yaml, resolve
from ltfast.results import changed_recipes
from ltfast.train import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASELINES = {
    "ce", "mixup", "label_smoothing", "class_balanced_sampling", "sqrt_sampling",
    "progressive_balanced_sampling", "drs_pb", "drs_cb", "focal", "cb_focal", "ldam",
    "ldam_drw", "balanced_softmax", "logit_adjusted", "crt", "lws", "mislas",
}  # fmt: skip
LONG = {"ce_autoaugment_cutout_400", "balanced_softmax_autoaugment_cutout_400"}  # 400 epochs
CMO = {"cmo_ce", "cmo_ce_drw", "cmo_balanced_softmax", "cmo_ldam_drw"}
TEMPERATURES = {"vs", "cdt", "drw_cdt"}
SAM = {"ce_drw_sam", "ldam_drw_sam"}
METHODS_2021 = {"drw_ib", "gcl_stage1", "gcl", "wb_stage1", "wb"}  # on ResNet-32, LDAM subset
PAPER_SETUPS = {"wb_stage1_paper", "wb_paper", "imbsam_paper"}  # their papers' backbone, subset
ROWS = BASELINES | LONG | CMO | TEMPERATURES | SAM | METHODS_2021
# CIFAR-10-LT runs in LDAM-DRW's loop of recipes whose figures are of BagofTricks-LT's loop.
LDAM_LOOP = {"balanced_softmax_ldam_loop", "drs_cb_ldam_loop"}
# ImbSAM's and Weight Balancing's code has CIFAR-100 alone: their paper setups, and ImbSAM.
CIFAR100_ONLY = PAPER_SETUPS | {"imbsam"}
# Two-stage recipes and the recipe of their stage 1; SPEC has no CIFAR figure for cRT and LWS.
STAGE1_OF = {
    "crt": "ce", "lws": "ce", "mislas": "mixup", "gcl": "gcl_stage1", "wb": "wb_stage1",
    "wb_paper": "wb_stage1_paper",
}  # fmt: skip
EPOCHS = {"gcl": 30, "wb_stage1": 320, "wb_stage1_paper": 320} | dict.fromkeys(LONG, 400)
# What SPEC read no figure for: CMO's CIFAR-100 figures only, none for the 400-epoch rows,
# none for GCL on CIFAR, nor for the standard setups of Weight Balancing and ImbSAM.
UNSEEN = {"crt", "lws", "vs", "gcl_stage1", "gcl", "wb_stage1", "wb"}
UNPUBLISHED = {
    # Menon et al.'s CIFAR-10-LT figure is of their own 1241-epoch protocol (logit_adjusted.yaml).
    "cifar10_lt": UNSEEN | LONG | CMO | LDAM_LOOP | {"logit_adjusted"},
    "cifar100_lt": UNSEEN | {"cmo_ce_drw", "imbsam"} | LONG,
}
FOLDERS = {"cifar10_lt": "cifar10", "cifar100_lt": "cifar100"}
RECIPES = sorted(CONFIGS.glob("*/*.yaml"))


def test_every_row_has_a_recipe_for_both_datasets():
    assert {p.stem for p in (CONFIGS / "cifar10_lt").glob("*.yaml")} == ROWS | LDAM_LOOP
    assert {p.stem for p in (CONFIGS / "cifar100_lt").glob("*.yaml")} == ROWS | CIFAR100_ONLY


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_recipe_is_valid_and_states_its_published_figure(tmp_path, path):
    flags = {"out": str(tmp_path / "run")}
    if path.stem in STAGE1_OF:  # as the sweep runs it: from its stage 1's run folder
        assert load_yaml(path)["init_from"] == f"{STAGE1_OF[path.stem]}.yaml"
        flags["init_from"] = str(tmp_path / "stage1")
    config = resolve(flags, path)
    assert config.dataset == FOLDERS[path.parent.name]
    assert config.imb_factor == 0.01
    if path.stem in PAPER_SETUPS:  # their own backbone and subset, and the recipe says so
        assert (config.model, config.subset) == ("resnet34_cifar", "first_n")
        assert "ResNet-34" in path.read_text()
    else:
        assert (config.model, config.subset) == ("resnet32", "ldam")
    default = 10 if path.stem in STAGE1_OF else 200
    assert config.epochs == EPOCHS.get(path.stem.removesuffix("_paper"), default)
    if path.stem in UNPUBLISHED[path.parent.name]:
        assert config.published_top1 is None
        assert any(why in config.source for why in ("no published", "none read", "none: "))
    else:
        assert config.published_top1 is not None and 30 < config.published_top1 < 90
    assert config.source.strip()


def test_a_recipe_runs_from_the_command_line(tmp_path):
    recipe = CONFIGS / "cifar10_lt" / "ldam_drw.yaml"
    summary = main([
        "--config", str(recipe), "--dataset", "synthetic", "--synthetic-size", "60",
        "--epochs", "2", "--reweight-start-epoch", "1", "--warmup-epochs", "1",
        "--batch-size", "32", "--quiet", "--data-root", str(tmp_path / "data"),
        "--out", str(tmp_path / "run"),
    ])  # fmt: skip
    assert summary is not None and summary["config"]["loss"] == "ldam"
    assert "Published top-1" in (tmp_path / "run" / "report.md").read_text()


# ----- the frozen effective recipes -----------------------------------------------------------

FROZEN = Path(__file__).resolve().parent / "recipes.json"
REFREEZE = "python -m ltfast.results freeze tests/recipes.json --overwrite"


def test_no_default_change_alters_a_recipe_unnoticed():
    """Every recipe's effective config (its YAML over today's defaults) is frozen in
    tests/recipes.json: a changed default that alters a recipe's training fails here, and
    refreezing (REFREEZE) makes the change deliberate."""
    changes = changed_recipes(json.loads(FROZEN.read_text()), CONFIGS)
    assert changes == [], f"recipes changed; if deliberate, run {REFREEZE}"


def test_a_changed_default_is_caught_in_each_recipe_it_reaches():
    frozen = json.loads(FROZEN.read_text())
    changed = changed_recipes(frozen, CONFIGS, base=TrainConfig(momentum=0.8))
    keeping = {name for name, c in frozen.items() if c["momentum"] != 0.9}  # set their own
    assert changed == [
        f"{name}: momentum: frozen 0.9, now 0.8" for name in sorted(frozen.keys() - keeping)
    ]
    edited = {**frozen, "cifar10_lt/ce": {**frozen["cifar10_lt/ce"], "lr": 0.2}}
    del edited["cifar10_lt/vs"]
    assert changed_recipes(edited, CONFIGS) == [
        "cifar10_lt/ce: lr: frozen 0.2, now 0.1",
        "cifar10_lt/vs: not frozen",
    ]
