"""The results table: each recipe's seeds beside its published figure, and the claim they back.

A row is one recipe (or a variant of it, `seedS-VARIANT`) over the seeds committed for it. The
final epoch is the headline, as mean ± sample standard deviation over seeds; the best test
epoch, the field's habit, stands beside it. The published figure and its source come from the
recipe in `configs/`, never from a result, so correcting a figure never edits a result. A row
whose training repeats another row's (logit adjustment at tau 1 is Balanced Softmax; a rerun of
one seed elsewhere) says so, and counts in no claim. The claim under each group is computed
here from the committed files, and the notes say what older results did not record.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path

from ltfast.config import TrainConfig, experiment, load_yaml
from ltfast.report import new_figure, save_figure
from ltfast.results import Result, ResultsError

WITHIN = 1.5  # points: the tolerance the claim is stated for


@dataclass
class Row:
    """One recipe (or variant) of a group, over its seeds."""

    results: list[Result]
    published: float | None
    source: str
    repeats: str = ""  # the label of the row whose training this one repeats

    @property
    def first(self) -> Result:
        return self.results[0]

    @property
    def label(self) -> str:
        return self.first.label

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.results]

    def top1(self, which: str) -> list[float]:
        """Each seed's test top-1 (%) at its `which` ('final' or 'best') epoch."""
        return [100 * r.summary()[which]["test_top1"] for r in self.results]

    def mean(self, which: str) -> float:
        return statistics.fmean(self.top1(which))

    def gap(self) -> float | None:
        """Final-epoch mean minus the published figure."""
        return None if self.published is None else self.mean("final") - self.published

    @property
    def counts(self) -> bool:
        """Whether the row enters the claim: a recipe's own row with a published figure."""
        return self.published is not None and not self.first.suffix and not self.repeats


def rows(results: list[Result], configs: Path) -> list[Row]:
    """The results as rows, in the order found, each with its recipe's published figure."""
    grouped: dict[tuple[str, str, str], list[Result]] = {}
    for result in results:
        grouped.setdefault((result.group, result.recipe, result.suffix), []).append(result)
    found = []
    trained: dict[tuple[str, str], str] = {}  # (group, experiment of a seed) -> first row
    for (group, recipe, _), members in grouped.items():
        path = Path(configs) / group / f"{recipe}.yaml"
        if not path.is_file():
            raise ResultsError(f"no recipe {path} for {members[0].path}")
        recipe_values = load_yaml(path)
        row = Row(
            sorted(members, key=lambda r: r.seed),
            recipe_values.get("published_top1"),
            str(recipe_values.get("source", "")),
        )
        keys = [(group, experiment(TrainConfig(**r.config()))[0]) for r in row.results]
        earlier = {trained[k] for k in keys if k in trained}
        row.repeats = ", ".join(sorted(earlier))
        for key in keys:
            trained.setdefault(key, row.label)
        found.append(row)
    return found


# ----- cells ---------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    """'70.34' for one seed, '70.34 ± 0.48' (sample std) for more."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def _epochs(row: Row) -> str:
    epochs = [r.summary()["best"]["epoch"] for r in row.results]
    return f"ep {', '.join(map(str, epochs))}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def ran_on(result: Result) -> str:
    """Where and how a run trained: its epochs' machines (recorded per epoch since
    provenance; else the summary's), numerics, compilation and threads."""
    config, summary = result.config(), result.summary()
    machines = dict.fromkeys(r["machine"] for r in result.metrics() if "machine" in r)
    machine = " then ".join(machines) or summary.get("machine", summary["device"])
    # --compile's fused kernels round otherwise again, so a compiled run says so.
    compiled = "torch.compile" if config.get("compile") else ""
    threads = f"{summary.get('threads', '?')} thread(s)"
    return ", ".join(p for p in (machine, summary.get("numerics"), compiled, threads) if p)


