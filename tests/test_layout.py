"""The package's layers (docs/architecture.md): a module imports only from its own layer or the
ones below it, a stage from no other stage, and no two modules import each other, directly or
through others. Read from the source (every import, lazy ones inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "stages"
# the layers, lowest first; a module may import from its own layer's folder and the layers below
LAYERS = {"common": 0, "method": 1, "datasets": 2, "synthetic": 3, "config": 4}
STAGES = ("describe", "embed", "pretrain", "finetune", "evaluate", "export", "report")   # layer 5, each on its own
SUPPORT = ("toys", "plan", "preflight")   # layer 6, above every stage: toy inputs for the tests and benchmarks; the jobs' resource plan; the checks of several stages' settings


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports (`from . import x` names module x where there is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            named = {f"{base}.{a.name}" for a in node.names}
            found.update(named)
            if not named <= known:   # a name the module defines, not only its submodules
                found.add(base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def layer(name: str) -> tuple[int, str]:
    part = name.split(".")[1] if "." in name else ""
    if part in LAYERS:
        return LAYERS[part], part
    if part in SUPPORT:
        return len(LAYERS) + 1, part
    assert part in STAGES, f"{name} is in no layer of tests/test_layout.py: place it in the docs' picture first"
    return len(LAYERS), part


def test_every_import_goes_down_or_stays_in_its_own_folder():
    wrong = []
    for name, deps in graph().items():
        if name == "stages":
            continue
        level, folder = layer(name)
        for dep in deps:
            if dep == "stages":
                continue
            dep_level, dep_folder = layer(dep)
            if dep_level > level or (dep_level == level and dep_folder != folder):
                wrong.append(f"{name} imports {dep}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_the_method_library_and_the_registry_stay_light():
    """The Snakefile reads the method registry and the config check while it builds the DAG:
    neither may pull in torch (or a stage) through its imports."""
    g = graph()

    def closure(m, seen=None):
        seen = set() if seen is None else seen
        for d in g[m]:
            if d not in seen:
                seen.add(d)
                closure(d, seen)
        return seen

    assert closure("stages.method.registry") <= {"stages", "stages.method"}
    source = (ROOT / "method" / "registry.py").read_text()
    assert "import torch" not in source


def test_the_documents_are_in_the_repository():
    """The method's design is docs/method.md: no file of the repository points at a design file
    outside it (a clone would not have it)."""
    import subprocess

    repo = ROOT.parent
    files = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    for outside in ("DESIGN" + ".md", "../" + "shared", '"shared" / ' + '"data"'):
        naming = [f for f in files if (repo / f).is_file() and outside in (repo / f).read_text(errors="ignore")]
        assert not naming, f"{naming} name {outside}, which is not in the repository (the design: docs/method.md)"
    assert (repo / "docs" / "method.md").is_file()
