"""The numerics of a run: `--precision auto` resolved for the device and recorded, bf16
autocast and float32 computing as they say, the memory format of the model and its batches,
and the older `amp` name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import ltfast.numerics
import ltfast.train
from ltfast import checkpoint
from ltfast.config import resolve
from ltfast.numerics import Numerics, keep_freed_memory, native_bf16, resolve_precision
from ltfast.train import main

QUICK = ["--dataset", "synthetic", "--synthetic-size", "40", "--imb-factor", "0.2"]
QUICK += ["--batch-size", "32", "--epochs", "1", "--warmup-epochs", "0"]


def train(tmp_path: Path, data_root: Path, *flags: str) -> Path:
    out = tmp_path / "run"
    assert main([*QUICK, "--data-root", str(data_root), "--out", str(out), *flags])
    return out


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    lines = [line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")]
    return set(lines[0].split(":", 1)[1].split()) if lines else set()


def test_native_bf16_on_the_cpu_is_what_the_cpu_flags_say():
    flags = cpu_flags()
    assert native_bf16(torch.device("cpu")) == bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "float32")])
def test_auto_precision_is_bf16_only_where_it_is_native(monkeypatch, native, expected):
    monkeypatch.setattr(ltfast.numerics, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == expected
    assert resolve_precision("float32", cpu) == "float32"
    assert resolve_precision("bf16", cpu) == "bf16"


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "float32")])
def test_a_run_records_the_numerics_that_ran(
    tmp_path, data_root, monkeypatch, capsys, native, expected
):
    monkeypatch.setattr(ltfast.numerics, "native_bf16", lambda device: native)
    out = train(tmp_path, data_root)  # --precision auto, the default
    assert yaml.safe_load((out / "config.yaml").read_text())["precision"] == expected
    assert checkpoint.load(out)["config"]["precision"] == expected
    described = "bf16 autocast" if native else "float32"
    assert records(out)[0]["numerics"] == f"{described}, channels_last"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["numerics"] == f"{described}, channels_last"
    header = capsys.readouterr().err
    assert f"numerics: {described}, channels_last" in header
    # The field's ResNet-32 for 10 classes (LDAM-DRW's resnet32: 0.46 M parameters).
    assert summary["parameters"] == 464_154 and "464,154 parameters" in header


def convolution_outputs(monkeypatch) -> list[torch.Tensor]:
    """The outputs of every model's first convolution, collected as the run trains."""
    seen: list[torch.Tensor] = []
    original = ltfast.train.Trainer.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.model.conv1.register_forward_hook(lambda module, inputs, out: seen.append(out))

    monkeypatch.setattr(ltfast.train.Trainer, "__init__", spy)
    return seen


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("float32", None)])
def test_bf16_computes_convolutions_in_bf16_and_float32_in_float32(
    tmp_path, data_root, monkeypatch, precision, dtype
):
    seen = convolution_outputs(monkeypatch)
    out = train(tmp_path, data_root, "--precision", precision)
    assert seen and {x.dtype for x in seen} == {dtype or torch.float32}
    # Autocast computes in bf16 and keeps the weights, so the checkpoint is float32 either way.
    assert {w.dtype for w in checkpoint.load(out)["model"].values() if w.is_floating_point()} == {
        torch.float32
    }


@pytest.mark.parametrize("memory_format", ["channels_last", "contiguous"])
def test_the_model_and_its_batches_share_the_memory_format(
    tmp_path, data_root, monkeypatch, memory_format
):
    inputs: list[torch.Tensor] = []
    original = ltfast.train.Trainer.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        assert self.model.conv1.weight.is_contiguous(memory_format=torch_format)
        self.model.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))

    torch_format = Numerics(torch.device("cpu"), memory_format=memory_format).torch_memory_format
    monkeypatch.setattr(ltfast.train.Trainer, "__init__", spy)
    train(tmp_path, data_root, "--memory-format", memory_format, "--precision", "float32")
    assert inputs and all(x.is_contiguous(memory_format=torch_format) for x in inputs)
    assert all(x.dtype == torch.float32 for x in inputs)  # CPU batches stay float32


def test_the_older_amp_name_means_bf16(tmp_path):
    config = tmp_path / "old.yaml"
    config.write_text("amp: true\n")
    assert resolve({}, config).precision == "bf16"
    config.write_text("amp: false\n")
    assert resolve({}, config).precision == "float32"
    namespace = ltfast.config.parser().parse_args(["--amp"])
    assert namespace.precision == "bf16"


def test_bad_numerics_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--precision", "fp16", "--memory-format", "nhwc", "--out", str(tmp_path / "r")])
    error = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "precision: must be one of auto, bf16, float32, got 'fp16'" in error
    assert "memory_format: must be one of channels_last, contiguous, got 'nhwc'" in error


def test_keeping_freed_memory_changes_no_result():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32)
    before = torch.nn.functional.conv2d(x, torch.ones(4, 3, 3, 3))
    keep_freed_memory()
    keep_freed_memory()  # idempotent
    assert torch.equal(torch.nn.functional.conv2d(x, torch.ones(4, 3, 3, 3)), before)
