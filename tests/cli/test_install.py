"""``pipx install .`` from a clone: a wheel built from the source tree, installed (not
editable) into a fresh virtual environment, runs the demo and renders a runbook from files
it carries itself, in a directory that is not a checkout."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a clone holds that a build never reads: our environment, caches, git's objects.
NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build", "__pycache__", ".*_cache", "e2e")


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@pytest.mark.slow  # building the wheel fetches setuptools into an isolated build: tens of seconds
def test_a_wheel_installed_into_a_fresh_venv_runs_the_demo_and_renders_a_runbook(tmp_path):
    source = tmp_path / "clone"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)  # a build writes into its tree: not into ours
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", wheels, cwd=source)
    (wheel,) = wheels.glob("cni_migrate-*.whl")

    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path
    )
    # The dependencies (kubernetes, typer, ...) from this environment, as plain paths: its
    # .pth files, among them the editable install of the checkout, are not run from there.
    target = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    )
    (target / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CNI_MIGRATE_RUNBOOK_TEMPLATES")},
        "CNI_MIGRATE_HOME": str(tmp_path / "home"),
        "NO_COLOR": "1",
    }
    where = run(python, "-c", "import migrate; print(migrate.__file__)", cwd=elsewhere, env=env).stdout.strip()
    assert Path(where).is_relative_to(fresh), f"migrate imported from {where}, not the installed wheel"

    exe = fresh / "bin" / "cni-migrate"
    demo = run(exe, "demo", cwd=elsewhere, env=env)
    assert "run completed" in demo.stdout, demo.stdout[-2000:]
    run(exe, "runbook", "plans/demo.yaml", "--out", "runbook.md", cwd=elsewhere, env=env)
    text = (elsewhere / "runbook.md").read_text()
    assert "cni-migrate rollback" in text and "## " in text, text[:500]
