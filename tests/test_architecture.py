"""The import direction: the core never imports an adapter, the CLI, or a Kubernetes client;
only the CLI wires a backend, and only through the ``Backend`` each one builds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "migrate"
CORE = [
    "model",
    "plan",
    "planner",
    "preflight",
    "drain",
    "journal",
    "ports",
    "executor",
    "errors",
    "steps",
    "traffic",
    "verdicts",
]
FORBIDDEN = (
    "kubernetes",
    "migrate.backends",
    "migrate.checkpoints",
    "migrate.cli",
    "migrate.output",
    "typer",
    "structlog",
    "rich",
)


def imports(path: Path) -> set[str]:
    """The modules a file imports, and each name it imports from one, dotted in full
    (``from a.b import c`` gives ``a.b`` and ``a.b.c``: ``c`` may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def core_files() -> list[Path]:
    files = []
    for name in CORE:
        target = PACKAGE / name
        files += sorted(target.glob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
    return files


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_core_module_imports_no_adapter_or_shell(path):
    bad = sorted(m for m in imports(path) if m.startswith(FORBIDDEN))
    assert not bad, f"{path.name} imports {bad}"


def test_only_the_kubernetes_backend_imports_the_kubernetes_client():
    offenders = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if any(m == "kubernetes" or m.startswith("kubernetes.") for m in imports(p))
        and not p.relative_to(PACKAGE).as_posix().startswith("backends/kubernetes")
    ]
    assert offenders == []


def test_nothing_outside_the_kubernetes_backend_imports_its_private_names():
    root = PACKAGE.parent
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(root / "tests").rglob("*.py"), *(root / "benchmarks").glob("*.py")]:
        if path.is_relative_to(PACKAGE / "backends" / "kubernetes"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("migrate.backends.kubernetes")
                and any(alias.name.startswith("_") for alias in node.names)
            ):
                offenders.append(f"{path.relative_to(root)}: {node.module}")
    assert offenders == []


def test_only_the_cli_imports_a_backend():
    offenders = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if not p.is_relative_to(PACKAGE / "backends")
        and not p.is_relative_to(PACKAGE / "cli")
        and any(m.startswith("migrate.backends") for m in imports(p))
    ]
    assert offenders == []


# The CLI takes each backend as the ``Backend`` it builds: it never asks which one it holds.
# The simulated backend's own commands (sim create/show/..., demo) are the one exception.
BUNDLES = ("migrate.backends.bundle", "migrate.backends.simbundle", "migrate.backends.kubernetes.bundle")


@pytest.mark.parametrize("path", sorted((PACKAGE / "cli").glob("*.py")), ids=lambda p: p.name)
def test_the_cli_reaches_a_backend_only_through_its_bundle(path):
    if path.name == "commands_sim.py":
        return
    bad = sorted(
        m
        for m in imports(path)
        if m.startswith("migrate.backends.") and not any(m == b or m.startswith(b + ".") for b in BUNDLES)
    )
    assert not bad, f"{path.name} imports {bad}"


def test_the_cli_imports_the_kubernetes_client_only_for_a_command_that_needs_it():
    """Starting the CLI (every command on a simulated cluster) does not pay for the client."""
    code = "import sys, migrate.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


def test_the_checkpoint_stores_import_no_backend():
    """``checkpoints`` sits below the backends: the in-cluster store is the Kubernetes
    backend's (``backends/kubernetes/journal.py``), the local one knows no cluster."""
    offenders = {
        p.relative_to(PACKAGE).as_posix(): bad
        for p in (PACKAGE / "checkpoints").rglob("*.py")
        if (bad := sorted(m for m in imports(p) if m.startswith(("kubernetes", "migrate.backends"))))
    }
    assert offenders == {}


def test_every_watch_of_the_kubernetes_backend_goes_through_its_one_list_then_watch_loop():
    package = PACKAGE / "backends" / "kubernetes"
    offenders = [
        p.name
        for p in package.glob("*.py")
        if p.name not in ("api.py", "watching.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "watch"
    ]
    assert offenders == []
