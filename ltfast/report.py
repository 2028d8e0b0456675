"""Reports of training runs: PNG plots and a Markdown summary, for one run or several side
by side, `python -m ltfast.report RUN_DIR [RUN_DIR ...] [--out DIR]`; and the comparison
table of a sweep (ltfast.sweep), `python -m ltfast.report SWEEP_DIR`.

Everything is read from each run's `metrics.jsonl` (the source of truth), `config.yaml` and
`dataset.json`, through ltfast.run_folder. The plots need matplotlib (`pip install
'ltfast[plots]'`); without it the report is the Markdown table alone.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from ltfast import run_folder
from ltfast.config import user_path
from ltfast.metrics import FEW_BELOW, MANY_ABOVE
from ltfast.run_folder import (
    DATASET,
    REPORT,
    REPORT_FILES,
    SUMMARY,
    SWEEP_FILES,
    RunFolder,
    RunFolderError,
    SweepFolder,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GROUPS = {"many": "-", "medium": "--", "few": ":"}


@dataclass
class Run:
    name: str
    config: dict
    records: list[dict]
    class_counts: np.ndarray  # training images per class


def read_run(path: Path) -> Run:
    folder = RunFolder(path)
    records = folder.read_metrics()
    if not records:
        raise ValueError(f"{folder.file(run_folder.METRICS)} holds no complete epoch yet")
    counts = folder.read_json(DATASET).get("class_counts")
    if not isinstance(counts, list):
        raise RunFolderError(f"{folder.file(DATASET)} has no list of class_counts")
    return Run(folder.path.resolve().name, folder.read_config(), records, np.array(counts))


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # optional: see the module's docstring

    return Figure(figsize=(width, height))


def _series(run: Run, key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(r["epoch"], r[key]) for r in run.records if r.get(key) is not None]
    epochs, values = zip(*points, strict=True) if points else ((), ())
    return np.array(epochs), np.array(values, dtype=float)


def save_figure(figure: Figure, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    for axes in figure.axes:
        if axes.get_xlabel() == "epoch":
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def plot_class_distribution(runs: list[Run], path: Path) -> Path:
    figure = new_figure(7, 4)
    axes = figure.add_subplot()
    shared: dict[tuple[int, ...], list[str]] = {}  # runs on the same data share one line
    for run in runs:
        shared.setdefault(tuple(run.class_counts.tolist()), []).append(run.name)
    for counts, names in shared.items():
        axes.plot(np.arange(len(counts)), counts, marker="o", label=", ".join(names))
    axes.set(
        yscale="log", xlabel="class", ylabel="training images", title="Training class distribution"
    )
    axes.axhline(MANY_ABOVE, color="grey", lw=0.8, ls="--", label=f"many > {MANY_ABOVE}")
    axes.axhline(FEW_BELOW, color="grey", lw=0.8, ls=":", label=f"few < {FEW_BELOW}")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3, which="both")
    return save_figure(figure, path)


def plot_per_class_accuracy(runs: list[Run], path: Path) -> Path:
    figure = new_figure(7, 4)
    axes = figure.add_subplot()
    for run in runs:
        accuracy = np.array(run.records[-1]["per_class"], dtype=float) * 100
        axes.scatter(
            run.class_counts, accuracy, label=f"{run.name} (epoch {run.records[-1]['epoch']})", s=18
        )
    axes.axvline(MANY_ABOVE, color="grey", lw=0.8, ls="--", label=f"many > {MANY_ABOVE}")
    axes.axvline(FEW_BELOW, color="grey", lw=0.8, ls=":", label=f"few < {FEW_BELOW}")
    axes.set(
        xscale="log",
        xlabel="training images of the class",
        ylabel="test accuracy (%)",
        title="Final per-class test accuracy against class size",
        ylim=(-2, 102),
    )
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


def plot_learning_curves(runs: list[Run], path: Path) -> Path:
    figure = new_figure(13, 4)
    loss, top1, groups = figure.subplots(1, 3)
    for index, run in enumerate(runs):
        colour = f"C{index}"
        loss.plot(*_series(run, "train_loss"), color=colour, label=run.name)
        epochs, values = _series(run, "test_top1")
        top1.plot(epochs, values * 100, color=colour, label=f"{run.name} top-1")
        epochs, values = _series(run, "test_balanced_acc")
        top1.plot(epochs, values * 100, color=colour, ls=":", alpha=0.7)
        for group, style in GROUPS.items():
            epochs, values = _series(run, group)
            if len(values):
                groups.plot(
                    epochs, values * 100, color=colour, ls=style, label=f"{run.name} {group}"
                )
    loss.set(title="Training loss", xlabel="epoch", yscale="log")
    top1.set(title="Test top-1 (dotted: balanced)", xlabel="epoch", ylabel="%")
    groups.set(
        title=f"Many (> {MANY_ABOVE}) / medium / few (< {FEW_BELOW})", xlabel="epoch", ylabel="%"
    )
    for axes in (loss, top1, groups):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    return save_figure(figure, path)


def _per_class_panels(runs: list[Run], key: str, ylabel: str, what: str, path: Path) -> Path:
    """One panel per run: a per-class series `key` of every epoch, one line per class."""
    figure = new_figure(6 * len(runs), 4)
    panels = np.atleast_1d(figure.subplots(1, len(runs)))
    for axes, run in zip(panels, runs, strict=True):
        records = [r for r in run.records if key in r]  # runs of older versions lack some
        epochs = np.array([r["epoch"] for r in records])
        values = np.array([r[key] for r in records], dtype=float).reshape(
            len(records), len(records[0][key]) if records else 0
        )
        if not records:
            axes.text(0.5, 0.5, f"no {key} recorded", ha="center", transform=axes.transAxes)
        few_classes = values.shape[1] <= 10
        for cls in range(values.shape[1]):
            label = f"class {cls}" if few_classes else None
            axes.plot(  # a value holds for its whole epoch: steps, not slopes
                epochs,
                values[:, cls],
                color=f"C{cls % 10}",
                lw=1.2,
                label=label,
                drawstyle="steps-post",
                marker=".",
            )
        axes.set(
            yscale="log",
            xlabel="epoch",
            ylabel=ylabel,
            title=f"{run.name}: {what} {run.config.get(what)}",
        )
        axes.grid(alpha=0.3, which="both")
        if few_classes and len(records):
            axes.legend(fontsize=7, ncol=2)
    return save_figure(figure, path)


def plot_sampler_probabilities(runs: list[Run], path: Path) -> Path:
    return _per_class_panels(
        runs, "class_probabilities", "probability of drawing the class", "sampler", path
    )


def plot_class_weights(runs: list[Run], path: Path) -> Path:
    return _per_class_panels(runs, "class_weights", "loss weight of the class", "reweight", path)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _cells(report: dict) -> str:
    """top-1, balanced, many, medium, few and ECE in % ('-' where a run lacks the figure)."""
    keys = ("test_top1", "test_balanced_acc", "many", "medium", "few", "ece")
    return " | ".join(_percent(report.get(k)) for k in keys)


GROUPS_NOTE = (
    f"Test accuracy (%) on the balanced test set. Groups by training images per class: many "
    f"> {MANY_ABOVE}, medium {FEW_BELOW}..{MANY_ABOVE}, few < {FEW_BELOW} ('-': no class in the "
    f"group). ECE: expected calibration error, 15 bins."
)


def figures_table(rows: list[tuple[str, dict]], label: str) -> list[str]:
    """A Markdown table of reports: one row per (name, report)."""
    return [
        f"| {label} | top-1 | balanced | many | medium | few | ECE |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(f"| {name} | {_cells(report)} |" for name, report in rows),
    ]


def per_class_table(
    classes: list[str], counts: np.ndarray, rows: list[tuple[str, dict]]
) -> list[str]:
    """A Markdown table of per-class test accuracy (%), one column per (name, report)."""
    lines = [
        "| class | training images | " + " | ".join(name for name, _ in rows) + " |",
        "|---|---:|" + "---:|" * len(rows),
    ]
    for index, (name, count) in enumerate(zip(classes, counts, strict=True)):
        cells = " | ".join(_percent(report["per_class"][index]) for _, report in rows)
        lines.append(f"| {index} {name} | {count} | {cells} |")
    return lines


def summary_markdown(runs: list[Run], plots: bool = True) -> str:
    lines = [
        "# ltfast report",
        "",
        f"{GROUPS_NOTE} 'Best' is the epoch with the highest test top-1, as most codebases "
        f"report; the final epoch is the honest number.",
        "",
        "| run | epoch | top-1 | balanced | many | medium | few | ECE | best top-1 (epoch) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        final = run.records[-1]
        best = max(run.records, key=lambda r: r["test_top1"])
        lines.append(
            f"| {run.name} | {final['epoch']}/{run.config['epochs']} | {_cells(final)} | "
            f"{_percent(best['test_top1'])} ({best['epoch']}) |"
        )
    adjusted = [run for run in runs if "adjusted" in run.records[-1]]
    if adjusted:
        lines += [
            "",
            "Post-hoc logit adjustment at evaluation, argmax(z - tau log pi), final epoch:",
            "",
        ]
        rows = [(run.name, run.records[-1]["adjusted"]) for run in adjusted]
        lines += figures_table([(f"{n} (tau {r['tau']:g})", r) for n, r in rows], "run")
    published = [run for run in runs if run.config.get("published_top1") is not None]
    if published:
        lines += ["", "Published top-1 of the recipes these runs follow (full-length runs):", ""]
        lines += [
            f"- {run.name}: {run.config['published_top1']} ({run.config.get('source') or '?'})"
            for run in published
        ]
    keys = sorted({k for run in runs for k in run.config})
    differing = [k for k in keys if len({json.dumps(run.config.get(k)) for run in runs}) > 1]
    shared = [k for k in keys if k not in differing]
    if differing:
        lines += [
            "",
            "## Where the configs differ",
            "",
            "| field | " + " | ".join(r.name for r in runs) + " |",
            "|---|" + "---|" * len(runs),
        ]
        lines += [
            f"| {k} | " + " | ".join(str(r.config.get(k)) for r in runs) + " |" for k in differing
        ]
    lines += ["", "## Config" + (" (shared)" if len(runs) > 1 else ""), ""]
    lines += [f"- {k}: {runs[0].config.get(k)}" for k in shared]
    lines += ["", "## Plots", ""]
    if plots:
        lines += [f"![{name}]({name}.png)" for name in PLOTS]
    else:
        lines += ["(matplotlib is not installed: `pip install 'ltfast[plots]'` draws them)"]
    return "\n".join(lines) + "\n"


PLOTS = dict(
    zip(
        run_folder.PLOTS,
        (
            plot_class_distribution,
            plot_per_class_accuracy,
            plot_learning_curves,
            plot_sampler_probabilities,
            plot_class_weights,
        ),
        strict=True,
    )
)


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_report(folders: list[Path], out: Path, overwrite: bool = False) -> list[Path]:
    """Writes report.md and the PNG plots of the runs in `folders` to `out`. Report files in
    a folder that is not a run folder are replaced only with `overwrite`."""
    runs = [read_run(folder) for folder in folders]
    out = Path(out).expanduser()
    own = Path(folders[0]) if len(folders) == 1 else None  # a run's own report
    run_folder.check_output_folder(out, REPORT_FILES, overwrite, own)
    out.mkdir(parents=True, exist_ok=True)
    plots = have_matplotlib()
    if not plots:
        print("note: matplotlib is not installed, so the report has no plots", file=sys.stderr)
    written = [plot(runs, out / f"{name}.png") for name, plot in PLOTS.items()] if plots else []
    (out / REPORT).write_text(summary_markdown(runs, plots))
    return [*written, out / REPORT]


# ----- sweeps ---------------------------------------------------------------------------------

SWEEP_KEYS = {
    "test_top1": "top-1",
    "test_balanced_acc": "balanced",
    "many": "many",
    "medium": "medium",
    "few": "few",
    "ece": "ECE",
}


@dataclass
class SweepRow:
    """One config of a sweep: its finished runs' figures, as mean and std over seeds."""

    name: str
    seeds: list[int]  # those whose run finished
    planned: int
    published: float | None
    source: str
    stats: dict[tuple[str, str], tuple[float | None, float | None]]  # (final|best, key)


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1) over the seeds that have the figure."""
    present = np.array([v for v in values if v is not None], dtype=float)
    if not present.size:
        return None, None
    return float(present.mean()), float(present.std(ddof=1)) if present.size > 1 else None


def sweep_rows(folder: SweepFolder) -> list[SweepRow]:
    plan = folder.read_plan()
    rows = []
    for config in plan["configs"]:
        runs = {seed: RunFolder(folder.run(config["name"], seed)) for seed in plan["seeds"]}
        summaries = {s: r.read_json(SUMMARY) for s, r in runs.items() if r.file(SUMMARY).is_file()}
        recipe = yaml.safe_load(config["text"]) or {}
        stats = {
            (when, key): _mean_std([summary[when].get(key) for summary in summaries.values()])
            for when in ("final", "best")
            for key in SWEEP_KEYS
        }
        rows.append(
            SweepRow(
                config["name"],
                sorted(summaries),
                len(plan["seeds"]),
                recipe.get("published_top1"),
                recipe.get("source", ""),
                stats,
            )
        )
    return rows


def _mean_pm_std(stat: tuple[float | None, float | None]) -> str:
    mean, std = stat
    if mean is None:
        return "-"
    return f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def sweep_markdown(rows: list[SweepRow], plots: bool) -> str:
    lines = [
        "# ltfast sweep",
        "",
        f"{GROUPS_NOTE} Mean ± sample standard deviation over the seeds whose run finished; "
        f"'best' is the epoch with the highest test top-1 of each run (the field's habit), "
        f"'final' the last epoch (the honest number). Published: the recipe's full-length "
        f"figure, for comparison when the runs are full length too.",
    ]
    for when in ("final", "best"):
        header = " | ".join(f"{when} {label}" for label in SWEEP_KEYS.values())
        lines += [
            "",
            f"| config | runs | {header} | published top-1 |",
            "|---|---:|" + "---:|" * (len(SWEEP_KEYS) + 1),
        ]
        for row in rows:
            cells = " | ".join(_mean_pm_std(row.stats[when, key]) for key in SWEEP_KEYS)
            published = "-" if row.published is None else f"{row.published:g}"
            lines.append(f"| {row.name} | {len(row.seeds)}/{row.planned} | {cells} | {published} |")
    sources = [row for row in rows if row.source]
    if sources:
        lines += ["", "Published figures:", ""]
        lines += [f"- {row.name}: {row.source}" for row in sources]
    if plots:
        lines += ["", "![summary](summary.png)"]
    return "\n".join(lines) + "\n"


def sweep_csv(rows: list[SweepRow]) -> str:
    """One row per config: runs finished, then mean and std of every figure, in %."""
    columns = [
        f"{when}_{key}_{stat}"
        for when in ("final", "best")
        for key in SWEEP_KEYS
        for stat in ("mean", "std")
    ]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["config", "runs", "seeds", *columns, "published_top1"])
    for row in rows:
        values = [
            "" if v is None else f"{100 * v:.4f}"
            for when in ("final", "best")
            for key in SWEEP_KEYS
            for v in row.stats[when, key]
        ]
        seeds = " ".join(map(str, row.seeds))
        published = "" if row.published is None else row.published
        writer.writerow([row.name, len(row.seeds), seeds, *values, published])
    return text.getvalue()


def plot_sweep(rows: list[SweepRow], path: Path) -> Path:
    figure = new_figure(max(6, 1.2 * len(rows) + 2), 4)
    axes = figure.add_subplot()
    positions = np.arange(len(rows))
    for offset, (when, key, label) in enumerate(
        (("final", "test_top1", "final top-1"), ("final", "test_balanced_acc", "final balanced"),
         ("best", "test_top1", "best top-1"))
    ):  # fmt: skip
        stats = [row.stats[when, key] for row in rows]
        means = [np.nan if m is None else 100 * m for m, _ in stats]
        errors = [0 if s is None else 100 * s for _, s in stats]
        axes.bar(positions + (offset - 1) * 0.27, means, 0.27, yerr=errors, capsize=3, label=label)
    published = [np.nan if row.published is None else row.published for row in rows]
    axes.scatter(positions, published, marker="x", color="black", zorder=3, label="published")
    axes.set_xticks(positions, [row.name for row in rows], rotation=20, ha="right")
    axes.set(ylabel="test accuracy (%)", title="Sweep: mean ± std over seeds")
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def write_sweep_report(path: Path, out: Path | None = None, overwrite: bool = False) -> list[Path]:
    """summary.md, summary.csv and summary.png of the sweep in `path`, written to `out`
    (default: the sweep folder)."""
    folder = SweepFolder(path)
    rows = sweep_rows(folder)
    out = folder.path if out is None else Path(out).expanduser()
    if out.resolve() != folder.path.resolve():
        run_folder.check_output_folder(out, SWEEP_FILES, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    markdown, table, plot = (out / name for name in SWEEP_FILES)
    plots = have_matplotlib()
    written = [plot_sweep(rows, plot)] if plots else []
    markdown.write_text(sweep_markdown(rows, plots))
    table.write_text(sweep_csv(rows))
    return [markdown, table, *written]


def main(argv: list[str] | None = None) -> list[Path]:
    args = argparse.ArgumentParser(
        prog="python -m ltfast.report",
        description="Plots and a Markdown table for one or several ltfast run folders.",
    )
    args.add_argument(
        "runs", nargs="+", type=user_path, help="run folders (holding metrics.jsonl), or a sweep"
    )
    args.add_argument(
        "--out",
        type=user_path,
        help="where to write (default: the run folder, or ./report for several runs)",
    )
    args.add_argument(
        "--overwrite",
        action="store_true",
        help="replace report files in an --out folder that is not a run folder",
    )
    namespace = args.parse_args(argv)
    out = namespace.out or (namespace.runs[0] if len(namespace.runs) == 1 else Path("report"))
    sweeps = [path for path in namespace.runs if SweepFolder(path).is_sweep()]
    try:
        if sweeps and len(namespace.runs) > 1:
            raise ValueError(f"{sweeps[0]} is a sweep: report it alone")
        if sweeps:
            written = write_sweep_report(sweeps[0], namespace.out, namespace.overwrite)
        else:
            written = write_report(namespace.runs, out, namespace.overwrite)
    except (OSError, ValueError) as error:
        args.exit(2, f"{args.prog}: error: {error}\n")
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
