"""Train a CIFAR ResNet on long-tailed CIFAR: `python -m ltfast.train --help`.

A run folder (`--out`) receives the resolved `config.yaml`, `metrics.jsonl` (one line per
epoch), `summary.json` (final and best epoch), checkpoints (`last.pt` every epoch, `best.pt`)
and the report (`report.md` and PNG plots). Ctrl-C or SIGTERM finishes the current step,
writes `last.pt` and exits; `--resume RUN_DIR` continues exactly where it stopped. Under
`torchrun --nproc_per_node=N -m ltfast.train ...` it trains with DistributedDataParallel.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

import ltfast
from ltfast import checkpoint, distributed, evaluation, kernels, optim
from ltfast.config import (
    TrainConfig,
    divergence_suspects,
    from_mapping,
    incompatibilities,
    inert_options,
    parser,
    resolve,
)
from ltfast.datasets import DatasetError
from ltfast.distributed import World, pick_device
from ltfast.download import DownloadError
from ltfast.losses import ClassLoss
from ltfast.metrics import FEW_BELOW, MANY_ABOVE
from ltfast.mixing import Mixture
from ltfast.numerics import keep_freed_memory, resolve_precision
from ltfast.optim import OPTIMIZERS
from ltfast.parent import end_with_parent
from ltfast.parts import Parts, build_parts, numerics
from ltfast.provenance import code, execution
from ltfast.run_folder import BEST, DATASET, LAST, SUMMARY, RunFolder
from ltfast.schedules import LR_SCHEDULES

CHECK_EVERY = 20  # steps between syncs that catch a diverged loss or a stop request
# What a bad argument, absent or damaged data or an unusable run folder raise while a run is
# set up; these become a short message and exit code 2. Later errors keep their traceback.
SETUP_ERRORS = (ValueError, OSError, DatasetError, DownloadError)


class Interrupted(Exception):
    """Raised after the step during which a stop was requested."""


class UsageError(Exception):
    """A run that cannot start as asked; the message says why and what to do."""


@dataclass
class Resume:
    """A checkpoint to continue from, and the file it came from."""

    state: dict
    path: Path


class Trainer:
    """A run's parts (see ltfast.parts), its optimiser, and where it stands (epoch, step,
    sums). The loop below knows no method by name: samplers, losses, weights and targets
    come from the parts, built from the config unless given."""

    def __init__(
        self,
        config: TrainConfig,
        world: World,
        parts: Parts | None = None,
        start_from_init: bool = True,
    ):
        """`start_from_init=False`: a resume, whose checkpoint replaces --init-from's weights."""
        self.config, self.world = config, world
        self.device = pick_device(config.device, world)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        torch.manual_seed(config.seed)
        kernels.warmup()
        if parts is None:
            parts = build_parts(config, world, self.device, start_from_init)
        self.parts = parts
        self.train_set, self.test_set = self.parts.train_set, self.parts.test_set
        self.model = self.parts.model
        wrapped = DistributedDataParallel(self.model) if world.distributed else self.model
        self.step_model = torch.compile(wrapped) if config.compile else wrapped
        self.optimizer = OPTIMIZERS[config.optimizer](
            self.parts.param_groups, config, self.train_set.class_counts
        )
        schedule = LR_SCHEDULES[config.lr_schedule]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda epoch: schedule(epoch, config)
        )
        self.train_loader, self.test_loader = self.parts.train_loader, self.parts.test_loader
        self.sampling = self.parts.sampling
        self.numerics = numerics(config, self.device)
        self.autocast = self.numerics.autocast()
        # Where the run stands: `step` steps of `epoch` are done, with these partial sums.
        self.epoch, self.step, self.train_s = 0, 0, 0.0
        self.loss_sum = torch.zeros((), device=self.device)
        self.seen = 0
        self.records: list[dict] = []
        self.stop_requested = False

    # ----- checkpoints --------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "loss_sum": self.loss_sum.cpu(),
            "seen": self.seen,
            "train_s": self.train_s,
            "records": self.records,
            "rng": checkpoint.rng_state(),
            "epoch_end_hooks": {
                name: hook.state_dict() for name, hook in self.parts.epoch_end_hooks.items()
            },
            "processes": self.world.size,
            "ltfast_version": ltfast.__version__,
        }

    def load_state(self, state: dict, source: Path) -> None:
        """Continues from a checkpoint `state` read from `source`; a checkpoint whose parts do
        not fit this model and optimiser raises a ValueError naming the file."""
        if state["step"] > 0 and state["processes"] != self.world.size:
            raise ValueError(
                f"{source} stopped in the middle of an epoch with {state['processes']} "
                f"processes; resume it with the same number (now {self.world.size})"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            checkpoint.set_rng_state(state["rng"])
            for name, hook in self.parts.epoch_end_hooks.items():
                hook.load_state_dict(state["epoch_end_hooks"][name])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{source} is damaged and cannot be resumed: {error}") from None
        self.epoch, self.step, self.train_s = state["epoch"], state["step"], state["train_s"]
        self.loss_sum = state["loss_sum"].to(self.device)
        self.seen = state["seen"]
        self.records = state["records"]

    # ----- one epoch ----------------------------------------------------------------------

    def train_epoch(self) -> dict[str, float]:
        """Trains the rest of the current epoch (from `self.step`); raises Interrupted when a
        stop is requested, with the position saved in `self`."""
        config, epoch = self.config, self.epoch
        self.model.train()
        mix = self.parts.mixer.for_epoch(epoch)
        sampler = self.sampling.sampler(epoch)
        loss_of = self.parts.loss
        loss_of.set_weight(self.parts.weighting.weights(epoch))
        loss_of.set_epoch(epoch)
        self.save_draw(sampler)
        bar = tqdm(
            total=self.train_loader.images_per_pass(len(sampler)) * self.world.size,
            initial=self.seen,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="img",
            disable=config.quiet or not self.world.is_main,
            leave=False,
            file=sys.stderr,
        )
        start = time.perf_counter()
        for step, (images, labels) in enumerate(self.train_loader.batches(sampler, epoch)):
            images, targets = mix(images, labels)  # for skipped steps too: the same draws
            if step < self.step:
                continue  # done before the interruption
            loss_of.start_step(epoch, step)
            loss = optim.step(self.optimizer, self.closure(images, targets, loss_of))
            self.loss_sum += loss.detach() * len(labels)
            self.seen += len(labels) * self.world.size
            self.step = step + 1
            bar.update(len(labels) * self.world.size)
            if self.should_stop(loss, step, bar):
                self.train_s += time.perf_counter() - start
                raise Interrupted
        bar.close()
        self.train_s += time.perf_counter() - start
        mean_loss = self.mean_of(self.loss_sum) * self.world.size / max(self.seen, 1)
        check_finite(mean_loss, epoch, None, config)
        return {
            "train_loss": mean_loss,
            "images_per_s": self.seen / self.train_s,
            "train_s": self.train_s,
        }

    def closure(self, images: torch.Tensor, targets, loss_of) -> optim.Closure:
        return loss_closure(
            self.step_model, self.optimizer, self.autocast, images, targets, loss_of
        )

    def should_stop(self, loss: torch.Tensor, step: int, bar) -> bool:
        """Checks the loss (every CHECK_EVERY steps) and a stop request. Under torchrun both
        travel in one collective every CHECK_EVERY steps, so no step waits for the host
        otherwise; a single process checks its own stop flag after every step."""
        if step % CHECK_EVERY != 0:
            return self.stop_requested and not self.world.distributed
        loss = loss.detach().float()
        both = torch.stack([loss, loss.new_tensor(float(self.stop_requested))])
        both = distributed.all_sum(both, self.world).cpu()
        mean_loss = both[0].item() / self.world.size
        check_finite(mean_loss, self.epoch, step, self.config)
        bar.set_postfix(loss=f"{mean_loss:.3f}")
        return both[1].item() > 0

    def mean_of(self, value: torch.Tensor) -> float:
        """The mean over ranks of a scalar tensor."""
        return distributed.all_sum(value.detach().clone(), self.world).item() / self.world.size

    def save_draw(self, sampler) -> None:
        if self.config.save_draws:
            folder = RunFolder(self.config.out).file("draws")
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"epoch{self.epoch}-rank{self.world.rank}.npy", sampler.indices())

    def evaluate(self) -> dict[str, object]:
        """The report of the whole test split (see ltfast.evaluation), with the post-hoc
        adjusted predictions' under "adjusted" when --eval-logit-tau is set."""
        # The bare model: DDP's forward would sync buffers, a collective that ranks with
        # unequal test shards would not all join.
        distributed.share_buffers(self.model, self.world)
        counts = self.train_set.class_counts
        return evaluation.evaluate(
            self.model,
            self.test_loader.batches(),
            counts,
            self.world,
            self.autocast,
            self.config.eval_logit_tau,
        )

    def run_epoch(self) -> dict[str, object]:
        """Finishes the current epoch, evaluates, and moves the position to the next."""
        epoch, start = self.epoch, time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        stats = self.train_epoch()
        for hook in self.parts.epoch_end_hooks.values():
            hook.after_training(epoch)
        self.scheduler.step()
        report = self.evaluate()
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            **stats,
            **report,
            "epoch_s": time.perf_counter() - start,
            **execution(self.device, self.numerics),
            "sampler": type(self.sampling.sampler(epoch)).__name__,
            "class_probabilities": self.sampling.class_probabilities(epoch).tolist(),
            "loss": self.config.loss,
            "class_weights": self.parts.weighting.as_list(epoch),
        }
        self.records.append(record)
        self.epoch, self.step, self.train_s, self.seen = epoch + 1, 0, 0.0, 0
        self.loss_sum.zero_()
        return record


