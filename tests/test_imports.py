"""The import graph of the project, read from the source with ``ast``: no module imports itself through
others (every import counts: at the top, inside functions, under ``TYPE_CHECKING``), and the stages
(collector, classifier, reports) never import each other: they meet in ``store``, and only the
composition root (``mynawatch``) wires them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("collector", "classifier", "store", "reports", "mynawatch")
STAGES = ("collector", "classifier", "reports")  # they meet only in store


def module_files() -> dict[str, Path]:
    """Dotted name -> file, for every module of the project's packages (a package is its __init__)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``name`` imports anywhere in its source. ``from pkg import x`` is an import
    of the module ``pkg.x`` when there is one, else of ``pkg`` itself."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else _known(base, modules))
    return found & modules.keys() - {name}


def _known(dotted: str, modules: dict[str, Path]) -> str:
    """The longest prefix of ``dotted`` that is a project module (``import a.b.c`` of a function c)."""
    parts = dotted.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a path that closes."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(_closed_path(graph, sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _closed_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest circle through the first module of a component: a -> b -> ... -> a."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return component


def test_the_graph_is_read():
    graph = import_graph()
    assert {"collector.jobs", "store.db", "mynawatch.cli", "reports.daily", "classifier.model"} <= graph.keys()
    assert "store.records" in graph["collector.parse"]
    assert "collector.fetch" in graph["collector.jobs"]


def test_no_import_circles():
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_stages_meet_only_in_the_store():
    crossing = [f"{name} imports {target}" for name, targets in sorted(import_graph().items())
                for target in sorted(targets)
                if (stage := name.split(".")[0]) in STAGES and target.split(".")[0] in STAGES
                and target.split(".")[0] != stage]
    assert not crossing, "stages importing each other:\n" + "\n".join(crossing)


def test_the_store_imports_no_stage():
    reaching = [f"{name} imports {target}" for name, targets in sorted(import_graph().items())
                if name.split(".")[0] == "store" for target in sorted(targets)
                if target.split(".")[0] in (*STAGES, "mynawatch")]
    assert not reaching, "the store reaching into a stage:\n" + "\n".join(reaching)


def test_a_circle_is_found():
    """The checker itself: a made-up graph with one circle and one clean chain."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_commands_that_do_not_classify_start_without_the_models_libraries():
    """`alerts deliver`, `collect`, `report` and the others run from cron every few minutes: the CLI and the
    pipeline load spaCy, SudachiPy and scikit-learn with a model, and matplotlib with a chart, not at start
    (a second of CPU each time before)."""
    import subprocess
    import sys

    script = ("import sys, mynawatch.cli, mynawatch.pipeline, mynawatch.serving, classifier.cache, classifier.jobs\n"
              "mynawatch.cli.build_parser()\n"
              "print(' '.join(m for m in ('spacy', 'sudachipy', 'sklearn', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
