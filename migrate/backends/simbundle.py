"""The simulated backend's ``Backend``: a simulated cluster opened by name, the local journal
alone, no cluster lock, its own stand-in for Helm, and no wait between a failing check's
attempts (a simulated node has nothing to settle: its checks fail or pass at once)."""

from __future__ import annotations

from pathlib import Path

from migrate.backends.bundle import Backend, CiliumTools
from migrate.backends.simulated import SimStore
from migrate.plan import Target


def target(name: str) -> Target:
    """The simulated cluster ``name`` as a plan names it."""
    return Target("sim", name, f"sim://{name}")


def backend(home: Path, name: str) -> Backend:
    """The simulated cluster ``name`` under the state directory ``home``."""
    cluster = SimStore(home).open(name)

    def cilium(helm: str | None, chart: str, version: str) -> CiliumTools:
        # The simulation models what the chart leaves behind; which Helm, chart or version
        # would have done it does not change that.
        return CiliumTools(install=cluster.install_cilium, upgrade=cluster.install_cilium)

    return Backend(cluster=cluster, target=target(name), probe_retry_gap=0.0, cilium=cilium)
