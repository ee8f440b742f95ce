"""The pinned binaries: ``tools/kube/build`` runs (a no-op when cached) and names the
directory that holds them and their VERSIONS file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .errors import LabError

HERE = Path(__file__).resolve().parent.parent  # tools/kube
BUILD_SCRIPT = HERE / "build"


def build(*, quiet: bool = False) -> Path:
    """Run tools/kube/build (no-op when cached) and return the bin dir.

    ``$CNI_MIGRATE_KUBE_BIN`` short-circuits the build (use prebuilt bins).
    """
    env_bin = os.environ.get("CNI_MIGRATE_KUBE_BIN")
    if env_bin:
        return Path(env_bin)
    proc = subprocess.run(
        [str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise LabError(f"{BUILD_SCRIPT} failed (exit {proc.returncode})")
    return Path(lines[-1])


def read_versions(bin_dir: Path) -> dict[str, str]:
    """Parse bin_dir/VERSIONS (written by the build script)."""
    out: dict[str, str] = {}
    path = Path(bin_dir) / "VERSIONS"
    if path.exists():
        for line in path.read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep:
                out[k.strip()] = v.strip()
    return out
