"""The package's modules import one another one way: no cycle, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import katdensity

PACKAGE = Path(katdensity.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The katdensity modules `module` imports anywhere in its source (any depth)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from katdensity.x import y` imports x, or x.y when y is a module.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("katdensity") and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each katdensity module and the katdensity modules it imports."""
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(paths)
    graph = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[module] = _imported(tree, module, path.name == "__init__.py", known)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


# The package roots only re-export (`katdensity`, `katdensity.density`, ...): they are not
# layers, and a module reaching a name through one is not counted as importing its layer.
FACADES = {
    "katdensity",
    "katdensity.density",
    "katdensity.embedders",
    "katdensity.knn",
    "katdensity.integrations",
    "katdensity.learnability",
}


def test_the_import_graph_has_no_cycle() -> None:
    graph = {
        module: targets - FACADES
        for module, targets in import_graph().items()
        if module not in FACADES
    }
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    # InverseDensitySampler.from_embeddings imports the default estimator inside the method.
    assert "katdensity.density.exact" in graph["katdensity.sampler"]