def loss_closure(
    model: Callable[..., Any],
    optimizer: torch.optim.Optimizer,
    autocast,
    images: torch.Tensor,
    targets: Mixture,
    loss_of: ClassLoss,
) -> optim.Closure:
    """One evaluation of a batch's loss with its gradient, for `optimizer.step`: SGD calls it
    once, SAM twice. Called with `class_scales` (K, C), it returns the K losses of one forward
    pass, not yet differentiated (ImbSAM; see ltfast.optim). A loss that `wants_features`
    receives the model's pooled features too."""

    def evaluate(class_scales: torch.Tensor | None = None) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            if loss_of.wants_features:
                logits, features = model(images, with_features=True)
            else:
                logits, features = model(images), None
        options = {} if features is None else {"features": features}
        if class_scales is not None:
            scales = class_scales.to(logits.device)
            return torch.stack(
                [targets.loss(loss_of, logits, class_scale=s, **options) for s in scales]
            )
        loss = targets.loss(loss_of, logits, **options)
        loss.backward()
        return loss

    return evaluate


def check_finite(loss: float, epoch: int, step: int | None, config: TrainConfig) -> None:
    if not math.isfinite(loss):
        where = f"epoch {epoch + 1}" + ("" if step is None else f", step {step}")
        raise FloatingPointError(
            f"the training loss is {loss} at {where}: the run diverged. The options of this "
            f"run that can cause it: {', '.join(divergence_suspects(config))}; lower --lr "
            f"first, or check the data"
        )


