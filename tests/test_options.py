"""Options as people set them: every method option range-checked whatever method is chosen,
options that do nothing warned about, a diverged loss naming its suspects, and config files
and flags written the usual ways (1e-3 in YAML, a key twice, ~, exponents, huge seeds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltfast.config import TrainConfig, inert_options, resolve
from ltfast.sweep import override_flags, parse_overrides
from ltfast.tau_norm import main as tau_norm_main
from ltfast.train import main

QUICK = ["--dataset", "synthetic", "--synthetic-size", "40", "--imb-factor", "0.2", "--quiet"]
QUICK += ["--batch-size", "32", "--epochs", "1", "--warmup-epochs", "0"]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--ldam-s", "1e30", "ldam_s: must be in (0, 100], got 1e+30"),
        ("--focal-gamma", "1e6", "focal_gamma: must be in [0, 10], got 1e+06"),
        ("--logit-tau", "1e30", "logit_tau: must be in [-10, 10], got 1e+30"),
        ("--eval-logit-tau", "-1e30", "eval_logit_tau: must be in [-10, 10], got -1e+30"),
        ("--ldam-max-m", "0", "ldam_max_m: must be in (0, 2], got 0"),
        ("--classifier-lr-factor", "100", "classifier_lr_factor: must be in (0, 10], got 100"),
        ("--label-smoothing-head", "1.5", "label smoothing head must be in [0, 1)"),
    ],
)
def test_an_option_of_a_method_not_chosen_is_range_checked(tmp_path, capsys, flag, value, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["--loss", "ce", flag, value, "--out", str(out)])  # the option's method is off
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # refused before the folder exists


def test_options_without_effect_are_warned_about(tmp_path, data_root, capsys):
    config = TrainConfig(reweight_start_epoch=5, classifier_lr_factor=0.2, focal_gamma=2.0)
    assert inert_options(config) == [
        "--focal-gamma 2.0 has no effect without --loss focal",
        "--reweight-start-epoch 5 has no effect without --reweight inverse or class_balanced",
        "--classifier-lr-factor 0.2 has no effect without --stage2 mislas",
    ]
    assert inert_options(TrainConfig(mixup_alpha=0.4, cutout_fill="mean", cmo_prob=0.2)) == [
        "--cutout-fill mean has no effect without --cutout > 0",
        "--mixup-alpha 0.4 has no effect without --mix mixup",
        "--cmo-prob 0.2 has no effect without --mix cmo",
    ]
    assert inert_options(TrainConfig()) == []
    assert inert_options(TrainConfig(loss="focal", focal_gamma=2.0)) == []
    out = tmp_path / "run"
    main([*QUICK, "--data-root", str(data_root), "--out", str(out), "--focal-gamma", "2"])
    assert "warning: --focal-gamma 2.0 has no effect without --loss focal" in (
        capsys.readouterr().err
    )


def test_a_diverged_loss_names_the_options_that_can_cause_it(tmp_path, data_root):
    out = tmp_path / "run"
    flags = ["--loss", "focal", "--focal-gamma", "2", "--lr", "1e8", "--mix", "mixup"]
    with pytest.raises(FloatingPointError) as error:
        main([*QUICK, "--data-root", str(data_root), "--out", str(out), *flags])
    message = str(error.value)
    assert "the run diverged" in message
    assert "--lr 1e+08, --focal-gamma 2, --mix mixup" in message


def test_yaml_numbers_as_people_write_them(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("lr: 1e-3\nweight_decay: 5E-4\nepochs: '12'\n")  # 1e-3 is text to YAML 1.1
    resolved = resolve({}, config)
    assert (resolved.lr, resolved.weight_decay, resolved.epochs) == (0.001, 0.0005, 12)
    config.write_text("lr: fast\n")
    with pytest.raises(ValueError, match="lr: expected a number, got 'fast'"):
        resolve({}, config)


def test_a_key_given_twice_names_both_lines(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("lr: 0.1\nepochs: 10\n\nlr: 0.2\n")
    with pytest.raises(ValueError, match="'lr' is given twice, on lines 1 and 4"):
        resolve({}, config)


def test_set_takes_paths_as_written():
    values = parse_overrides(["data_root=~", "lr=1e-3", "precision=bf16"])
    assert values == {"data_root": "~", "lr": 0.001, "precision": "bf16"}
    assert resolve({"data_root": values["data_root"]}).data_root == str(Path.home())


def test_huge_seeds_are_named(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--seed", str(2**64)])
    assert exit_.value.code == 2
    assert f"seed: must be in [0, 2**63), got {2**64}" in capsys.readouterr().err


def test_negative_numbers_in_exponent_form_and_lists_parse(trained_run, tmp_path, capsys):
    flags = override_flags({"eval_logit_tau": -0.5, "lr": 1e-3})
    assert flags == ["--eval-logit-tau=-0.5", "--lr=0.001"]  # one token each
    reports = tau_norm_main([str(trained_run), "--taus", "-1,0", "--out", str(tmp_path)])
    assert [r["tau"] for r in reports] == [-1.0, 0.0]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--logit-tau", "-2e1"])  # parsed as a value, then range-checked
    assert "logit_tau: must be in [-10, 10], got -20" in capsys.readouterr().err
