"""Batch loaders for training and evaluation.

`DeviceLoader` keeps a whole uint8 split on the training device (a CIFAR-10-LT training set is
38 MB) and builds each batch there: the crops and flips of the sampler's indices as one row
copy (ltfast.augment.Crops), the strong pipeline if any (ltfast.augment.pipelines) and
normalisation. `TorchLoader`
is the usual Dataset + DataLoader + torchvision pipeline, kept for comparison
(`--loader torch`). Both yield (images, labels) on the device.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler, Subset
from torchvision.transforms import v2

from ltfast.augment import MEAN, STD, Crops, Normalize, draw_crop_flip
from ltfast.augment.pipelines import Pipeline, concatenate_plans
from ltfast.datasets import CIFAR10
from ltfast.samplers import EpochSampler
from ltfast.seeds import AUGMENT, POLICY, derive_seed

PADDING = 4
# Training steps whose strong augmentation is applied as one batch: its ops cost mostly per
# call, so eight steps at once cost little more than one. Draws stay per step.
STEPS_AT_ONCE = 8
Batch = tuple[torch.Tensor, torch.Tensor]


def images_per_pass(count: int, batch_size: int, augment: bool, drop_last: bool) -> int:
    """The images of a pass over `count` indices that are trained on: a training pass drops a
    last batch of one image (batch norm cannot train on it), or with `drop_last` any last batch
    short of `batch_size`; an evaluation pass keeps every image."""
    last = count % batch_size
    smallest = batch_size if drop_last else 2
    return count - last if augment and 0 < last < smallest else count


class DeviceLoader:
    """Batches of `images` (N, 3, 32, 32) uint8 gathered and augmented on `device`.

    The crop and flip draw from a generator seeded with (seed, epoch, stream), and a strong
    `pipeline` from one seeded with (seed, epoch, stream, step), so an epoch's batches are
    reproducible, and the standard pipeline draws what it drew before strong ones existed. A
    final training batch of one image is dropped (batch norm cannot train on it), and with
    `drop_last` any final training batch smaller than `batch_size` (BagofTricks-LT's loader).
    """

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        targets: list[int] | np.ndarray | torch.Tensor,
        batch_size: int,
        device: torch.device,
        augment: bool,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        pipeline: Pipeline | None = None,
        drop_last: bool = False,
    ):
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be a uint8 (N, C, H, W) tensor or array, got "
                f"{type(images).__name__} {getattr(images, 'dtype', '')} "
                f"{tuple(getattr(images, 'shape', ()))}"
            )
        self.device = torch.device(device)
        # Training images are stored zero-padded once, with their mirror images, so a batch
        # is one row copy away from its random crops (see Crops).
        # A dataset's NHWC pixels become NCHW on the device: a layout change costs far less
        # there than on the CPU.
        images = images.to(self.device).contiguous()
        self.images: torch.Tensor | Crops = (
            Crops(F.pad(images, (PADDING,) * 4)) if augment else images
        )
        self.targets = torch.as_tensor(targets, dtype=torch.int64).to(self.device)
        self.batch_size, self.augment, self.seed = batch_size, augment, seed
        self.drop_last = drop_last
        self.normalize = Normalize(self.device, dtype, channels_last)
        self.pipeline = pipeline or Pipeline()
        if self.pipeline.draws and not augment:
            raise ValueError("a strong pipeline needs augment=True (it follows crop and flip)")

    def images_per_pass(self, count: int) -> int:
        """How many of a pass's `count` indices its batches hold (for progress bars)."""
        return images_per_pass(count, self.batch_size, self.augment, self.drop_last)

    def batches(
        self, sampler: EpochSampler | None = None, epoch: int = 0, stream: int = AUGMENT
    ) -> Iterator[Batch]:
        """One pass over `sampler.indices()` (or over all images in order); `stream` keeps
        the augmentation of a second pass in the same epoch (CMO's) apart from the first."""
        if sampler is None:
            order = torch.arange(len(self.images), device=self.device)
        else:
            order = torch.from_numpy(np.asarray(sampler.indices())).to(
                self.device, non_blocking=True
            )
        generator = torch.Generator(device=self.device)
        generator.manual_seed(derive_seed(self.seed, epoch, stream))
        kept = self.images_per_pass(len(order))
        bounds = [(s, min(s + self.batch_size, kept)) for s in range(0, kept, self.batch_size)]
        at_once = STEPS_AT_ONCE if self.pipeline.draws else 1
        for first in range(0, len(bounds), at_once):
            steps = bounds[first : first + at_once]
            base, end = steps[0][0], steps[-1][1]
            chosen = order[base:end]
            if isinstance(self.images, Crops):
                images = self._augment(self.images, chosen, steps, first, generator, epoch, stream)
            else:
                images = self.normalize(self.images.index_select(0, chosen))
            for start, stop in steps:
                yield (
                    images[start - base : stop - base],
                    self.targets[chosen[start - base : stop - base]],
                )

    def _augment(
        self,
        crops: Crops,
        chosen: torch.Tensor,
        steps: list[tuple[int, int]],
        first: int,
        generator: torch.Generator,
        epoch: int,
        stream: int,
    ) -> torch.Tensor:
        """Crop, flip, the pipeline and normalisation of consecutive steps' images (`chosen`),
        with every draw made step by step: the crop and flip from the epoch's generator in
        order, the pipeline's from the step's own generator."""
        sizes = [stop - start for start, stop in steps]
        draws = [draw_crop_flip(size, generator, PADDING) for size in sizes]
        top, left, flip = (torch.cat(parts) for parts in zip(*draws, strict=True))
        images = crops.crop_flip(chosen, top, left, flip, crops.width - 2 * PADDING)
        stages = (*self.pipeline.before_normalize, *self.pipeline.after_normalize)
        plans: list[list] = [[] for _ in stages]
        policy = torch.Generator(device=self.device)
        for step, size in enumerate(sizes if stages else (), start=first):
            policy.manual_seed(derive_seed(self.seed, epoch, stream, POLICY, step))
            for plan, each in zip(plans, stages, strict=True):
                plan.append(each.batched.plan(size, policy))
        joined = [concatenate_plans(plan) for plan in plans]
        before = len(self.pipeline.before_normalize)
        for each, plan in zip(self.pipeline.before_normalize, joined[:before], strict=True):
            images = each.batched.apply(images, plan)
        images = self.normalize(images)
        for each, plan in zip(self.pipeline.after_normalize, joined[before:], strict=True):
            images = each.batched.apply(images, plan)
        return images


def torchvision_transform(augment: bool, pipeline: Pipeline | None = None) -> v2.Compose:
    """The field's per-image pipeline on a uint8 CHW tensor, with `pipeline`'s steps in
    torchvision's per-image form."""
    pipeline = pipeline or Pipeline()
    steps = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if augment else []
    steps += [each.per_image for each in pipeline.before_normalize]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    return v2.Compose(steps + [each.per_image for each in pipeline.after_normalize])


class TorchLoader:
    """A torch DataLoader over an ltfast Dataset with torchvision transforms, for comparison.

    Its augmentation draws from torch's global generator in the workers, so unlike
    DeviceLoader it is not reproducible epoch by epoch. `drop_last` as DeviceLoader's.
    """

    def __init__(
        self,
        dataset: CIFAR10,
        batch_size: int,
        device: torch.device,
        augment: bool,
        workers: int = 2,
        channels_last: bool = False,
        subset: Sequence[int] | None = None,
        pipeline: Pipeline | None = None,
        drop_last: bool = False,
    ):
        transformed = copy.copy(dataset)
        transformed.output = "tensor"
        transformed.transform = torchvision_transform(augment, pipeline)
        self.dataset: CIFAR10 | Subset = (
            transformed if subset is None else Subset(transformed, subset)
        )
        self.batch_size, self.workers, self.augment = batch_size, workers, augment
        self.drop_last = drop_last and augment
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._loaders: dict[int, DataLoader] = {}

    def _loader(self, sampler: Sampler | None) -> DataLoader:
        # One DataLoader per sampler object, with persistent workers: set_epoch on the sampler
        # changes the draw without a rebuild.
        key = id(sampler)
        if key not in self._loaders:
            self._loaders[key] = DataLoader(
                self.dataset,
                batch_size=self.batch_size,
                sampler=sampler,
                num_workers=self.workers,
                persistent_workers=self.workers > 0,
                pin_memory=self.device.type == "cuda",
                drop_last=self.drop_last,
            )
        return self._loaders[key]

    def images_per_pass(self, count: int) -> int:
        return images_per_pass(count, self.batch_size, self.augment, self.drop_last)

    def batches(
        self, sampler: Sampler | None = None, epoch: int = 0, stream: int = AUGMENT
    ) -> Iterator[Batch]:
        del epoch, stream  # the sampler carries the epoch; the workers draw the augmentation
        for images, labels in self._loader(sampler):
            if self.augment and len(labels) < 2:
                break
            images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
            yield images, labels.to(self.device, non_blocking=True)