def how_cell(row: Row) -> str:
    """The wall time a seed (the epochs' own times, which add up across resumes) and where
    each seed ran, the seeds named where they differ."""
    walls = [sum(r["epoch_s"] for r in result.metrics()) for result in row.results]
    where: dict[str, list[int]] = {}
    for result in row.results:
        where.setdefault(ran_on(result), []).append(result.seed)
    each = " a seed" if len(row.results) > 1 else ""
    places = [
        text if len(where) == 1 else f"{text} (seed {', '.join(map(str, seeds))})"
        for text, seeds in where.items()
    ]
    return f"{_hours(statistics.fmean(walls))}{each}, {'; '.join(places)}"


def table_row(row: Row) -> str:
    published = "-" if row.published is None else f"{row.published:g}"
    source = f" ({row.source})" if row.source else ""
    gap = row.gap()
    if row.repeats:
        gap_cell = f"same training as {row.repeats}"
    else:
        gap_cell = "-" if gap is None else f"{gap:+.2f}"
    return (
        f"| {row.label} | {', '.join(map(str, row.seeds))} | {published}{source} | "
        f"{spread(row.top1('final'))} | {spread(row.top1('best'))} ({_epochs(row)}) | "
        f"{gap_cell} | {how_cell(row)} |"
    )


# ----- the claim and the notes -----------------------------------------------------------


def claim(members: list[Row]) -> str:
    """What the group's rows back, computed from their committed files."""
    counted = [row for row in members if row.counts]
    if not counted:
        return "No row is compared with a published figure."
    finals = [row.mean("final") - _figure(row) for row in counted]
    bests = [row.mean("best") - _figure(row) for row in counted]
    several = sorted(
        f"{row.label} over seeds {', '.join(map(str, row.seeds))} (mean)"
        for row in counted
        if len(row.results) > 1
    )
    seeds = f"{'; '.join(several)}; the rest seed 0" if several else "seed 0 each"
    return (
        f"Claim, from the committed files: of the {len(counted)} recipes compared with a "
        f"published figure (each once: no variant, no repeated training; {seeds}), "
        f"{sum(abs(g) <= WITHIN for g in finals)} are within {WITHIN} points of it at the "
        f"final epoch (gaps {min(finals):+.2f} to {max(finals):+.2f}), and "
        f"{sum(abs(g) <= WITHIN for g in bests)} at the best epoch "
        f"({min(bests):+.2f} to {max(bests):+.2f})."
    )


def _figure(row: Row) -> float:
    if row.published is None:
        raise ResultsError(f"{row.label} has no published figure to compare with")
    return row.published


def repeat_notes(members: list[Row]) -> list[str]:
    return [
        f"{row.label} trains what {row.repeats} trains ({reason}): shown once more, counted once."
        if (reason := experiment(TrainConfig(**row.first.config()))[1])
        else f"{row.label} repeats the training of {row.repeats}: the rows differ only in "
        f"where and how it ran."
        for row in members
        if row.repeats
    ]


def provenance_notes(members: list[Row]) -> list[str]:
    """What the older results did not record, grouped by what is missing."""
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    missing: dict[str, list[str]] = {}
    for row in members:
        for result in row.results:
            name = f"{row.label} seed {result.seed}"
            recorded = result.raw_config()
            absent = [f for f in fields if f not in recorded]
            if absent:
                key = f"config fields {', '.join(absent)}: not recorded; today's default"
                missing.setdefault(key, []).append(name)
            if "code" not in result.summary():
                key = "ltfast version, git commit, library versions and data digests: not recorded"
                missing.setdefault(key, []).append(name)
            if any("machine" not in r for r in result.metrics()):
                key = (
                    "the machine and threads of each epoch: not recorded; the summary's are "
                    "those of the process that finished the run"
                )
                missing.setdefault(key, []).append(name)
    everyone = sum(len(row.results) for row in members)

    def who(names: list[str]) -> str:
        return "Every result here" if len(names) == everyone > 1 else ", ".join(names)

    return [f"{who(names)}: {what}." for what, names in missing.items()]


