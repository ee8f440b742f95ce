"""Session fixtures of the e2e suite: one kind cluster (1 control-plane + 3 workers) per run,
created from a checked-in config and deleted afterwards, also when a test fails.

    pytest e2e [--images local|upstream] [--cni auto|calico|stand-in] [--keep] [--reuse] [--cluster-name NAME]

--keep leaves the cluster (and prints how to reach it); --reuse takes a cluster of that name
left by --keep instead of creating one (it is still deleted at the end unless --keep).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import kindlab
import pytest

TIMINGS: dict[str, float] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("e2e", "cni-migrate e2e on kind")
    group.addoption(
        "--images",
        choices=kindlab.MODES,
        default="local",
        help="local: the lab built here (e2e/images/build); upstream: pinned upstream tags",
    )
    group.addoption(
        "--cni",
        choices=("auto", "calico", "stand-in"),
        default="auto",
        help="auto (default): Calico when its images and manifest are available, else the stand-in CNI",
    )
    group.addoption("--keep", action="store_true", help="leave the kind cluster running for debugging")
    group.addoption("--reuse", action="store_true", help="reuse a running cluster of that name (left by --keep)")
    group.addoption(
        "--web-prestop",
        type=int,
        default=5,
        help="seconds web pods keep serving after deletion (preStop sleep); 0 = exit at once on SIGTERM",
    )
    group.addoption("--cluster-name", default="cni-migrate-e2e", help="kind cluster name")
    group.addoption(
        "--artifacts",
        default=os.environ.get("E2E_ARTIFACTS", "/tmp/cni-migrate-e2e"),
        help="directory for the kubeconfig, plans and reports",
    )


def pytest_configure(config: pytest.Config) -> None:
    # A CI job killed with SIGTERM (its timeout) must still delete the cluster: make the
    # signal a KeyboardInterrupt, which runs the session fixture's cleanup like Ctrl-C.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


class Timer:
    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> Timer:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.label] = time.monotonic() - self.start


@pytest.fixture(scope="session")
def artifacts(request: pytest.FixtureRequest) -> Path:
    path = Path(request.config.getoption("--artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> kindlab.KindLab:
    mode = request.config.getoption("--images")
    try:
        lab = kindlab.prepare_local() if mode == "local" else kindlab.prepare_upstream()
    except kindlab.Missing as exc:
        pytest.exit("\n".join(exc.lines), returncode=4)
    TIMINGS.update(lab.timings)
    return lab


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, lab: kindlab.KindLab, artifacts: Path) -> Iterator[kindlab.KindCluster]:
    """The kind cluster with a CNI, every node Ready and CoreDNS available."""
    name = request.config.getoption("--cluster-name")
    keep = request.config.getoption("--keep")
    kubeconfig = artifacts / f"{name}.kubeconfig"
    running = kindlab.kind_clusters(lab)
    others = [c for c in running if c != name]
    if others:
        sys.stderr.write(f"\ne2e: other kind clusters are running: {', '.join(others)} (2 cores: one at a time)\n")
    reuse = request.config.getoption("--reuse") and name in running
    cni = request.config.getoption("--cni")
    calico = cni != "stand-in" and kindlab.calico_images_available(lab)
    if cni == "calico" and not calico:
        pytest.exit("e2e --cni calico: no Calico images/manifest (e2e/images/build's CALICO_ lines)", returncode=4)
    try:
        if reuse:
            kindlab.run([lab.kind, "export", "kubeconfig", "--name", name, "--kubeconfig", str(kubeconfig)])
            c = kindlab.KindCluster(name, kubeconfig, lab)
        else:
            if name in running:  # a leftover of an interrupted run
                kindlab.delete_cluster(lab, name, kubeconfig)
            with Timer("kind create cluster (1+3 nodes)"):
                c = kindlab.create_cluster(lab, name, kubeconfig)
            with Timer("kind load image-archive labpod (+ probe)"):
                kindlab.load_archive(c, lab.labpod_archive)
                if lab.probe_archive:
                    kindlab.load_archive(c, lab.probe_archive)
            if calico:
                with Timer("kind load image-archive calico"):
                    kindlab.load_archive(c, lab.calico_archive)
                with Timer("CNI install (Calico)"):
                    kindlab.install_calico(c)
                with Timer("calico-node Ready on every node"):
                    kindlab.wait_calico(c)
            else:
                if cni == "auto":
                    sys.stderr.write("\ne2e: no Calico images available: stand-in CNI (e2e/kind/lab-cni)\n")
                with Timer("CNI install (stand-in)"):
                    kindlab.install_stand_in_cni(c)
            with Timer("nodes Ready + CoreDNS available"):
                kindlab.wait_ready(c)
        if reuse:
            c.cni = kindlab.detect_cni(c)
        yield c
    finally:
        if keep:
            sys.stderr.write(
                f"\ne2e: kept kind cluster {name}: KUBECONFIG={kubeconfig} "
                f"(delete: {lab.kind} delete cluster --name {name})\n"
            )
        else:
            with Timer("kind delete cluster"):
                kindlab.delete_cluster(lab, name, kubeconfig)


@pytest.fixture(scope="session")
def workload(request: pytest.FixtureRequest, cluster: kindlab.KindCluster) -> kindlab.KindCluster:
    """labpod's workload (Deployment web, 3 replicas, PDB minAvailable 2) and the prober DaemonSet."""
    with Timer("workload + prober rollout"):
        kindlab.deploy_labpod(cluster, prestop_seconds=request.config.getoption("--web-prestop"))
    return cluster


ORDER = ("test_smoke.py", "test_plan.py", "test_drain.py", "test_migrate.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Smoke first (a broken cluster fails there), then plan, the disruptive drain, the migration."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return ORDER.index(name) if name in ORDER else len(ORDER)

    items.sort(key=rank)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        TIMINGS[f"test {report.nodeid.split('::')[-1]}"] = report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("e2e timings")
    for label, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{label:<48} {seconds:7.1f} s")
    path = Path(config.getoption("--artifacts")) / "timings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(TIMINGS, indent=2) + "\n")
