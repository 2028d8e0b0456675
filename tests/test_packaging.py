"""Packaging promises: the license, dependency bounds that go together, a clear refusal to
build where the reader cannot work."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def bounds(name: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (major, minor) lower and upper bounds of a dependency."""
    spec = next(d for d in PROJECT["dependencies"] if re.match(rf"{name}[<>=]", d))
    low = re.search(r">=(\d+)\.(\d+)", spec)
    high = re.search(r"<(\d+)\.(\d+)", spec)
    assert low and high, f"{spec} needs a lower and an upper bound"
    return (int(low[1]), int(low[2])), (int(high[1]), int(high[2]))


def test_torch_and_torchvision_bounds_cover_the_same_releases():
    # torchvision 0.N is released for torch 2.(N - 15): 0.17 / 2.2 ... 0.29 / 2.14.
    torch_low, torch_high = bounds("torch")
    vision_low, vision_high = bounds("torchvision")
    assert torch_low[0] == torch_high[0] == 2 and vision_low[0] == vision_high[0] == 0
    assert vision_low[1] == torch_low[1] + 15 and vision_high[1] == torch_high[1] + 15


def test_the_license_file_is_the_declared_license():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_matplotlib_is_an_extra_not_a_dependency():
    assert not any(d.startswith("matplotlib") for d in PROJECT["dependencies"])
    assert any(d.startswith("matplotlib") for d in PROJECT["optional-dependencies"]["plots"])


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_a_windows_build_stops_with_a_clear_message(tmp_path):
    result = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(tmp_path), "-DCMAKE_SYSTEM_NAME=Windows"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert "builds on Linux and macOS, not on Windows" in message and "WSL" in message
