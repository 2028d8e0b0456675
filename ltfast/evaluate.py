"""Evaluate a saved model on the test split: `python -m ltfast.evaluate CHECKPOINT`.

Prints the report training writes after each epoch (top-1, balanced accuracy, many / medium /
few, expected calibration error, per class); `--eval-logit-tau T` adds the report of the
post-hoc logit-adjusted predictions, and `--out DIR` also writes evaluation.json and
evaluation.md there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ltfast import checkpoint
from ltfast.config import NEGATIVE_NUMBER, user_path
from ltfast.datasets import DatasetError
from ltfast.evaluation import Trained, open_trained
from ltfast.report import GROUPS_NOTE, figures_table, per_class_table
from ltfast.run_folder import EVALUATION_FILES, RunFolder, check_output_folder

# What a saved model may be evaluated under other than its training config.
OVERRIDES = ("data_root", "device", "eval_logit_tau")


def add_checkpoint_arguments(args: argparse.ArgumentParser) -> None:
    """The arguments ltfast.evaluate and ltfast.tau_norm share."""
    args._negative_number_matcher = NEGATIVE_NUMBER  # --eval-logit-tau -1e30, --taus -1,0
    args.add_argument(
        "checkpoint", type=user_path, help="a run folder (its last.pt) or a checkpoint file"
    )
    args.add_argument("--data-root", type=user_path, help="the data, if it moved since training")
    args.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the run's)")
    args.add_argument(
        "--overwrite",
        action="store_true",
        help="replace these files in an --out folder that is not a run folder",
    )


def overrides_of(namespace: argparse.Namespace) -> dict:
    values = {name: getattr(namespace, name, None) for name in OVERRIDES}
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items() if v is not None}


def evaluation_markdown(trained: Trained, report: dict) -> str:
    rows = [("as trained", report)]
    if "adjusted" in report:
        rows.append((f"post-hoc adjusted, tau {report['adjusted']['tau']:g}", report["adjusted"]))
    config = trained.config
    epoch, step = trained.position
    unfinished = (epoch, step) != (config.epochs, 0)
    where = f"unfinished: epoch {epoch + 1}, step {step} of {config.epochs} epochs"
    lines = [
        "# ltfast evaluation",
        "",
        f"{trained.source}: {config.model} ({config.classifier} classifier, stage2 "
        f"{config.stage2}) on {config.dataset}-LT, imbalance {1 / config.imb_factor:g}; "
        f"{len(trained.test_set)} test images"
        + (f"; {where}." if unfinished else f", after {epoch} epochs."),
        "",
        GROUPS_NOTE,
        "",
        *figures_table(rows, "predictions"),
        "",
        *per_class_table(trained.train_set.classes, trained.train_set.class_counts, rows),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = argparse.ArgumentParser(
        prog="python -m ltfast.evaluate",
        description="Evaluate a saved model on the test split: the report of training, "
        "with the expected calibration error.",
    )
    add_checkpoint_arguments(args)
    args.add_argument(
        "--eval-logit-tau",
        type=float,
        help="also report argmax(z - tau log pi), pi the training class frequencies",
    )
    args.add_argument("--out", type=user_path, help="write evaluation.json and .md here")
    namespace = args.parse_args(argv)
    try:
        if namespace.out is not None:
            own = checkpoint.locate(namespace.checkpoint).parent
            check_output_folder(namespace.out, EVALUATION_FILES, namespace.overwrite, own)
        trained = open_trained(namespace.checkpoint, overrides_of(namespace))
        report = trained.evaluate(logit_tau=trained.config.eval_logit_tau)
    except (ValueError, OSError, DatasetError) as error:
        args.exit(2, f"{args.prog}: error: {error}\n")
    markdown = evaluation_markdown(trained, report)
    print(markdown)
    if namespace.out is not None:
        folder = RunFolder(namespace.out)
        folder.path.mkdir(parents=True, exist_ok=True)
        json_name, markdown_name = EVALUATION_FILES
        folder.write_json(json_name, {"checkpoint": str(trained.source), **report})
        folder.write_text(markdown_name, markdown)
        print(f"written: {folder.file(json_name)}, {folder.file(markdown_name)}")
    return report


if __name__ == "__main__":
    main()
