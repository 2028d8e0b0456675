"""Seeds derived from (seed, epoch, stream): every random choice of a run is a pure function
of its seed and position, so a resumed run repeats an uninterrupted one."""

from __future__ import annotations

import numpy as np

# Streams: the sampler's draw, the crop and flip, mixing (mixup, CutMix, CMO), the per-step
# draws of a strong pipeline, CMO's minority-sampled batches, and a loss's noise (GCL's).
SAMPLER, AUGMENT, MIXUP, POLICY, MINORITY, LOSS_NOISE = 0, 1, 2, 3, 4, 5


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (fits torch's manual_seed)."""
    low, high = np.random.SeedSequence(list(parts)).generate_state(2, np.uint32)
    return (int(low) | int(high) << 32) >> 1
