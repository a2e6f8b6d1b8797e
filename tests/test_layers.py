"""The package is layered, bottom to top, and every import points down (docs/architecture.md).

The graph is read from the source (every ``import`` at any depth, ``TYPE_CHECKING`` blocks
included), so a cycle cannot hide inside a function. Within one layer modules import each other
freely; across layers only downwards, and only at module level: a function-level import across
layers is how a cycle is dodged, not removed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import maskstudy

ROOT = Path(maskstudy.__file__).parent
BASE = ("errors", "registry", "steps", "seeds", "files", "masks", "fields", "lazy")
LAYERS = [
    ("base",),  # the top-level modules of BASE, which import each other
    ("data", "models"),
    ("pruning",),
    ("train",),
    ("eval",),
    ("runs",),
    ("analysis",),
    ("plots",),
    ("demo",),
    ("explorer",),  # the interactive mask explorer of the notebooks
    ("sweep_report",),  # the HTML report of a sweep or folder of runs
    ("__init__",),  # the public API
    ("commands",),  # what each CLI command does
    ("cli",),  # the parser
]
# The deliberate late imports: the parser loads the commands (and torch) only once a command
# runs, so `maskstudy --help` answers at once (tests/test_run.py times nothing, checks torch);
# the commands load the analysis tables, figures, demo and report (scipy, matplotlib, seaborn)
# only in the commands that use them, so `run`, `sweep`, `branch` and `status` start fast
# (tests/test_startup.py checks what they load).
DEFERRED = {("cli", "commands")} | {
    ("commands", unit) for unit in ("analysis", "plots", "demo", "sweep_report")
}
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# Inside runs/, bottom to top: configuration, the store, run orchestration, sweeps.
RUNS = [
    ("regimes", "config", "presets", "runlike", "progress"),
    ("store", "gradual", "lock", "table", "loggers"),
    ("checks", "scoring", "scratch", "branch", "run", "foreign", "openlth", "pruned_models"),
    ("sweep", "verify", "discover", "tasks", "executors"),
]
RUNS_RANK = {name: rank for rank, names in enumerate(RUNS) for name in names}


def unit(module: str) -> str:
    """The layer unit of a dotted module name: its subpackage or top-level module ("base" for
    the modules of BASE)."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "__init__"
    return "base" if name in BASE else name


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    path = ROOT.parent / dotted.replace(".", "/")
    return path.is_dir() or path.with_suffix(".py").is_file()


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported maskstudy module, at module level?, line) for every import in ``path``."""
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("maskstudy"):
                for alias in child.names:  # `from maskstudy import demo` names a module
                    sub = f"{child.module}.{alias.name}"
                    found.append((sub if is_module(sub) else child.module, top, child.lineno))
            elif isinstance(child, ast.Import):
                found.extend(
                    (a.name, top, child.lineno)
                    for a in child.names
                    if a.name.startswith("maskstudy")
                )
            function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, top and not function)

    visit(ast.parse(path.read_text(), str(path)), True)
    return found


def edges() -> list[tuple[str, str, bool, str]]:
    """(importing unit, imported unit, at module level?, where) across units."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        src = unit(module_name(path))
        for target, top, line in imports(path):
            dst = unit(target) if target != "maskstudy" else "__init__"
            if dst != src:
                out.append((src, dst, top, f"{path.relative_to(ROOT.parent)}:{line}"))
    return out


def test_every_module_belongs_to_a_layer():
    units = {p.stem for p in ROOT.glob("*.py")} | {
        p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()
    }
    assert {"base" if u in BASE else u for u in units} == set(RANK), "add it to LAYERS"


def test_imports_point_down_and_never_from_inside_a_function():
    upward = [
        f"{where}: {src} imports {dst}"
        for src, dst, _, where in edges()
        if RANK[dst] > RANK[src] or (RANK[dst] == RANK[src] and src != dst)
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)
    hidden = [
        f"{where}: {src} imports {dst} inside a function"
        for src, dst, top, where in edges()
        if not top and (src, dst) not in DEFERRED
    ]
    assert not hidden, "function-level imports across layers:\n" + "\n".join(hidden)


def test_runs_is_layered_too():
    """Configuration, then the store, then orchestration, then sweeps: within a tier modules
    import each other; across tiers only downwards, and never inside a function."""
    modules = {p.stem for p in (ROOT / "runs").glob("*.py")} - {"__init__"}
    assert modules == set(RUNS_RANK), "add the new runs/ module to RUNS"
    wrong = []
    for path in sorted((ROOT / "runs").glob("*.py")):
        for target, top, line in imports(path):
            parts = target.split(".")
            if path.stem == "__init__" or len(parts) < 3 or parts[1] != "runs":
                continue
            src, dst = RUNS_RANK[path.stem], RUNS_RANK[parts[2]]
            if dst > src or not top:
                wrong.append(f"runs/{path.name}:{line} imports runs.{parts[2]}")
    assert not wrong, "imports against the tiers of runs/:\n" + "\n".join(wrong)


def test_the_parser_and_the_package_load_without_torch():
    """`maskstudy --help` and `import maskstudy` answer without loading torch (PEP 562 API)."""
    import subprocess
    import sys

    code = (
        "import sys, maskstudy, maskstudy.cli as cli\n"
        "cli.build_parser().format_help()\n"
        "assert 'torch' not in sys.modules, 'torch was loaded'\n"
        "maskstudy.open_run\n"
        "assert 'torch' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
