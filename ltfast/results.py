"""The results tree: finished full-length runs kept as evidence, and the table that sets them
beside the published figures.

    python -m ltfast.results add SWEEP_DIR [--suffix float32] [--recipe NAME] [--results results]
    python -m ltfast.results table [--results results] [--configs configs] [--readme README.md]
        [--plots docs/results]

`results/<group>/<recipe>/seed<S>[-<suffix>]/` holds a run's `config.yaml`, `metrics.jsonl`
and `summary.json`, never its checkpoints; `<group>/<recipe>` names the recipe it was trained
with, `configs/<group>/<recipe>.yaml`. `add` copies the finished runs of a sweep there (or
those of the recipes named with --recipe; if a file is already there with other contents,
nothing is copied unless --overwrite). `table` prints
the comparison (and with --readme rewrites it in place between the two markers below), with a
note under it for two results of one experiment (see ltfast.config.experiment); `--plots`
writes (or replaces) one figure per group, `<group>.png`; and
`recipe_differences` says where a result's config strays from its recipe, apart from paths,
device and numerics, so that the table and the recipes cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ltfast.config import PLACE_AND_OUTPUT, TrainConfig, experiment, from_mapping, load_yaml
from ltfast.report import have_matplotlib, new_figure, save_figure
from ltfast.run_folder import CONFIG, METRICS, SUMMARY, RunFolder, SweepFolder

RESULT_FILES = (CONFIG, METRICS, SUMMARY)
BEGIN = "<!-- ltfast.results table: begin (python -m ltfast.results table --readme README.md) -->"
END = "<!-- ltfast.results table: end -->"
SEED_FOLDER = re.compile(r"seed(\d+)(?:-(\w+))?")
# Fields a result may set apart from its recipe: where the data and run folder were, what ran
# it and in which numerics, and how it printed. `seed` must equal the folder's; `init_from`
# names the stage-1 run instead of the stage-1 recipe.
NOT_THE_RECIPE = {
    *PLACE_AND_OUTPUT,
    "workers",
    "device",
    "precision",
    "memory_format",
    "compile",
    "seed",
    "init_from",
}


class ResultsError(ValueError):
    """A results tree or sweep that cannot be used as asked."""


@dataclass
class Result:
    """One finished run in the results tree."""

    path: Path
    group: str  # e.g. cifar10_lt: the configs/ folder of its recipe
    recipe: str
    seed: int
    suffix: str  # "" or a variant such as float32

    @property
    def label(self) -> str:
        return self.recipe + (f" ({self.suffix})" if self.suffix else "")

    def config(self) -> dict:
        return from_mapping(RunFolder(self.path).read_config(), str(self.path / CONFIG))

    def summary(self) -> dict:
        return RunFolder(self.path).read_json(SUMMARY)

    def metrics(self) -> list[dict]:
        return RunFolder(self.path).read_metrics()


def find_results(root: Path) -> list[Result]:
    """Every result under `root`, by group, recipe and seed folder."""
    found = []
    for summary in sorted(Path(root).glob(f"*/*/seed*/{SUMMARY}")):
        folder = summary.parent
        match = SEED_FOLDER.fullmatch(folder.name)
        if match is None:
            raise ResultsError(f"{folder}: a result folder is named seedS or seedS-VARIANT")
        recipe, group = folder.parent.name, folder.parent.parent.name
        found.append(Result(folder, group, recipe, int(match[1]), match[2] or ""))
    return found


# ----- adding a sweep's runs ------------------------------------------------------------------


def add_sweep(
    sweep: Path,
    results: Path,
    suffix: str = "",
    overwrite: bool = False,
    recipes: list[str] | None = None,
) -> list[Path]:
    """Copies the finished runs of the sweep in `sweep` (of `recipes` only, when given) into
    `results`; returns their folders. Each recipe's group is the name of the folder its config
    came from (configs/cifar10_lt). Nothing is copied if any target holds another run."""
    if suffix and not re.fullmatch(r"\w+", suffix):
        raise ResultsError(f"--suffix must be letters, digits or _, got {suffix!r}")
    folder = SweepFolder(sweep)
    if not folder.is_sweep():
        raise ResultsError(f"{sweep} is not an ltfast sweep folder (no ltfast-sweep.json)")
    plan = folder.read_plan()
    names = [config["name"] for config in plan["configs"]]
    unknown = sorted(set(recipes or ()) - set(names))
    if unknown:
        raise ResultsError(f"{sweep} has no recipe {', '.join(unknown)}; its recipes: {names}")
    copies = []
    for config in plan["configs"]:
        if recipes and config["name"] not in recipes:
            continue
        group = Path(config["path"]).parent.name
        for seed in plan["seeds"]:
            run = RunFolder(folder.run(config["name"], seed))
            if not run.file(SUMMARY).is_file():
                continue  # not finished
            name = f"seed{seed}" + (f"-{suffix}" if suffix else "")
            copies.append((run, Path(results) / group / config["name"] / name))
    if not overwrite:
        for run, target in copies:
            _refuse_clashes(run, target)
    for run, target in copies:
        target.mkdir(parents=True, exist_ok=True)
        for name in RESULT_FILES:
            (target / name).write_bytes(run.file(name).read_bytes())
    return [target for _, target in copies]


def _refuse_clashes(run: RunFolder, target: Path) -> None:
    clashes = [
        name
        for name in RESULT_FILES
        if (target / name).is_file() and (target / name).read_bytes() != run.file(name).read_bytes()
    ]
    if clashes:
        raise ResultsError(
            f"{target} already holds another run's {', '.join(clashes)}; pass --overwrite to "
            f"replace them"
        )


# ----- recipes ----------------------------------------------------------------------------


def recipe_differences(result: Result, configs: Path) -> list[str]:
    """Where the result's config differs from its recipe's, as 'field: recipe X, result Y',
    apart from NOT_THE_RECIPE; a missing recipe is one difference."""
    recipe_path = Path(configs) / result.group / f"{result.recipe}.yaml"
    if not recipe_path.is_file():
        return [f"no recipe {recipe_path} for {result.path}"]
    recipe = {**dataclasses.asdict(TrainConfig()), **load_yaml(recipe_path)}
    trained = {**dataclasses.asdict(TrainConfig()), **result.config()}
    found = [
        f"{name}: recipe {recipe[name]!r}, result {trained[name]!r}"
        for name in recipe
        if name not in NOT_THE_RECIPE and recipe[name] != trained[name]
    ]
    if trained["seed"] != result.seed:
        found.append(f"seed: folder seed{result.seed}, result {trained['seed']!r}")
    stage1 = recipe["init_from"]
    if stage1 and Path(trained["init_from"]).parent.name != Path(stage1).stem:
        found.append(f"init_from: recipe {stage1!r}, result {trained['init_from']!r}")
    return found


# ----- the table --------------------------------------------------------------------------


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def table_row(result: Result) -> str:
    config, summary, metrics = result.config(), result.summary(), result.metrics()
    published, source = config.get("published_top1"), config.get("source", "")
    final, best = summary["final"], summary["best"]
    final_top1, best_top1 = 100 * final["test_top1"], 100 * best["test_top1"]
    if published is None:
        published_cell, gap = f"- ({source})" if source else "-", "-"
    else:
        published_cell, gap = f"{published:g} ({source})", f"{best_top1 - published:+.2f}"
    # The epochs' own times add up across resumes (a resumed process's wall_s does not).
    wall = sum(record["epoch_s"] for record in metrics)
    machine = summary.get("machine", summary["device"])
    # The summary's numerics name precision and layout; --compile's fused kernels round
    # otherwise again, so a compiled run says so too.
    compiled = "torch.compile" if config.get("compile") else ""
    threads = f"{summary.get('threads', '?')} thread(s)"
    how = ", ".join(part for part in (summary.get("numerics"), compiled, threads) if part)
    return (
        f"| {result.label} | {published_cell} | {final_top1:.2f} (ep {final['epoch']}) | "
        f"{best_top1:.2f} (ep {best['epoch']}) | {gap} | {_hours(wall)}, {machine}, {how} |"
    )


def same_experiments(results: list[Result]) -> list[str]:
    """A note for each result that trained the same experiment as an earlier one of its group
    (see ltfast.config.experiment): a rerun of one recipe, or one training under two recipes
    compared with two published figures."""
    first: dict[tuple[str, str], Result] = {}
    notes = []
    for result in results:
        trained, reason = experiment(TrainConfig(**result.config()))
        earlier = first.setdefault((result.group, trained), result)
        if earlier is result:
            continue
        if earlier.recipe == result.recipe:
            notes.append(
                f"{result.label} repeats the training of {earlier.label}: the two rows differ "
                f"only in where and how it ran."
            )
            continue
        why = f" ({reason})" if reason else ""
        notes.append(
            f"{result.label} trained the same experiment as {earlier.label}{why}: the two "
            f"rows are two runs of one training, compared with two published figures."
        )
    return notes


def table(results: list[Result]) -> str:
    """The Markdown table of `results`, one row each, grouped as found, with a note under it
    for each result that repeats another's experiment."""
    lines = []
    for group in sorted({r.group for r in results}):
        members = [r for r in results if r.group == group]
        notes = same_experiments(members)
        lines += [
            f"**{group}**, seed 0 unless named; top-1 on the balanced test set (%); gap = best "
            f"epoch minus published; wall = the epochs' training and evaluation time.",
            "",
            "| recipe | published (source) | ltfast final epoch | ltfast best epoch | gap | "
            "wall time and machine |",
            "|---|---|---:|---:|---:|---|",
            *(table_row(r) for r in members),
            "",
            *(f"{note}\n" for note in notes),
        ]
    return "\n".join(lines).rstrip("\n") or "No results yet."


