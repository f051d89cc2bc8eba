"""The package's import graph, function-local imports included, has no cycle: a stage that
needs another's helper gets it from a shared module (soft.scoring, soft.generate.decoding), so any
module can be imported alone, in any order (issue 19)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src/soft"


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body; modules by their
    dotted name under the package (`config`, `train.finetune`)."""
    paths = {".".join(p.relative_to(package).with_suffix("").parts): p
             for p in sorted(package.rglob("*.py")) if p.name != "__init__.py"}

    def named(dotted: str) -> set[str]:
        return {dotted} if dotted in paths else set()

    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        deps = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "soft":
                base = node.module.partition(".")[2]
                for a in node.names:  # `from soft.train import finetune` names a module
                    deps |= named(f"{base}.{a.name}" if base else a.name) or named(base)
            elif isinstance(node, ast.Import):
                deps.update(a.name.partition(".")[2] for a in node.names if a.name.startswith("soft."))
        deps.discard(module)
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
    assert len(graph) > 30 and "scoring" in graph["curriculum.difficulty"] and "scoring" in graph["probe.answers"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_a_function_local_import_cycle_is_found(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from soft.b import g\n")
    (tmp_path / "b.py").write_text("from soft import c\n")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "d.py").write_text("import soft.a\n")
    (tmp_path / "c" / "e.py").write_text("from soft.c import d\n")
    (tmp_path / "c.py").write_text("from soft.c.e import f\n")
    assert find_cycle(import_graph(tmp_path)) == ["a", "b", "c", "c.e", "c.d", "a"]


def test_each_rule_file_has_the_package_folder_of_its_stage():
    """rules/<stage>.smk's code lives in soft/<stage>/ (issue 19): a stage found in one is
    found in the other. tools/ holds what is not a stage (forecast, rehearsal)."""
    stages = {p.stem for p in (PACKAGE.parents[1] / "rules").glob("*.smk")} - {"common"}
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == stages | {"tools"}, (sorted(stages - folders), sorted(folders - stages))
