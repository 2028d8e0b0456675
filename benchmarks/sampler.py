"""One epoch's weighted draw: ltfast's sampler against torch's WeightedRandomSampler.

    python benchmarks/sampler.py [--sizes 50000 1000000 ...] [--json PATH]

Each method starts from class probabilities (class-balanced, q=0) over a long-tailed label
array (10 classes, imbalance 100) and ends with the epoch's N indices. torch needs per-sample
weights p[y_i] / n[y_i] first; ltfast draws a class, then a member. Ratios are to ltfast's
`indices()` at the same N.
"""

from __future__ import annotations

import numpy as np
import torch
from _common import Row, median_seconds, parser, print_table, write_json

from ltfast import ClassBalancedSampler, kernels
from ltfast.longtail import images_per_class
from ltfast.samplers import balanced_probabilities

SIZES = (50_000, 1_000_000, 10_000_000, 100_000_000)
TORCH_LIMIT = 2**24


def long_tailed_labels(size: int) -> np.ndarray:
    counts = np.array(images_per_class(10, 0.01), dtype=np.float64)
    per_class = np.floor(counts / counts.sum() * size).astype(np.int64)
    per_class[0] += size - per_class.sum()
    return np.random.default_rng(0).permutation(np.repeat(np.arange(10), per_class))


def measure(size: int, repeats: int) -> list[Row]:
    labels = long_tailed_labels(size)
    sampler = ClassBalancedSampler(labels, q=0.0, seed=0)
    probabilities = balanced_probabilities(np.bincount(labels, minlength=10), 0.0)
    epoch = iter(range(10**9))

    def ltfast_indices() -> np.ndarray:
        sampler.set_epoch(next(epoch))
        return sampler.indices()

    def ltfast_list() -> list[int]:
        sampler.set_epoch(next(epoch))
        return list(sampler)

    def weights() -> torch.Tensor:
        return torch.from_numpy(kernels.sample_weights(labels, probabilities))

    def torch_sampler() -> list[int]:
        return list(torch.utils.data.WeightedRandomSampler(weights(), size))

    def torch_multinomial() -> torch.Tensor:
        return torch.multinomial(weights(), size, replacement=True)

    cases = [
        ("ltfast_indices", "ClassBalancedSampler.indices(): int64 array", ltfast_indices),
        ("ltfast_list", "list(ClassBalancedSampler)", ltfast_list),
        ("torch_weighted_sampler", "list(WeightedRandomSampler(weights, N))", torch_sampler),
        ("torch_multinomial", "torch.multinomial(weights, N, replacement=True)", torch_multinomial),
    ]
    rows = []
    for name, what, run in cases:
        if name.startswith("torch") and size > TORCH_LIMIT:
            try:
                run()
            except RuntimeError as error:
                what = f"refused: {str(error).splitlines()[0][:60]}"
            rows.append(Row(name, f"N={size:,}: {what}", float("nan"), size))
            continue
        if name == "ltfast_list" and size > TORCH_LIMIT:
            continue  # a list of 10**8 Python ints is 3.6 GB; the array is what trains
        rows.append(Row(name, f"N={size:,}: {what}", median_seconds(run, repeats), size))
    for row in rows:
        row.ratio_to_reference = row.median_s / rows[0].median_s
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    args = args.parse_args(argv)
    kernels.warmup()
    rows = []
    for size in args.sizes:
        rows += measure(size, args.repeats if size <= 1_000_000 else min(args.repeats, 3))
    print_table("One epoch's class-balanced draw", rows, "M samples/s", 1e6, "ltfast_indices")
    write_json(args.json, rows, "ratio_to_ltfast")
    return rows


if __name__ == "__main__":
    main()