def plot(results: list[Result], path: Path) -> Path:
    """One group's results as a figure at `path`: each recipe's best and final epochs beside
    its published figure, and the test top-1 of every single-stage run by epoch."""
    figure = new_figure(13, 0.9 + 0.45 * max(len(results), 4))
    figures, curves = figure.subplots(1, 2, width_ratios=(1, 1.3))
    rows = range(len(results))
    labels = [result.label for result in results]
    for row, result in zip(rows, results, strict=True):
        summary, config = result.summary(), result.config()
        published = config.get("published_top1")
        best, final = (100 * summary[k]["test_top1"] for k in ("best", "final"))
        figures.plot([final, best], [row, row], color="C0", lw=1, alpha=0.5)
        first = row == 0  # the first row names each marker in the legend
        figures.scatter(
            best, row, color="C0", zorder=3, label="ltfast best epoch" if first else None
        )
        figures.scatter(
            final, row, facecolor="none", edgecolor="C0", zorder=3,
            label="ltfast final epoch" if first else None,
        )  # fmt: skip
        if published is not None:
            figures.scatter(published, row, marker="x", color="black", zorder=4, label="published")
        if not config.get("init_from"):
            records = [r for r in result.metrics() if r.get("test_top1") is not None]
            curves.plot(
                [r["epoch"] for r in records],
                [100 * r["test_top1"] for r in records],
                lw=1,
                label=result.label,
            )
    handles, names = figures.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))  # "published" once
    figures.legend(unique.values(), unique.keys(), fontsize=8, loc="lower left")
    figures.set_yticks(list(rows), labels)
    figures.invert_yaxis()
    figures.set(xlabel="test top-1 (%)", title=f"{results[0].group}: ltfast against published")
    curves.set(xlabel="epoch", ylabel="test top-1 (%)", title="Single-stage runs by epoch")
    curves.set_ylim(bottom=max(0.0, curves.get_ylim()[0]))
    curves.legend(fontsize=7, ncol=2)
    for axes in (figures, curves):
        axes.grid(alpha=0.3)
    return save_figure(figure, path)


