"""No import circle anywhere in the project: the module graph, read from the source, is acyclic.

The graph is built with ``ast`` (nothing is imported) from every module of the layer
(layers/common/closeloop), the local package (local/closeloop_local) and the handlers
(functions/*/app.py). An edge A -> B is any import of project module B by A, wherever it is written:

- at module level, inside a function (a lazy import) or under ``if TYPE_CHECKING:``. A lazy or type-only
  import still makes a circle in design terms: A needs B and B needs A, whatever the order they load in.
- ``import a.b.c`` imports a.b.c; ``from pkg import name`` imports pkg.name when that is a module, else pkg;
  relative imports are resolved against the importing module's package.
- a string literal (docstrings aside) that is exactly a project module's dotted name, such as the
  ``"closeloop_local.demo"`` the CLI hands to ``importlib.import_module``: loading a module by name is
  importing it.

A failure names each shortest cycle, with the file and line of every import on it.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.source_scan import docstring_nodes

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = (ROOT / "layers" / "common", ROOT / "local")
PACKAGES = ("closeloop", "closeloop_local")


@dataclass(frozen=True)
class Source:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Import:
    target: str
    line: int


def project_sources() -> list[Source]:
    sources = []
    for root, package in zip(SOURCE_ROOTS, PACKAGES, strict=True):
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            sources.append(Source(".".join(parts), path, is_package))
    for path in sorted(ROOT.glob("functions/*/app.py")):
        sources.append(Source(f"functions.{path.parent.name}.app", path, is_package=False))
    return sources


def _nearest_module(dotted: str, modules: set[str]) -> str | None:
    """``dotted`` if it is a project module, else its longest prefix that is one (None outside the project)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _relative_base(source: Source, level: int) -> str:
    package = source.name.split(".") if source.is_package else source.name.split(".")[:-1]
    return ".".join(package[: len(package) - (level - 1)])