# ----- the run folder ---------------------------------------------------------------------


def describe_data(trainer: Trainer) -> dict:
    """What the report needs to know of the data, beside the per-epoch metrics."""
    return {
        "classes": trainer.train_set.classes,
        "class_counts": trainer.train_set.class_counts.tolist(),
        "train_images": len(trainer.train_set),
        "test_images": len(trainer.test_set),
    }


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run_header(trainer: Trainer) -> str:
    config, counts = trainer.config, trainer.train_set.class_counts
    return (
        f"{config.model} on {config.dataset} ({len(trainer.train_set)} training images, "
        f"{counts.max()} to {counts.min()} per class), {config.epochs} epochs on "
        f"{trainer.device} x{trainer.world.size}, numerics: {trainer.numerics.describe()}, "
        f"{torch.get_num_threads()} threads, {parameter_count(trainer.model):,} parameters"
    )


def empty_classes_warning(train_set) -> str | None:
    """Names the classes the subset left without a training image (an imbalance factor so
    small that n_max * factor rounds to 0), or None. The losses, weights and samplers count an
    empty class as one image, so nothing divides by zero, but such a class is never learnt."""
    empty = [train_set.classes[c] for c in np.flatnonzero(train_set.class_counts == 0)]
    if not empty:
        return None
    return (
        f"{len(empty)} of {len(train_set.classes)} classes have no training image: "
        f"{', '.join(empty)}. They cannot be learnt, and the losses, weights and samplers count "
        f"each as one image; raise --imb-factor to keep at least one"
    )


