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

import json
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
        """A chart directory or archive on this machine (its version is its own). ``plan``
        records local charts as absolute paths; a bare name is never taken from the disk."""
        return self.chart.startswith("/")

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
        self._recover_pending()
        self._run(values, install=True)
        return f"installed Cilium ({self._chart}) in migration mode with helm, release {NAMESPACE}/{RELEASE}"

    def upgrade(self, values: dict[str, Any]) -> str:
        """Upgrade the release this tool installed to ``values`` (finalize's final values)."""
        self._recover_pending()
        self._run(values, install=False)
        return f"upgraded release {NAMESPACE}/{RELEASE} ({self._chart}) to the final values with helm"

    @property
    def _chart(self) -> str:
        return self.chart if self.local else f"{self.chart} {self.version}"

    def _cluster_args(self) -> list[str]:
        return [
            *(["--kubeconfig", self.kubeconfig] if self.kubeconfig else []),
            *(["--kube-context", self.context] if self.context else []),
        ]

    def _helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        # Its own session: a Ctrl-C at the terminal stops cni-migrate at a step boundary,
        # it must not kill helm half-way through a release.
        return subprocess.run([self.helm, *args], capture_output=True, text=True, check=False, start_new_session=True)

    def _recover_pending(self) -> None:
        """A helm killed mid-operation leaves the release pending-install/-upgrade, and helm
        refuses every later operation on it. Undo that half-made revision: uninstall a
        pending first install, roll a pending upgrade back to the revision before it."""
        proc = self._helm("status", RELEASE, "--namespace", NAMESPACE, "-o", "json", *self._cluster_args())
        if proc.returncode != 0:
            return  # no such release yet
        try:
            release = json.loads(proc.stdout)
            status, revision = str(release["info"]["status"]), int(release["version"])
        except (ValueError, KeyError, TypeError):
            return
        if not status.startswith("pending"):
            return
        if revision <= 1:
            undo = self._helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", *self._cluster_args())
        else:
            undo = self._helm("rollback", RELEASE, "--namespace", NAMESPACE, "--wait", *self._cluster_args())
        if undo.returncode != 0:
            raise PermanentError(f"release {NAMESPACE}/{RELEASE} is {status} and could not be reset: {_last(undo)}")

    def _run(self, values: dict[str, Any], *, install: bool) -> None:
        with tempfile.TemporaryDirectory(prefix="cni-migrate-helm-") as tmp:
            path = os.path.join(tmp, "cilium-values.yaml")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                yaml.safe_dump(values, f, sort_keys=False)
            proc = self._helm(*self.argv(path, install=install)[1:])
        if proc.returncode != 0:
            verb = "upgrade --install" if install else "upgrade"
            raise PermanentError(f"helm {verb} {RELEASE} failed: {_last(proc)}")


def _last(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit {proc.returncode}"


def chart_reference(chart: str, version: str) -> tuple[str, str]:
    """Check ``plan --cilium-chart/--cilium-version`` and make the reference unambiguous:
    a path (``/…``, ``./…``, ``../…``, ``*.tgz``) must exist and is recorded absolute; anything
    else (a name in Cilium's repository, ``repo/chart``, ``oci://…``) needs a version."""
    if not chart or chart.startswith("-"):
        raise BadInput(f"--cilium-chart {chart!r} is not a chart reference")
    if chart.startswith(("/", "./", "../")) or chart.endswith(".tgz"):
        path = Path(chart).resolve()
        if not path.exists():
            raise BadInput(f"--cilium-chart {chart} does not exist")
        return str(path), version
    if not version or version.startswith("-"):
        raise BadInput(f"--cilium-version {version!r} is not a version: pin the chart Cilium installs")
    return chart, version