def imports_of(source: Source, text: str, modules: set[str], *, by_name: bool = True) -> list[Import]:
    """Every project module ``source`` imports (see the module docstring for what counts; ``by_name=False``
    leaves out the string literals that name a module)."""
    tree = ast.parse(text, filename=str(source.path))
    docstrings = docstring_nodes(tree)
    found: list[Import] = []

    def add(dotted: str, line: int) -> None:
        target = _nearest_module(dotted, modules)
        if target is not None and target != source.name:
            found.append(Import(target, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = _relative_base(source, node.level)
                base = f"{prefix}.{base}" if base else prefix
            for alias in node.names:
                named = f"{base}.{alias.name}"
                add(named if alias.name != "*" and named in modules else base, node.lineno)
        elif (
            by_name
            and isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and node.value in modules
        ):
            add(node.value, node.lineno)
    return found


def import_graph(sources: Iterable[Source]) -> dict[str, dict[str, int]]:
    """module -> {imported module: the line of its first import}."""
    sources = list(sources)
    modules = {source.name for source in sources}
    graph: dict[str, dict[str, int]] = {}
    for source in sources:
        edges: dict[str, int] = {}
        for found in imports_of(source, source.path.read_text(), modules):
            edges.setdefault(found.target, found.line)
        graph[source.name] = edges
    return graph


@cache
def project_graph() -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """The project's import graph (parsed once for every test here) and each module's file."""
    sources = project_sources()
    return import_graph(sources), {source.name: source.path for source in sources}


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(graph.get(successor, ()))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _shortest_cycle_through(start: str, graph: Mapping[str, Iterable[str]], within: set[str]) -> list[str]:
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in graph[node]:
            if successor not in within:
                continue
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return path[::-1]
            if successor not in parents:
                parents[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is on no cycle within its component")  # a component of two or more always has one


def shortest_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """For each module on a cycle, the shortest cycle through it; each cycle once, rotated to its least module."""
    cycles: set[tuple[str, ...]] = set()
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        for module in component:
            cycle = _shortest_cycle_through(module, graph, component)
            least = cycle.index(min(cycle))
            cycles.add(tuple(cycle[least:] + cycle[:least]))
    return [list(cycle) for cycle in sorted(cycles, key=lambda cycle: (len(cycle), cycle))]


def describe(cycle: list[str], graph: Mapping[str, Mapping[str, int]], paths: Mapping[str, Path]) -> str:
    steps = []
    for importer, imported in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
        where = f"{paths[importer].relative_to(ROOT)}:{graph[importer][imported]}"
        steps.append(f"    {importer} -> {imported}  ({where})")
    return "\n".join(steps)


def test_the_project_has_no_import_circle() -> None:
    # Given every project module's imports, read from its source
    graph, paths = project_graph()

    # When the graph is searched for cycles
    cycles = shortest_cycles(graph)

    # Then there is none
    report = "\n".join(f"cycle {number}:\n{describe(cycle, graph, paths)}" for number, cycle in enumerate(cycles, 1))
    assert not cycles, f"{len(cycles)} import circle(s):\n{report}"


def test_the_graph_sees_the_project_and_its_imports() -> None:
    # Given the project's modules
    graph, _ = project_graph()

    # Then the layer, the local package and the handlers are all in it, with edges a reader can check
    assert {"closeloop.store", "closeloop_local.cli", "functions.on_contact.app"} <= graph.keys()
    assert "closeloop.runtime" in graph["functions.on_contact.app"]
    # a lazy import inside a function counts
    assert "closeloop.pacing" in graph["closeloop.runtime"]
    # a module loaded by name through importlib counts
    assert "closeloop_local.demo" in graph["closeloop_local.cli"]


def _graph_of(files: dict[str, str], tmp_path: Path) -> dict[str, dict[str, int]]:
    sources = []
    for name, text in files.items():
        is_package = name.endswith(".__init__")
        module = name.removesuffix(".__init__")
        path = tmp_path / f"{name.replace('.', '_')}.py"
        path.write_text(text)
        sources.append(Source(module, path, is_package))
    return import_graph(sources)


def test_imports_resolve_relative_lazy_type_only_and_by_name(tmp_path: Path) -> None:
    # Given a small package with every kind of import the check reads
    graph = _graph_of(
        {
            "pkg.__init__": "from pkg.a import thing\n",
            "pkg.a": "from . import b\nfrom .b import helper\nimport pkg.sub.c\n",
            "pkg.b": "def f():\n    from pkg import sub\n",
            "pkg.sub.__init__": (
                "from .. import a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.b\n"
            ),
            "pkg.sub.c": (
                '"""pkg.a is not an import in a docstring."""\nimport importlib\nimportlib.import_module("pkg.b")\n'
            ),
            "pkg.d": "from pkg.sub import c, not_a_module\nimport os\nfrom pkg.a.thing import x\n",
        },
        tmp_path,
    )

    # Then each import lands on the module it names, or on the package when the name is not a module
    assert graph == {
        "pkg": {"pkg.a": 1},
        "pkg.a": {"pkg.b": 1, "pkg.sub.c": 3},
        "pkg.b": {"pkg.sub": 2},
        "pkg.sub": {"pkg.a": 1, "pkg.b": 4},
        "pkg.sub.c": {"pkg.b": 3},
        "pkg.d": {"pkg.sub.c": 1, "pkg.sub": 1, "pkg.a": 3},
    }


def test_a_cycle_is_found_and_named_shortest(tmp_path: Path) -> None:
    # Given a -> b -> a, b -> c -> d -> b (lazily) and e -> e's neighbour f with no way back
    graph = _graph_of(
        {
            "a": "import b\n",
            "b": "import a\nimport c\n",
            "c": "def late():\n    import d\n",
            "d": "from b import x\n",
            "e": "import f\n",
            "f": "",
        },
        tmp_path,
    )

    # When the cycles are searched
    cycles = shortest_cycles(graph)

    # Then both circles are named, shortest first, and the acyclic part is not
    assert cycles == [["a", "b"], ["b", "c", "d"]]


def test_tests_import_helper_modules_not_other_test_modules() -> None:
    # Given every module under tests/ and what it imports from tests/
    tests_root = ROOT / "tests"
    sources = []
    for path in sorted(tests_root.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        sources.append(Source(".".join(parts[:-1] if is_package else parts), path, is_package))
    modules = {source.name for source in sources}

    # When the import statements that land on a test module (test_*.py or conftest.py) are collected
    found = {
        (source.name, imported.target)
        for source in sources
        for imported in imports_of(source, source.path.read_text(), modules, by_name=False)
        if imported.target.rpartition(".")[2].startswith("test_") or imported.target.endswith(".conftest")
    }

    # Then there are none: what tests share lives in helper modules (tests/fakes.py, tests/pairs/scenarios.py, ...)
    assert found == set()