def summarize(trainer: Trainer, wall_s: float) -> dict:
    keys = ("epoch", "test_top1", "test_balanced_acc", "many", "medium", "few", "ece", "train_loss")
    records = trainer.records
    best = max(records, key=lambda r: r["test_top1"])
    return {
        "final": {k: records[-1][k] for k in keys},
        "best": {k: best[k] for k in keys},
        "best_is_chosen_on": "test_top1 (the field's habit; the final epoch is the honest number)",
        "thresholds": {"many_above": MANY_ABOVE, "few_below": FEW_BELOW},
        "train_images": len(trainer.train_set),
        "class_counts": trainer.train_set.class_counts.tolist(),
        "parameters": parameter_count(trainer.model),
        "device": str(trainer.device),
        **execution(trainer.device, trainer.numerics),
        "processes": trainer.world.size,
        "wall_s": wall_s,
        "code": code(),
        "data_files": {**trainer.train_set.digests(), **trainer.test_set.digests()},
        "config": dataclasses.asdict(trainer.config),
    }


def percent(value: float | None) -> str:
    return "    - " if value is None else f"{100 * value:6.2f}"


REPORT_KEYS = ("test_top1", "test_balanced_acc", "many", "medium", "few", "ece")
HEADER = " top-1 balanced   many medium    few    ECE"


def report_cells(report: dict) -> str:
    """A report's figures in %, aligned under HEADER."""
    return " ".join(percent(report.get(k)) for k in REPORT_KEYS)


def print_summary(summary: dict, out: Path) -> None:
    config = summary["config"]
    print(
        f"\n{config['model']} on {config['dataset']}-LT (imbalance {1 / config['imb_factor']:g}, "
        f"{config['imb_type']}), {summary['train_images']} training images, sampler "
        f"{config['sampler']}, {config['epochs']} epochs on {summary['device']} "
        f"x{summary['processes']} in {summary['wall_s']:.0f} s"
    )
    print("               " + HEADER)
    for name in ("final", "best"):
        print(f"{name:5} (ep {summary[name]['epoch']:3}) {report_cells(summary[name])}")
    print(
        f"many > {MANY_ABOVE}, few < {FEW_BELOW} training images; 'best' is the epoch with the "
        f"highest test top-1. Run folder: {out}"
    )


