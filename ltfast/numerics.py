"""The numerics a run computes in (`--precision`, `--memory-format`), and the CPU allocator
setting the CPU fast path relies on.

`--precision auto` (the default) trains under bf16 autocast where the device computes bf16
natively (CUDA GPUs with bf16, CPUs with AVX-512 BF16 or AMX) and in float32 elsewhere;
`--precision float32` is exact float32. Autocast keeps the weights, the optimiser and the loss
in float32: only the convolutions and the linear layer compute in bf16. `channels_last` (the
default memory format) is faster on CUDA (what tensor-core convolutions read) and on the CPU
(oneDNN's blocked convolutions), in float32 and bf16 alike. A run resolves `auto` before it
writes its config, so `config.yaml`, the checkpoints and `metrics.jsonl` name what ran.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "bf16", "float32")
MEMORY_FORMATS = ("channels_last", "contiguous")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware, rather than emulating it in float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        # torch's own CPU feature checks (private, hence looked up with a default).
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, check, lambda: False)() for check in checks)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` as bf16 or float32 on `device`; bf16 and float32 as they are."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "float32"


@dataclass(frozen=True)
class Numerics:
    """How a model computes on its device: `precision` bf16 (autocast) or float32, in
    channels_last or contiguous (NCHW) memory."""

    device: torch.device
    precision: str = "float32"
    memory_format: str = "channels_last"

    def __post_init__(self):
        if self.precision not in PRECISIONS[1:] or self.memory_format not in MEMORY_FORMATS:
            raise ValueError(
                f"numerics: precision must be bf16 or float32 and memory_format one of "
                f"{', '.join(MEMORY_FORMATS)}, got {self.precision!r}, {self.memory_format!r}"
            )

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"

    @property
    def torch_memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def batch_dtype(self) -> torch.dtype:
        """The dtype of the batches the loaders hand the model: bf16 on CUDA under bf16 (half
        the bytes to move, and autocast would cast them anyway); float32 on the CPU, where
        bf16 input measured no faster and mixup then mixes in float32."""
        bf16_batches = self.precision == "bf16" and self.device.type == "cuda"
        return torch.bfloat16 if bf16_batches else torch.float32

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16")

    def describe(self) -> str:
        """For the run header and metrics.jsonl, e.g. 'bf16 autocast, channels_last'."""
        kind = "bf16 autocast" if self.precision == "bf16" else "float32"
        return f"{kind}, {self.memory_format}"


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """What a run ran on, for summaries and tables: the GPU's name, or the CPU's and its cores."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {os.cpu_count()} cores"


def keep_freed_memory() -> None:
    """Stops glibc's malloc from returning freed blocks to the kernel on a CPU run.

    A CPU training step allocates and frees tens of activation tensors of a few MB each. By
    default glibc serves blocks that large with mmap and unmaps them when freed, so every
    step pays the kernel for zeroing fresh pages again; this measured about 10 % of a
    ResNet-32 step on a 2-core machine. Keeping freed memory in the heap (the allocation
    pattern repeats every step, so the heap stops growing after the first one) is what
    jemalloc and tcmalloc, the usual CPU PyTorch advice, achieve too. Elsewhere than glibc
    this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        libc.mallopt(m_mmap_threshold, 1 << 30)  # 1 GiB: no activation is served by mmap
        libc.mallopt(m_trim_threshold, 1 << 30)
