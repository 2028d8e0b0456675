"""The recipes in configs/: one per published CIFAR-LT row that ltfast can run, each valid,
each stating its published figure and source."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltfast.config import load_yaml, resolve
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
    "cifar10_lt": UNSEEN | LONG | CMO,
    "cifar100_lt": UNSEEN | {"cmo_ce_drw", "imbsam"} | LONG,
}
FOLDERS = {"cifar10_lt": "cifar10", "cifar100_lt": "cifar100"}
RECIPES = sorted(CONFIGS.glob("*/*.yaml"))


def test_every_row_has_a_recipe_for_both_datasets():
    assert {p.stem for p in (CONFIGS / "cifar10_lt").glob("*.yaml")} == ROWS
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
        assert "no published" in config.source or "none read" in config.source
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