class StopOnSignal:
    """SIGINT / SIGTERM ask the trainer to stop after the current step; a second Ctrl-C
    interrupts at once. So does SIGUSR2, Slurm's warning before preemption or the time limit
    as submitit asks for it (see ltfast.slurm), whose default action would kill the run."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.signal = trainer, None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        self.trainer.stop_requested, self.signal = True, signum
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> StopOnSignal:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def train(config: TrainConfig, resume: Resume | None = None) -> dict | None:
    """Runs (or continues) the training; returns the summary, or None when interrupted.
    Raises UsageError when the run cannot start as asked."""
    start = time.perf_counter()
    try:
        device = pick_device(config.device, World())
    except ValueError as error:
        raise UsageError(str(error)) from error
    # `auto` precision becomes what this device runs, so config.yaml and the checkpoints say.
    config = dataclasses.replace(config, precision=resolve_precision(config.precision, device))
    if device.type == "cpu":
        keep_freed_memory()
    world = distributed.init(device.type == "cuda")
    try:
        summary = _train(config, resume, world, start)
    except SystemExit:  # a stop that every rank agreed on
        distributed.shutdown(world, together=True)
        raise
    except BaseException:
        distributed.shutdown(world, together=False)
        raise
    distributed.shutdown(world, together=True)
    return summary


def set_up(config: TrainConfig, resume: Resume | None, world: World) -> tuple[Trainer, RunFolder]:
    """Checks the run folder, opens the data, builds the model and restores the checkpoint;
    only then does the folder become this run's (deleting an old run's files with
    --overwrite). Anything wrong so far is a UsageError."""
    folder = RunFolder(config.out)
    resuming_here = resume is not None and folder.path.resolve() == resume.path.parent.resolve()
    try:
        if world.is_main:
            folder.check_can_start(config.overwrite, resuming_here)
        trainer = Trainer(config, world, start_from_init=resume is None)
        if resume is not None:
            trainer.load_state(resume.state, resume.path)
        if world.is_main:
            folder.claim(config.overwrite, resuming_here)
    except SETUP_ERRORS as error:
        raise UsageError(str(error)) from error
    distributed.barrier(world)  # the other ranks write (--save-draws) once the folder is claimed
    return trainer, folder


def _train(config: TrainConfig, resume: Resume | None, world: World, start: float) -> dict | None:
    trainer, folder = set_up(config, resume, world)
    try:
        return _run(trainer, folder, resume, start)
    finally:
        folder.release()  # ends with the process in any case; this is for callers in-process


def _run(trainer: Trainer, folder: RunFolder, resume: Resume | None, start: float) -> dict | None:
    config, world = trainer.config, trainer.world
    if world.is_main:
        if not config.quiet:
            print(run_header(trainer), file=sys.stderr)
        if warning := empty_classes_warning(trainer.train_set):  # even when quiet
            print(f"warning: {warning}", file=sys.stderr)
        folder.write_config(dataclasses.asdict(config))
        if resume is not None and folder.file("metrics.jsonl").is_file():
            folder.read_metrics()  # names a damaged line; the checkpoint's records replace it
        folder.write_metrics(trainer.records)  # drops lines past the checkpoint
        folder.write_json(DATASET, describe_data(trainer))
    board = tensorboard_writer(config, folder.path) if world.is_main else None
    with StopOnSignal(trainer) as stop:
        while trainer.epoch < config.epochs:
            try:
                record = trainer.run_epoch()
            except Interrupted:
                if world.is_main:
                    checkpoint.save(trainer.state(), folder.file(LAST))
                    print(
                        f"\nstopped at epoch {trainer.epoch + 1}, step {trainer.step}; checkpoint "
                        f"written. Continue with: python -m ltfast.train --resume {folder.path}",
                        file=sys.stderr,
                    )
                sys.exit(128 + (stop.signal or signal.SIGINT))
            if world.is_main:
                end_of_epoch(trainer, record, folder, board)
    if not world.is_main:
        return None
    summary = summarize(trainer, time.perf_counter() - start)
    folder.write_json(SUMMARY, summary)
    print_summary(summary, folder.path)
    from ltfast.report import write_report

    write_report([folder.path], folder.path)
    return summary


def end_of_epoch(trainer: Trainer, record: dict, folder: RunFolder, board) -> None:
    folder.append_metrics(record)
    state = trainer.state()
    checkpoint.save(state, folder.file(LAST))
    if record["test_top1"] >= max(r["test_top1"] for r in trainer.records):
        checkpoint.save(state, folder.file(BEST))
    if board is not None:
        for key in ("lr", "train_loss", "test_top1", "test_balanced_acc", "many", "medium", "few"):
            if record[key] is not None:
                board.add_scalar(key, record[key], record["epoch"])
        board.flush()
    if not trainer.config.quiet:
        print(
            f"epoch {record['epoch']:3}: loss {record['train_loss']:.4f}, top-1 "
            f"{100 * record['test_top1']:.2f}%, {record['images_per_s']:.0f} img/s",
            file=sys.stderr,
        )


def tensorboard_writer(config: TrainConfig, out: Path):
    if not config.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(out / "tensorboard")


def resume_config(path: Path, flags: dict, yaml_path: Path | None) -> tuple[TrainConfig, Resume]:
    """The checkpoint's config updated by the YAML file and flags, and the checkpoint; refuses
    changes that would make it another experiment, or skip images of an unfinished epoch."""
    source = checkpoint.locate(path)
    state = checkpoint.load(source)
    saved = TrainConfig(**from_mapping(state["config"], f"the config in {source}"))
    # --overwrite is not inherited: it applies to a new --out only, when given again.
    saved = dataclasses.replace(saved, overwrite=False)
    flags = {"out": str(source.parent), **flags}
    config = resolve(flags, yaml_path, base=saved)
    if config.overwrite and Path(config.out).resolve() == source.parent.resolve():
        raise ValueError(
            f"overwrite: --resume continues the run in {source.parent}; --overwrite would delete "
            f"it. Drop --overwrite, or pass another --out to continue into a new folder"
        )
    differences = incompatibilities(saved, config, mid_epoch=state["step"] > 0)
    if differences:
        raise ValueError(
            "cannot resume under another experiment's config:\n  " + "\n  ".join(differences)
        )
    # A run killed between its last checkpoint and its summary resumes to write the summary.
    summarized = (source.parent / SUMMARY).is_file()
    if state["epoch"] > config.epochs or (state["epoch"] == config.epochs and summarized):
        raise ValueError(
            f"epochs: the checkpoint has finished {state['epoch']} of {config.epochs} epochs; "
            f"pass a larger --epochs to train on"
        )
    return config, Resume(state, source)


def main(argv: list[str] | None = None) -> dict | None:
    end_with_parent()  # a sweep's training stops (with a checkpoint) when the sweep is gone
    args = parser()
    namespace = args.parse_args(argv)
    flags = {k: v for k, v in vars(namespace).items() if k not in ("config", "resume")}
    try:
        if namespace.resume is not None:
            config, resume = resume_config(namespace.resume, flags, namespace.config)
        else:
            config, resume = resolve(flags, namespace.config), None
    except (ValueError, OSError) as error:
        args.exit(2, f"{args.prog}: error: {error}\n")
    for warning in inert_options(config):
        print(f"warning: {warning}", file=sys.stderr)
    try:
        return train(config, resume)
    except UsageError as error:
        args.exit(2, f"{args.prog}: error: {error}\n")
    except OSError as error:  # a full disk is no bug: say so, without a traceback
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        args.exit(1, f"{args.prog}: error: {disk_full_message(error, Path(config.out))}\n")


def disk_full_message(error: OSError, out: Path) -> str:
    """What a full disk did to the run in `out`, and how to go on."""
    if isinstance(error, checkpoint.DiskFull):
        return str(error)  # it says which checkpoint, and whether the previous one is intact
    kept = (
        f"the last checkpoint {out / LAST} is intact"
        if (out / LAST).is_file()
        else "no checkpoint was written yet"
    )
    return (
        f"the disk is full (or over quota) while writing {error.filename or f'in {out}'}; "
        f"{kept}. Free some space, then continue with python -m ltfast.train --resume {out} "
        f"(a run that finished and only lacks its report: python -m ltfast.report {out})"
    )


if __name__ == "__main__":
    main()
