"""The package imports only downward, and has no import cycle.

Every module of `fusion/` is parsed with `ast` (nothing is imported); an import anywhere in a file
counts: at module level, inside a function, under ``if TYPE_CHECKING:``. Relative imports are resolved.
``from a.b import c`` is an edge to the module ``a.b.c`` when it exists, else to ``a.b``; the parent
packages an import initialises are not edges (as in /work/shared/hooks/import_cycles.py).

The layer table lives here, and only here, next to the rule that reads it: plain Python that needs no
TOML parser (Python 3.10 has none), with its comments and the allow-list in the same file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fusion"

#: The layers, top first. A module may import (1) modules of its own unit (the longest prefix listed
#: below: `fusion.data.synthetic.oracle` belongs to `fusion.data`) and (2) modules of units on LOWER
#: lines. Units on one line are siblings and must not import each other; nothing imports upward.
#: `fusion` is the package root (`fusion/__init__.py` only): it re-exports the API and a few classes.
#: Every module must belong to a unit: a new top-level module or package is placed here on purpose.
LAYERS: list[tuple[str, ...]] = [
    ("fusion.cli",),  # console entry points (fusion-train, fusion-predict, ...)
    ("fusion",),  # the package root: only re-exports (compose/train/predict, Cohort, Modality, ...)
    ("fusion.api",),  # the Python API: the same runs as the CLI
    ("fusion.validation",),  # the old name of fusion.cohort_check, a re-export
    ("fusion.cross_validation",),  # one training run per fold
    # run level: whole runs from a config or a checkpoint
    (
        "fusion.training",
        "fusion.robustness",
        "fusion.cohort_check",
        "fusion.prediction",
        "fusion.explanations",
        "fusion.similar",  # similar patients of a manifest (fusion-similar)
    ),
    ("fusion.scoring",),  # a run's predictions -> metrics.json, report/, W&B (train and predict share it)
    ("fusion.report",),  # renders an evaluation: figures, report.md, W&B tables
    ("fusion.evaluation",),  # bootstraps every head's own evaluation (Head.evaluate)
    ("fusion.checkpoint",),  # a checkpoint -> the trained pipeline
    ("fusion.pipeline",),  # builders from config: modalities, heads, model, data module
    # resuming a run (its command, its loggers' state); Lightning callbacks of a training run
    ("fusion.resume", "fusion.callbacks"),
    ("fusion.lit", "fusion.prediction_table"),  # Lightning module; predict_step outputs -> a table
    # per-patient attributions: modality Shapley values, Integrated Gradients, tile and imaging maps;
    # similar patients: fused embeddings, nearest-neighbour search, retrieval quality
    ("fusion.attribution", "fusion.retrieval"),
    ("fusion.console",),  # what runs print: progress bar, epoch lines, quiet libraries, the final summary
    # encoders -> fuser -> heads; optimiser and schedule factories; non-finite outputs/losses/weights
    ("fusion.model", "fusion.optim", "fusion.divergence"),
    # the loading layer, where modalities and heads meet the cohort (records, item store, disk cache,
    # dataset, datamodule, splits, demo and synthetic cohorts)
    ("fusion.data",),
    ("fusion.modalities", "fusion.heads", "fusion.fusers", "fusion.features"),
    # network blocks; metrics; whole-slide reading; matplotlib figures (plain data in, PNG out)
    ("fusion.nn", "fusion.metrics", "fusion.wsi", "fusion.plots"),
    # the I/O layer: manifests/tables, DICOM series, genomic tables/MAF, GMT, feature files, tile images
    ("fusion.io",),
    # a run's provenance: versions, config and input digests, split sizes (imports only fusion.version)
    ("fusion.provenance",),
    # leaves (conf: YAML only; fail_soft: optional steps after training warn instead of raising)
    ("fusion.errors", "fusion.distributed", "fusion.version", "fusion.conf", "fusion.fail_soft"),
]

#: Known violations of the table: (importer, imported) module pairs, each allowed exactly as named. Empty:
#: keep it so. A listed edge that no longer exists fails `test_allow_list_names_only_existing_edges`, and
#: nothing below fusion.model may be added here.
ALLOWED_UPPER_LAYER_EDGES: frozenset[tuple[str, str]] = frozenset()

#: the lowest line the allow-list may reach into (entries below it would hide a lower-layer regression)
_ALLOW_LIST_FLOOR = next(i for i, line in enumerate(LAYERS) if "fusion.model" in line)


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `package` (a package is its __init__.py)."""
    modules = {}
    for file in sorted(package.rglob("*.py")):
        parts = list(file.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = file
    return modules


def _resolve(name: str, modules: Iterable[str]) -> str | None:
    """The longest existing module that `name` is or lies in (`fusion.x.y.attr` -> `fusion.x.y`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, source: str, modules: dict[str, Path], is_package: bool) -> set[str]:
    """The modules of the package that `module` imports anywhere in `source` (itself excluded)."""
    root = module.split(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: anchored at this package (or this module's package)
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            subs = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t for t in subs if t in modules]
            if len(targets) < len(subs):  # some names are attributes of `base`, not submodules
                targets.append(base)
        for target in targets:
            if target.split(".")[0] != root:
                continue
            resolved = _resolve(target, modules)
            if resolved and resolved != module:
                found.add(resolved)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_files(package)
    return {
        m: imports_of(m, f.read_text(encoding="utf-8"), modules, f.name == "__init__.py")
        for m, f in modules.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (m0, m1, ..., m0) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the package is small, recursion depth is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(component, graph) for component in components]


def _cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle from the first module of a strongly connected component back to itself."""
    inside, start = set(component), component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & inside):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return [*component, component[0]]  # unreachable for a strongly connected component


