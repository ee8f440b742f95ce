"""Fixtures for tests against the real control plane (tools/kube/lab, tools/kube/kubelab/).

``kube_lab`` (session scope) builds the pinned binaries with tools/kube/build
(a no-op when cached; ~6 min on a cold 2-core machine), starts a lab with six
kwok nodes (control-plane-1, worker-1..worker-5) plus the Calico/Cilium
fixtures in a temp dir, yields the ``KubeLab`` (``.kubeconfig``, ``.bin_dir``,
``.api``, ``.add_nodes()``...) and always tears it down.

Environment:
  CNI_MIGRATE_KUBE_BIN   use prebuilt binaries from this dir (skips the build)
  CNI_MIGRATE_LAB_NODES  node count for the session lab (default 6)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests import labsupport


@pytest.fixture(scope="session")
def kube_lab_module() -> ModuleType:
    return labsupport.lab_module()


@pytest.fixture(scope="session")
def kube_bin_dir(kube_lab_module: ModuleType) -> Path:
    if not os.environ.get("CNI_MIGRATE_KUBE_BIN") and shutil.which("go") is None:
        pytest.skip("realcluster: Go toolchain not found and CNI_MIGRATE_KUBE_BIN not set")
    return kube_lab_module.build()


@pytest.fixture(scope="session")
def kube_lab(kube_lab_module: ModuleType, kube_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    lab = kube_lab_module.KubeLab(
        tmp_path_factory.mktemp("kube-lab"),
        kube_bin_dir,
        die_with_parent=True,  # even a SIGKILLed pytest takes the lab with it
    )
    try:
        lab.up(nodes=int(os.environ.get("CNI_MIGRATE_LAB_NODES", "6")))
        yield lab
    finally:
        # keep logs next to the tmp dir for post-mortems; processes always go
        lab.down(keep_logs=True)
