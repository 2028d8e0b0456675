"""The results tree: finished full-length runs kept as evidence, and the checks that tie them
to their recipes.

    python -m ltfast.results add SWEEP_DIR [--suffix float32] [--recipe NAME] [--results results]
    python -m ltfast.results table [--results results] [--configs configs] [--readme README.md]
        [--plots docs/results]
    python -m ltfast.results freeze FILE [--configs configs] [--overwrite]

`results/<group>/<recipe>/seed<S>[-<suffix>]/` holds a run's `config.yaml`, `dataset.json`,
`metrics.jsonl` and `summary.json`, never its checkpoints; `<group>/<recipe>` names the recipe
it was trained with, `configs/<group>/<recipe>.yaml`. `add` copies the finished runs of a sweep
there (or those of the recipes named with --recipe; if a file is already there with other
contents, nothing is copied unless --overwrite). `table` prints the comparison that
ltfast.results_table builds (and with --readme rewrites it in place between the two markers
below); `--plots` writes (or replaces) one figure per group, `<group>.png`.
`recipe_differences` says where a result's config strays from its recipe, apart from paths,
device and numerics, so that the table and the recipes cannot drift apart; `freeze` writes
every recipe's effective config (its YAML over today's defaults) to FILE, so that a test can
name each recipe a changed default would silently retrain."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ltfast.config import PLACE_AND_OUTPUT, TrainConfig, from_mapping, load_yaml
from ltfast.report import have_matplotlib
from ltfast.run_folder import CONFIG, DATASET, METRICS, SUMMARY, RunFolder, SweepFolder

RESULT_FILES = (CONFIG, DATASET, METRICS, SUMMARY)
# dataset.json (class names and counts of both splits) was first kept with issue 32; a run
# folder from before may lack it, and its result then does too.
OPTIONAL = (DATASET,)
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
    # The published figure belongs to the recipe: correcting it never edits a result.
    "published_top1",
    "source",
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
        return from_mapping(self.raw_config(), str(self.path / CONFIG))

    def raw_config(self) -> dict:
        """config.yaml as written: results from before every field was recorded lack some."""
        return RunFolder(self.path).read_config()

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
        for name in _present(run):
            (target / name).write_bytes(run.file(name).read_bytes())
    return [target for _, target in copies]


def _present(run: RunFolder) -> list[str]:
    return [n for n in RESULT_FILES if n not in OPTIONAL or run.file(n).is_file()]


def _refuse_clashes(run: RunFolder, target: Path) -> None:
    clashes = [
        name
        for name in _present(run)
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


def effective_recipe(path: Path, base: TrainConfig | None = None) -> dict:
    """What the recipe at `path` trains once every field it leaves out takes `base`'s value
    (today's defaults): all fields but where it reads and writes."""
    values = {**dataclasses.asdict(base or TrainConfig()), **load_yaml(path)}
    trained = dataclasses.asdict(TrainConfig(**values))
    return {k: v for k, v in trained.items() if k not in PLACE_AND_OUTPUT}


def effective_recipes(configs: Path, base: TrainConfig | None = None) -> dict[str, dict]:
    """Every recipe under `configs`, as `group/recipe`: its effective config."""
    return {
        f"{path.parent.name}/{path.stem}": effective_recipe(path, base)
        for path in sorted(Path(configs).glob("*/*.yaml"))
    }


def changed_recipes(
    frozen: dict[str, dict], configs: Path, base: TrainConfig | None = None
) -> list[str]:
    """Where the recipes' effective configs differ from `frozen` (see `freeze`): a changed
    default, a changed recipe, or a recipe added or removed, one line each."""
    now = effective_recipes(configs, base)
    found = [f"{name}: only in the frozen recipes" for name in frozen.keys() - now.keys()]
    found += [f"{name}: not frozen" for name in now.keys() - frozen.keys()]
    for name in sorted(frozen.keys() & now.keys()):
        old, new = frozen[name], now[name]
        found += [
            f"{name}: {field}: frozen {old.get(field)!r}, now {new.get(field)!r}"
            for field in sorted(old.keys() | new.keys())
            if old.get(field) != new.get(field)
        ]
    return sorted(found)


# ----- the README's copy of the table ------------------------------------------------


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
    freeze = commands.add_parser(
        "freeze", help="write every recipe's effective config (the recipes test's fixture)"
    )
    freeze.add_argument("file", type=Path, help="JSON file to write, e.g. tests/recipes.json")
    freeze.add_argument("--configs", type=Path, default=Path("configs"), help="recipes folder")
    freeze.add_argument("--overwrite", action="store_true", help="replace an existing file")
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
        if namespace.command == "freeze":
            if namespace.file.exists() and not namespace.overwrite:
                raise ResultsError(f"{namespace.file} exists; pass --overwrite to replace it")
            frozen = effective_recipes(namespace.configs)
            namespace.file.write_text(json.dumps(frozen, indent=1, sort_keys=True) + "\n")
            print(f"{namespace.file}: {len(frozen)} recipes")
            return
        from ltfast.results_table import plot, rows, table

        results = find_results(namespace.results)
        for result in results:
            strays = recipe_differences(result, namespace.configs)
            if strays:
                print(f"warning: {result.path} strays from its recipe: {strays}", file=sys.stderr)
        text = table(results, namespace.configs)
        print(text)
        if namespace.readme is not None:
            rewrite_readme(namespace.readme, text)
        if namespace.plots is not None:
            if not have_matplotlib():
                raise ResultsError("--plots needs matplotlib: pip install 'ltfast[plots]'")
            namespace.plots.mkdir(parents=True, exist_ok=True)
            everything = rows(results, namespace.configs)
            for group in sorted({row.first.group for row in everything}):
                members = [row for row in everything if row.first.group == group]
                print(plot(members, namespace.plots / f"{group}.png"))
    except (ValueError, OSError) as error:  # ResultsError, RunFolderError and the like
        args.exit(2, f"{args.prog}: error: {error}\n")


if __name__ == "__main__":
    main()