def unit_of(module: str) -> tuple[str, int] | None:
    """(unit, line in LAYERS) of a module: its longest listed prefix (the root only by itself)."""
    best: tuple[str, int] | None = None
    for line, units in enumerate(LAYERS):
        for unit in units:
            matches = module == unit or (unit != "fusion" and module.startswith(unit + "."))
            if matches and (best is None or len(unit) > len(best[0])):
                best = (unit, line)
    return best


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that goes up the table or sideways to a sibling unit, as a readable line."""
    problems = []
    for importer in sorted(graph):
        source = unit_of(importer)
        for imported in sorted(graph[importer]):
            target = unit_of(imported)
            if source is None or target is None or source[0] == target[0] or target[1] > source[1]:
                continue
            if (importer, imported) in ALLOWED_UPPER_LAYER_EDGES:
                continue
            how = "a sibling of" if target[1] == source[1] else "above"
            problems.append(f"{importer} imports {imported}: {target[0]} is {how} {source[0]}")
    return problems


# --------------------------------------------------------------------------------------------- tests
def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [m for m in module_files() if unit_of(m) is None]
    assert not unplaced, f"modules in no unit of LAYERS (place them in the table): {unplaced}"
    units = [u for line in LAYERS for u in line]
    assert len(units) == len(set(units)), "a unit is listed twice in LAYERS"


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    for cycle in cycles:
        print("import cycle: " + " -> ".join(cycle))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_only_go_down_the_layers() -> None:
    problems = layer_violations(import_graph())
    for problem in problems:
        print(problem)
    assert not problems, "imports against the layer table:\n" + "\n".join(problems)


def test_allow_list_names_only_existing_upper_layer_edges() -> None:
    graph = import_graph()
    stale = sorted(edge for edge in ALLOWED_UPPER_LAYER_EDGES if edge[1] not in graph.get(edge[0], ()))
    assert not stale, f"allow-listed edges that no longer exist (delete them): {stale}"
    low = sorted(e for e in ALLOWED_UPPER_LAYER_EDGES if unit_of(e[0])[1] > _ALLOW_LIST_FLOOR)
    assert not low, f"the allow-list is for the upper layers only: {low}"


def test_the_checks_catch_an_upward_import_a_sibling_import_and_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "fusion"
    files = {
        "__init__.py": "",
        "io/__init__.py": "",
        "io/cohort.py": "def f():\n    from fusion.data import records  # upward, inside a function\n",
        "data/__init__.py": "",
        "data/records.py": "from ..io.cohort import f\n",  # relative, downward: fine
        "heads/__init__.py": "",
        "heads/base.py": "import typing\nif typing.TYPE_CHECKING:\n    import fusion.fusers.base\n",
        "fusers/__init__.py": "",
        "fusers/base.py": "",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    graph = import_graph(package)
    assert graph["fusion.io.cohort"] == {"fusion.data.records"}
    assert graph["fusion.data.records"] == {"fusion.io.cohort"}
    assert find_cycles(graph) == [["fusion.data.records", "fusion.io.cohort", "fusion.data.records"]]
    assert layer_violations(graph) == [
        "fusion.heads.base imports fusion.fusers.base: fusion.fusers is a sibling of fusion.heads",
        "fusion.io.cohort imports fusion.data.records: fusion.data is above fusion.io",
    ]
