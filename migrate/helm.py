"""Installing Cilium in migration mode with Helm (``apply --install-cilium``).

Helm is a prerequisite only for this option, found on ``PATH`` or given with ``--helm``;
apply checks for it before anything else. The install is ``helm upgrade --install`` of
release ``cilium`` in ``kube-system`` with the values ``migration_values`` derives from the
plan (the same values ``plan`` writes next to the plan file), and ``--wait``, so it is safe
to run again after an interruption and returns once the agents are rolled out.

The chart is Cilium's published one (``--cilium-chart cilium`` from
``https://helm.cilium.io``, at ``--cilium-version``), or a local chart directory or archive,
or an ``oci://`` reference, for sites that mirror it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from migrate.errors import BadInput, PermanentError

CILIUM_REPO = "https://helm.cilium.io"
CILIUM_CHART = "cilium"
CILIUM_VERSION = "1.18.4"  # the chart whose rendering the tests check against the live-config check
RELEASE = "cilium"
NAMESPACE = "kube-system"


@dataclass(frozen=True)
class HelmInstaller:
    helm: str  # path of the helm binary
    chart: str = CILIUM_CHART
    version: str = CILIUM_VERSION
    kubeconfig: str | None = None
    context: str | None = None
    timeout: str = "10m"

    @classmethod
    def find(cls, helm: str | None = None, **kw: Any) -> HelmInstaller:
        """The installer for ``helm`` (else the one on PATH); a one-line error if there is none."""
        path = shutil.which(helm or "helm")
        if path is None:
            where = f"{helm} is not an executable" if helm else "helm is not on PATH"
            raise BadInput(f"--install-cilium needs Helm 3: {where} (install it or pass --helm PATH)")
        return cls(path, **kw)

    @property
    def local(self) -> bool:
        """A chart directory or archive on this machine (its version is its own)."""
        return self.chart.startswith(("/", "./", "../")) or Path(self.chart).exists()

    def argv(self, values_file: str, *, install: bool = True) -> list[str]:
        """``upgrade --install`` with exactly our values; or, for finalize (``install=False``),
        ``upgrade --reuse-values`` of the existing release with our values on top."""
        verb = ["--install"] if install else ["--reuse-values"]
        argv = [self.helm, "upgrade", *verb, RELEASE, self.chart, "--namespace", NAMESPACE]
        if not self.local and not self.chart.startswith("oci://") and "/" not in self.chart:
            argv += ["--repo", CILIUM_REPO]  # a bare chart name: Cilium's published repository
        if not self.local:
            argv += ["--version", self.version]
        argv += ["--values", values_file, "--wait", "--timeout", self.timeout]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.context:
            argv += ["--kube-context", self.context]
        return argv

    def __call__(self, values: dict[str, Any]) -> str:
        """Install (or finish installing) Cilium with ``values``; returns what was done."""
        self._run(values, install=True)
        return f"installed Cilium ({self._chart}) in migration mode with helm, release {NAMESPACE}/{RELEASE}"

    def upgrade(self, values: dict[str, Any]) -> str:
        """Upgrade the release this tool installed to ``values`` (finalize's final values)."""
        self._run(values, install=False)
        return f"upgraded release {NAMESPACE}/{RELEASE} ({self._chart}) to the final values with helm"

    @property
    def _chart(self) -> str:
        return self.chart if self.local else f"{self.chart} {self.version}"

    def _run(self, values: dict[str, Any], *, install: bool) -> None:
        with tempfile.TemporaryDirectory(prefix="cni-migrate-helm-") as tmp:
            path = os.path.join(tmp, "cilium-values.yaml")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                yaml.safe_dump(values, f, sort_keys=False)
            proc = subprocess.run(self.argv(path, install=install), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
            verb = "upgrade --install" if install else "upgrade"
            raise PermanentError(f"helm {verb} {RELEASE} failed: {lines[-1] if lines else proc.returncode}")