def table(results: list[Result], configs: Path) -> str:
    """The Markdown table of `results` against the recipes in `configs`, by group, with the
    group's claim, its repeated trainings and what its older results did not record."""
    lines = []
    everything = rows(results, configs)
    for group in sorted({row.first.group for row in everything}):
        members = [row for row in everything if row.first.group == group]
        lines += [
            f"**{group}**: top-1 on the balanced test set (%), as mean ± sample std over the "
            f"seeds listed; final = the last epoch, the headline; best = the best test epoch "
            f"(the field's habit); gap = final mean minus published; wall = the epochs' "
            f"training and evaluation time.",
            "",
            "| recipe | seeds | published (source) | final epoch | best epoch | gap | "
            "wall time and machine |",
            "|---|---|---|---:|---:|---:|---|",
            *(table_row(row) for row in members),
            "",
            claim(members),
            "",
            *(f"{note}\n" for note in repeat_notes(members) + provenance_notes(members)),
        ]
    return "\n".join(lines).rstrip("\n") or "No results yet."


# ----- the figure ----------------------------------------------------------------------------


def plot(members: list[Row], path: Path) -> Path:
    """One group's rows as a figure at `path`: each seed's final and best epochs, their means
    and the published figure; and the test top-1 by epoch of each single-stage recipe, its
    mean over seeds with the band the seeds span."""
    figure = new_figure(13, 0.9 + 0.45 * max(len(members), 4))
    figures, curves = figure.subplots(1, 2, width_ratios=(1, 1.3))
    for index, row in enumerate(members):
        first = index == 0  # the first row names each marker in the legend
        finals, bests = row.top1("final"), row.top1("best")
        figures.plot([min(finals + bests), max(finals + bests)], [index] * 2, "C0", alpha=0.3)
        figures.scatter(bests, [index] * len(bests), color="C0", s=14, zorder=3,
                        label="best epoch, each seed" if first else None)  # fmt: skip
        figures.scatter(finals, [index] * len(finals), facecolor="none", edgecolor="C1", s=14,
                        zorder=3, label="final epoch, each seed" if first else None)  # fmt: skip
        figures.scatter(row.mean("final"), index, marker="|", color="C1", s=200, zorder=4,
                        label="final epoch, mean" if first else None)  # fmt: skip
        if row.published is not None:
            figures.scatter(row.published, index, marker="x", color="black", zorder=5,
                            label="published")  # fmt: skip
        if not row.first.config().get("init_from"):
            _curve(curves, row)
    handles, names = figures.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))  # "published" once
    figures.legend(
        unique.values(), unique.keys(), fontsize=8, loc="upper center",
        bbox_to_anchor=(0.5, -0.08), ncol=2,
    )  # fmt: skip
    figures.set_yticks(range(len(members)), [row.label for row in members])
    figures.invert_yaxis()
    group = members[0].first.group
    figures.set(xlabel="test top-1 (%)", title=f"{group}: ltfast's seeds against published")
    curves.set(xlabel="epoch", ylabel="test top-1 (%)", title="Single-stage recipes by epoch")
    curves.set_ylim(bottom=max(0.0, curves.get_ylim()[0]))
    curves.legend(fontsize=7, ncol=2)
    for axes in (figures, curves):
        axes.grid(alpha=0.3)
    return save_figure(figure, path)


def _curve(axes, row: Row) -> None:
    """The row's mean test top-1 by epoch, and the band its seeds span."""
    by_epoch: dict[int, list[float]] = {}
    for result in row.results:
        for record in result.metrics():
            if record.get("test_top1") is not None:
                by_epoch.setdefault(record["epoch"], []).append(100 * record["test_top1"])
    epochs = sorted(e for e, values in by_epoch.items() if len(values) == len(row.results))
    mean = [statistics.fmean(by_epoch[e]) for e in epochs]
    (line,) = axes.plot(epochs, mean, lw=1, label=row.label)
    if len(row.results) > 1:
        low, high = ([f(by_epoch[e]) for e in epochs] for f in (min, max))
        axes.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, lw=0)