def rewrite_readme(readme: Path, text: str) -> None:
    """Replaces what stands between BEGIN and END in `readme` with `text`."""
    content = readme.read_text()
    if content.count(BEGIN) != 1 or content.count(END) != 1:
        raise ResultsError(f"{readme} must hold the two marker lines once each:\n{BEGIN}\n{END}")
    head, rest = content.split(BEGIN)
    _, tail = rest.split(END)
    readme.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    args = argparse.ArgumentParser(
        prog="python -m ltfast.results", description=__doc__.split("\n\n")[0]
    )
    commands = args.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="copy a sweep's finished runs into the results tree")
    add.add_argument("sweep", type=Path, help="sweep folder (python -m ltfast.sweep --out)")
    add.add_argument("--suffix", default="", help="a variant's name, e.g. float32")
    add.add_argument("--overwrite", action="store_true", help="replace differing results")
    add.add_argument(
        "--recipe",
        action="append",
        dest="recipes",
        metavar="NAME",
        help="add only this recipe's runs (repeatable; default: every finished run)",
    )
    show = commands.add_parser("table", help="print the table (and rewrite it in --readme)")
    show.add_argument("--configs", type=Path, default=Path("configs"), help="recipes folder")
    show.add_argument("--readme", type=Path, help="rewrite the table between its markers here")
    show.add_argument(
        "--plots", type=Path, help="write (or replace) PLOTS/<group>.png, a figure per group"
    )
    for command in (add, show):
        command.add_argument("--results", type=Path, default=Path("results"))
    namespace = args.parse_args(argv)
    try:
        if namespace.command == "add":
            for folder in add_sweep(
                namespace.sweep,
                namespace.results,
                namespace.suffix,
                namespace.overwrite,
                namespace.recipes,
            ):
                print(folder)
            return
        results = find_results(namespace.results)
        for result in results:
            strays = recipe_differences(result, namespace.configs)
            if strays:
                print(f"warning: {result.path} strays from its recipe: {strays}", file=sys.stderr)
        text = table(results)
        print(text)
        if namespace.readme is not None:
            rewrite_readme(namespace.readme, text)
        if namespace.plots is not None:
            if not have_matplotlib():
                raise ResultsError("--plots needs matplotlib: pip install 'ltfast[plots]'")
            namespace.plots.mkdir(parents=True, exist_ok=True)
            for group in sorted({r.group for r in results}):
                members = [r for r in results if r.group == group]
                print(plot(members, namespace.plots / f"{group}.png"))
    except (ValueError, OSError) as error:  # ResultsError, RunFolderError and the like
        args.exit(2, f"{args.prog}: error: {error}\n")


if __name__ == "__main__":
    main()
