"""The package's import graph, function-local imports included, has no cycle: a stage that
needs another's helper gets it from a shared module (soft.scoring, soft.decoding), so any
module can be imported alone, in any order (issue 19)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src/soft"


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body."""
    modules = {p.stem for p in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        deps = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "soft":
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("soft."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("soft."))
        deps.discard(path.stem)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 30 and "scoring" in graph["curriculum"] and "scoring" in graph["probe"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_a_function_local_import_cycle_is_found(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from soft.b import g\n")
    (tmp_path / "b.py").write_text("from soft import c\n")
    (tmp_path / "c.py").write_text("import soft.a\n")
    assert find_cycle(import_graph(tmp_path)) == ["a", "b", "c", "a"]
