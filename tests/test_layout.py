"""The package layout holds: wings import only the wings below them, and nothing imports in a
circle. Read from the source (every import, also those inside functions), and checked live."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import jam

ROOT = Path(jam.__file__).parent
# What each wing may import (besides itself). The composition root and the CLI may use all.
ALLOWED = {
    "sound": set(),
    "seeds": {"sound"},
    "model": {"sound", "seeds"},
    "stream": {"sound", "seeds", "model"},
    "serve": {"sound", "seeds", "model", "stream"},
    "cluster": {"sound", "seeds", "model", "stream", "serve"},
    "train": {"sound", "seeds", "model"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every jam module -> the jam modules it imports anywhere in its source."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("jam")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jam"):
                base = node.module or ""
                for alias in node.names:  # `from jam.serve import protocol` names a module
                    sub = f"{base}.{alias.name}"
                    found.add(
                        sub
                        if (ROOT.parent / Path(*sub.split("."))).with_suffix(".py").is_file()
                        else base
                    )
        graph[name] = found - {name}
    return graph


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (ROOT / parts[-1]).is_dir() else ""


def test_each_wing_imports_only_the_wings_below_it():
    bad = [
        f"{m} imports {d}"
        for m, deps in imports().items()
        if wing(m) in ALLOWED
        for d in deps
        if wing(d) not in ALLOWED[wing(m)] | {wing(m)} and d != "jam"
    ]
    assert bad == []


def test_no_module_imports_itself_in_a_circle():
    graph = imports()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append([*path[path.index(d) :], d] if d in path else [m, d])
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def loaded_after(statement: str) -> set[str]:
    code = (
        f"import sys; {statement}; print(' '.join(m for m in sys.modules if m.startswith('jam')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_serving_loads_no_training_code():
    """Live, in a fresh interpreter (the source check above covers the other direction)."""
    served = loaded_after("import jam.app, jam.cli, jam.serve.server")
    assert "jam.serve.server" in served
    assert not {m for m in served if m.startswith("jam.train")}
