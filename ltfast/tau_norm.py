"""tau-normalisation (Kang et al., ICLR 2020): `python -m ltfast.tau_norm RUN_DIR`.

Divides row j of a trained model's linear classifier by ||w_j||^tau, for every tau of
`--taus` (default 0:2:0.1, tau = 0 being the model as trained), and reports each one in full:
top-1, balanced, many / medium / few, ECE and per class. It picks no tau: choosing tau by the
test accuracy tunes on the test set, so pick it on held-out data. Writes tau_norm.json,
tau_norm.md and tau_norm.png into the run folder (or --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ltfast.config import user_path
from ltfast.datasets import DatasetError
from ltfast.evaluate import add_checkpoint_arguments, overrides_of
from ltfast.evaluation import Trained, open_trained
from ltfast.report import GROUPS, GROUPS_NOTE, figures_table, have_matplotlib, per_class_table
from ltfast.run_folder import (
    TAU_NORM_FILES,
    RunFolder,
    check_output_folder,
    writable_folder_problem,
)
from ltfast.stages import tau_normalised

# Each tau is a full evaluation of the test split (about a second on a CPU), so a thousand is
# already a quarter of an hour; more is a typo in start:stop:step, not a sweep.
MAX_TAUS = 1000


def parse_taus(text: str) -> list[float]:
    """'start:stop:step' (stop included) or 'a,b,c', at most MAX_TAUS values."""
    try:
        if ":" not in text:
            values = [float(v) for v in text.split(",")]
        else:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            if not (stop - start) / step < MAX_TAUS:  # also catches inf and nan
                raise argparse.ArgumentTypeError(
                    f"{text!r} gives more than {MAX_TAUS} taus (the most one run evaluates); "
                    f"use a larger step or a shorter range"
                )
            count = round((stop - start) / step) + 1
            values = [round(start + i * step, 10) for i in range(count)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected start:stop:step (step > 0, stop >= start) or a,b,c; got {text!r}"
        ) from None
    if not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"taus must be finite numbers, got {text!r}")
    if len(values) > MAX_TAUS:
        raise argparse.ArgumentTypeError(f"{len(values)} taus, more than {MAX_TAUS} (the most)")
    return values


def tau_norm_reports(trained: Trained, taus: list[float], quiet: bool = False) -> list[dict]:
    """The report of the model with its classifier tau-normalised, for each tau. The backbone
    runs once: each tau only changes the classifier."""
    features = trained.test_features()
    return [
        {
            "tau": tau,
            **trained.evaluate_classifier(tau_normalised(trained.model.classifier, tau), features),
        }
        for tau in tqdm(taus, desc="tau-norm", unit="tau", disable=quiet, file=sys.stderr)
    ]


def tau_norm_markdown(trained: Trained, reports: list[dict]) -> str:
    rows = [(f"{r['tau']:g}", r) for r in reports]
    lines = [
        "# tau-normalisation",
        "",
        f"{trained.source}: each classifier row w_j divided by ||w_j||^tau (tau = 0: the model "
        f"as trained). Every tau is reported; none is chosen, since choosing tau by these "
        f"figures tunes on the test set.",
        "",
        GROUPS_NOTE,
        "",
        *figures_table(rows, "tau"),
        "",
        *per_class_table(trained.train_set.classes, trained.train_set.class_counts, rows),
    ]
    return "\n".join(lines) + "\n"


def plot_tau_norm(reports: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    axes = figure.add_subplot()
    taus = [r["tau"] for r in reports]
    for key, label, style in (
        ("test_top1", "top-1", "-"),
        ("test_balanced_acc", "balanced", "-."),
        *((group, group, style) for group, style in GROUPS.items()),
    ):
        values = [np.nan if r[key] is None else 100 * r[key] for r in reports]
        if not np.all(np.isnan(values)):
            axes.plot(taus, values, ls=style, marker=".", label=label)
    axes.set(xlabel="tau", ylabel="test accuracy (%)", title="tau-normalised classifier")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> list[dict]:
    args = argparse.ArgumentParser(
        prog="python -m ltfast.tau_norm",
        description="Report a trained model with its classifier tau-normalised, for every tau.",
    )
    add_checkpoint_arguments(args)
    args.add_argument("--taus", type=parse_taus, default="0:2:0.1", help="start:stop:step or a,b,c")
    args.add_argument("--out", type=user_path, help="where to write (default: the run folder)")
    args.add_argument("--quiet", action="store_true", help="no progress bar")
    namespace = args.parse_args(argv)
    try:
        trained = open_trained(namespace.checkpoint, overrides_of(namespace))
        own = trained.source.parent
        out = namespace.out or own
        if namespace.out is None and (problem := writable_folder_problem(out)):
            raise ValueError(f"{problem}: pass --out DIR to write the tau-norm report elsewhere")
        check_output_folder(out, TAU_NORM_FILES, namespace.overwrite, own)
        tau_normalised(trained.model.classifier, 0.0)  # refuses what is not linear
        reports = tau_norm_reports(trained, namespace.taus, namespace.quiet)
    except (ValueError, OSError, DatasetError) as error:
        args.exit(2, f"{args.prog}: error: {error}\n")
    markdown = tau_norm_markdown(trained, reports)
    print(markdown)
    folder = RunFolder(out)
    folder.path.mkdir(parents=True, exist_ok=True)
    json_name, markdown_name, plot_name = TAU_NORM_FILES
    folder.write_json(json_name, {"checkpoint": str(trained.source), "reports": reports})
    folder.write_text(markdown_name, markdown)
    if have_matplotlib():
        plot_tau_norm(reports, folder.file(plot_name))
    print(f"written to {folder.path}")
    return reports


if __name__ == "__main__":
    main()
