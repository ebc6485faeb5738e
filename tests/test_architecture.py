"""The package's layering, checked from its source (docs/ARCHITECTURE.md draws it).

Every import between heimdex modules, function-local and TYPE_CHECKING ones included, must point
down the layers below (or stay inside its own group), the two runtimes must not import each other,
and there must be no import cycle. The old module paths kept for a release (`heimdex.worker`,
`heimdex.index.orgindex`) sit at the top, above everything they re-export.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shared" / "heimdex"

# Low to high. A module may import its own group and the groups of lower layers; groups that share a
# layer are peers and may not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("heimdex", "heimdex.domain", "heimdex.logs", "heimdex.retry"),  # foundation: no heimdex imports
    ("heimdex.config",),  # HEIMDEX_* settings
    (
        "heimdex.textenc",
        "heimdex.whisper_models",
    ),  # peers: sentence vectors on ONNX Runtime; where a Whisper setting points
    ("heimdex.models",),  # model loading and the checks behind "skipped: no model"
    ("heimdex.media",),  # the media timeline: segments, scenes, sidecar
    ("heimdex.vectorstore",),  # PostgreSQL + pgvector: schema, scene rows, search SQL
    ("heimdex.core",),  # the contract: graph, executor, stage context, storage/job/dispatch interfaces
    ("heimdex.adapters",),  # implementations of those interfaces
    ("heimdex.stages",),  # one module per stage function
    ("heimdex.services",),  # adapters chosen by settings, and the queries
    ("heimdex.api",),  # the HTTP API (Flask), over any Services
    ("heimdex.embedded", "heimdex.cloud"),  # the two runtimes: peers
    ("heimdex.dev",),  # the cloud path on local emulators
    ("heimdex.cli", "heimdex.worker", "heimdex.index"),  # the command line, and shims of old paths
)
RANK = {group: rank for rank, groups in enumerate(LAYERS) for group in groups}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def group_of(module: str) -> str:
    """The longest LAYERS entry that is the module or a package above it."""
    found = [g for g in RANK if module == g or (g != "heimdex" and module.startswith(g + "."))]
    assert found, f"{module} belongs to no layer: add it to LAYERS in tests/test_architecture.py"
    return max(found, key=len)


def resolve(name: str) -> str | None:
    """The heimdex module an imported name refers to (a submodule if it is one, else its package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> dict[str, int]:
    """heimdex modules this module imports (anywhere in it) -> first line."""
    tree = ast.parse(MODULES[module].read_text())
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "heimdex" or name.startswith("heimdex."):
                target = resolve(name)
                if target and target != module:
                    found.setdefault(target, node.lineno)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        group_of(module)


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        here = group_of(module)
        for target, line in targets.items():
            there = group_of(target)
            if there != here and RANK[there] >= RANK[here]:
                kind = "a peer" if RANK[there] == RANK[here] else "a higher layer"
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target} ({kind})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    # Tarjan's strongly connected components; any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("folder", ["functions", "containers"])
def test_cloud_entry_points_use_only_the_cloud_runtime(folder: str) -> None:
    """functions/*/main.py and containers/main.py only decode and call heimdex.cloud (plus logs
    and the API's JSON errors); nothing of the embedded runtime ships in their path."""
    allowed = {"heimdex.cloud", "heimdex.logs", "heimdex.api"}
    for path in sorted((ROOT / folder).rglob("main.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("heimdex"):
                names = (
                    [node.module] if node.module != "heimdex" else [f"heimdex.{a.name}" for a in node.names]
                )
                for name in names:
                    assert any(name == a or name.startswith(a + ".") for a in allowed), f"{path}: {name}"
