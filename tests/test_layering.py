"""Imports only point down: core <- models <- guides <- families <- Run API <- command line.

Every import in the package is read from the source (function-local ones included), so a
circle hidden inside a function is found too.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "neurodyn"

# Lower layers may not import higher ones. A module's layer is that of its longest prefix here.
LAYERS = {
    "neurodyn.errors": 0,
    "neurodyn.data": 1,
    "neurodyn.inference": 1,  # the core and the generic engine
    "neurodyn.models": 2,
    "neurodyn.guides": 3,
    "neurodyn.families": 4,
    "neurodyn.api": 5,
    "neurodyn.cli_parser": 6,
    "neurodyn.cli": 6,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Package modules that ``path`` imports (absolute names, submodules resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("neurodyn")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("neurodyn"):
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if exists(sub) else target)
    return {m for m in found if m != name}


def exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PACKAGE.parent / rel.with_suffix(".py")).exists() or (
        PACKAGE.parent / rel / "__init__.py"
    ).exists()


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(p) if m in modules} for name, p in modules.items()}


def layer(module: str):
    best = max(
        (k for k in LAYERS if module == k or module.startswith(k + ".")), key=len, default=None
    )
    return None if best is None else LAYERS[best]


def test_no_import_cycles():
    edges = graph()
    # Package __init__ files that re-export their own submodules are not a cycle of design.
    edges = {
        a: {b for b in bs if not (a.startswith(b + ".") and edges_is_init(b))}
        for a, bs in edges.items()
    }
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def edges_is_init(module: str) -> bool:
    return (PACKAGE.parent / Path(*module.split(".")) / "__init__.py").exists()


def test_imports_point_down():
    upward = []
    for a, targets in graph().items():
        for b in targets:
            la, lb = layer(a), layer(b)
            if la is not None and lb is not None and lb > la:
                upward.append(f"{a} -> {b}")
    assert not upward, f"imports that point up: {sorted(upward)}"


def test_the_walker_sees_a_function_local_import(tmp_path):
    source = tmp_path / "neurodyn_fake.py"
    source.write_text("def f():\n    from neurodyn.cli import main\n")
    tree = ast.parse(source.read_text())
    names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names == ["neurodyn.cli"]
